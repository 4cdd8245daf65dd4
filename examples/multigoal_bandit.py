"""SOM on the six-mode bandit: one network call per action, several action modes covered.

The reward is a mixture of six bumps on a circle; the even ones carry twice the mass of the odd ones. At alpha 0.5
SOM's target ``exp(alpha Q / q_scale)`` holds all six modes, the even ones 2-3 times as much as the odd ones
(``benchmarks/bandit_fidelity.py``; at alpha 3 it holds the three even ones, or one where the critic values the
others lower). A unimodal policy (TD3's, a narrow Gaussian) sits on one mode; a broad one covers the box.
"""

import torch as th

from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit

env = MultiGoalBandit()
model = SOM("MlpMeanFlowPolicy", env, alpha=0.5, learning_starts=200, policy_kwargs=dict(net_arch=[128, 128]))
model.learn(2500, progress_bar=True)

actions, _ = model.predict(th.zeros(2000, 1).numpy())  # 2,000 stochastic one-step actions
modes = env.mixture.nearest_mode(th.as_tensor(actions))
counts = [int((modes == i).sum()) for i in range(6)]
print("actions per mode (even, odd, even, ...):", counts, "  off every mode:", int((modes < 0).sum()))
print(f"modes holding at least 5% of the actions: {sum(c >= 100 for c in counts)} of 6")
heavy, light = sum(counts[0::2]), sum(counts[1::2])
print(f"actions on the heavy modes per action on the light ones: {heavy / max(light, 1):.2f} (the target: 2-3)")
print(f"mean reward {float(env.reward(actions).mean()):.3f} (one mode's peak is 1; a uniform policy earns about 0.07)")
