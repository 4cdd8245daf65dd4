"""Train SOM on Pendulum-v1, evaluate it, save it and load it back (about 10 minutes on 2 CPU cores)."""

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_som import SOM

model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", verbose=1, seed=0)
model.learn(10_000, progress_bar=True)
model.save("som_pendulum")

model = SOM.load("som_pendulum")
mean_return, std_return = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=10, deterministic=True)
print(f"deterministic return {mean_return:.1f} +/- {std_return:.1f}")
