"""In the full loop: one-step vs 20-step samples of SOM's actor on the multi-goal bandit.

SOM (its defaults, ``alpha`` 3) learns its critic and actor on ``sb3_som.envs.MultiGoalBandit`` (six bumps,
weights 2 and 1); then the actor samples 2000 actions with one step (the one-step network) and with 20 steps (the
flow network) from the same noise. Columns: mean reward of each, the relative gap, share of samples within 3 sigma
of a mode, modes holding >= 5% of the samples.

    python benchmarks/bandit_fidelity.py --timesteps 2500 --seeds 0 1 2 3 4 --workers 1 > benchmarks/results/bandit_fidelity.md
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from typing import Any

import torch as th

from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit

N = 2000


def run(job: tuple[int, int, float]) -> dict[str, Any]:
    seed, timesteps, alpha = job
    th.set_num_threads(1)
    env = MultiGoalBandit()
    model = SOM(
        "MlpMeanFlowPolicy",
        env,
        learning_starts=200,
        alpha=alpha,
        policy_kwargs=dict(net_arch=[128, 128]),
        seed=seed,
        device="cpu",
    )
    model.learn(timesteps)
    result: dict[str, Any] = dict(seed=seed)
    with th.no_grad():
        noise = th.randn(N, 2, generator=th.Generator().manual_seed(seed + 7))
        for steps in (1, 20):
            actions = model.actor.sample(th.zeros(N, 1), noise, steps=steps)
            modes = env.mixture.nearest_mode(actions)
            counts = th.stack([(modes == i).sum() for i in range(6)])
            result[f"reward_{steps}"] = float(env.reward(actions.numpy()).mean())
            result[f"on_modes_{steps}"] = float((modes >= 0).float().mean())
            result[f"modes_{steps}"] = int((counts >= 0.05 * N).sum())
    result["gap"] = abs(result["reward_1"] - result["reward_20"]) / result["reward_20"]
    return result


def print_results(columns: tuple[str, ...], results: list[dict[str, Any]]) -> None:
    """Print ``results`` as a markdown table of ``columns`` (floats to 3 significant digits), then all as JSON."""
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for result in results:
        cells = (f"{result[c]:.3g}" if isinstance(result[c], float) else str(result[c]) for c in columns)
        print("| " + " | ".join(cells) + " |")
    print("\n```json\n" + json.dumps(results) + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=2500)
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(seed, args.timesteps, args.alpha) for seed in args.seeds]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    print(f"# Multi-goal bandit, SOM alpha {args.alpha}, {args.timesteps} steps, 128x128 nets\n")
    columns = ("seed", "reward_1", "reward_20", "gap", "on_modes_1", "on_modes_20", "modes_1", "modes_20")
    print_results(columns, results)


if __name__ == "__main__":
    main()
