"""SOM on the six-mode bandit: one network call per action, several action modes covered.

Prints how many one-step actions land on each mode (even modes carry twice the reward mass).
"""

import torch as th

from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit

env = MultiGoalBandit()
model = SOM(
    "MlpMeanFlowPolicy", env, alpha=3.0, distillation_coef=3.0, learning_starts=200, policy_kwargs=dict(net_arch=[128, 128])
)
model.learn(2500, progress_bar=True)

observations = th.zeros(2000, 1).numpy()
actions, _ = model.predict(observations)
modes = env.mixture.nearest_mode(th.as_tensor(actions))
print("actions per mode:", [int((modes == i).sum()) for i in range(6)], "off-mode:", int((modes < 0).sum()))
print("mean reward:", float(env.reward(actions).mean()))
