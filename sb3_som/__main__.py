"""Quickstart: ``python -m sb3_som`` trains SOM on Pendulum-v1, evaluates and saves the model."""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_som import SOM


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_som",
        description="Train SOM on a Gymnasium task, evaluate it and save it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=positive_int, default=10_000, help="environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the environment and the evaluation")
    parser.add_argument("--eval-episodes", type=positive_int, default=10, help="deterministic evaluation episodes")
    parser.add_argument(
        "--save",
        default=argparse.SUPPRESS,
        help="path of the saved model, .zip added (default: som_ENV, e.g. som_pendulum_v1)",
    )
    parser.add_argument("--no-progress-bar", action="store_true", help="train without the progress bar")
    args = parser.parse_args(argv)
    if "save" not in vars(args):
        args.save = "som_" + args.env.split(":")[-1].lower().replace("-", "_")

    try:
        env = gym.make(args.env)
    except gym.error.Error as error:
        parser.error(f"--env {args.env}: {error}")
    if not isinstance(env.action_space, spaces.Box):
        parser.error(f"--env {args.env}: SOM needs a continuous (Box) action space, {args.env} has {env.action_space}")
    try:
        model = SOM("MlpMeanFlowPolicy", env, seed=args.seed, verbose=0)
    except ValueError as error:
        parser.error(f"--env {args.env}: {error}")
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=not args.no_progress_bar)
    train_seconds = time.perf_counter() - start
    eval_env = Monitor(gym.make(args.env))
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
