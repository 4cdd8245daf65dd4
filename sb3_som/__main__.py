"""Quickstart: ``python -m sb3_som`` trains SOM on Pendulum-v1, evaluates and saves the model."""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_som import SOM


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train SOM on a Gymnasium task, evaluate it and save it.")
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=10_000, help="environment steps to train for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--save", default="som_pendulum", help="path of the saved model (.zip is added)")
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)

    model = SOM("MlpMeanFlowPolicy", args.env, seed=args.seed, verbose=0)
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=not args.no_progress_bar)
    train_seconds = time.perf_counter() - start
    eval_env = gym.make(args.env)
    eval_env.reset(seed=args.seed + 1000)
    mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    model.save(args.save)
    print(
        f"SOM on {args.env}: {args.timesteps} steps in {train_seconds:.0f} s; "
        f"evaluation return {mean_return:.1f} +/- {std_return:.1f} over {args.eval_episodes} episodes "
        f"(deterministic); model saved to {args.save}.zip"
    )


if __name__ == "__main__":
    main()
