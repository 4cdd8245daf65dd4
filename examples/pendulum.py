"""Train SOM on Pendulum-v1 for 10,000 steps, save it, load it back and evaluate it (a few minutes on one CPU core)."""

import time

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_som import SOM

model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", verbose=1, seed=0)
start = time.perf_counter()
model.learn(10_000, progress_bar=True)
print(f"trained 10,000 steps in {time.perf_counter() - start:.0f} s")
model.save("som_pendulum")

model = SOM.load("som_pendulum")
eval_env = Monitor(gym.make("Pendulum-v1"))  # Monitor records the episodes' true returns
mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
print(f"deterministic return {mean_return:.1f} +/- {std_return:.1f} (a swung-up pendulum scores about -150)")
