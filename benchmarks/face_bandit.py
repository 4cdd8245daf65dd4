"""In the full loop: does SOM pile its actions on the box's faces when the reward peaks just inside one?

A one-step bandit with a constant observation and 2-D actions in [-1, 1]^2 earns
``-|a - (0.85, 0.85)|^2 / 0.08``: its optimum lies 0.15 inside the corner's two faces. SOM (defaults,
``learning_starts=200``) trains ``--timesteps`` steps; then its policy samples 2000 stochastic actions. Since the
critic of a one-step task is the reward itself, the target ``exp(alpha Q / q_scale)`` is a product of
Gaussians ``N(0.85, 0.04 q_scale / alpha)`` per dimension truncated to the box; the table compares the
policy's share of action coordinates beyond 0.98 with that target's at the run's final ``q_scale``.

    python benchmarks/face_bandit.py --seeds 0 1 --timesteps 3000 > benchmarks/results/face_bandit.md
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sb3_som import SOM

OPTIMUM = 0.85
WIDTH = 0.08  # reward -|a - optimum|^2 / WIDTH
N = 2000


class FaceBandit(gym.Env):
    """One-step episodes; the reward ``-|a - (0.85, 0.85)|^2 / 0.08`` peaks 0.15 inside two faces."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float(((np.clip(action, -1.0, 1.0) - OPTIMUM) ** 2).sum()) / WIDTH
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


def target_share_beyond(threshold: float, inverse_temperature: float) -> float:
    """Share of one coordinate beyond ``threshold`` under ``exp(-c (a - 0.85)^2 / 0.08)`` on [-1, 1]."""
    grid = np.linspace(-1.0, 1.0, 200_001)
    density = np.exp(-inverse_temperature * (grid - OPTIMUM) ** 2 / WIDTH)
    return float(density[grid > threshold].sum() / density.sum())


def run(job: tuple[int, int]) -> dict[str, Any]:
    seed, timesteps = job
    th.set_num_threads(1)
    model = SOM("MlpMeanFlowPolicy", FaceBandit(), learning_starts=200, seed=seed, device="cpu")
    model.learn(timesteps)
    actions, _ = model.predict(np.zeros((N, 1), dtype=np.float32), deterministic=False)
    q_scale = float(model.logger.name_to_value["train/q_scale"])
    return dict(
        seed=seed,
        share_beyond_098=float((actions > 0.98).mean()),
        mean_action=float(actions.mean()),
        q_scale=q_scale,
        target_share_beyond_098=target_share_beyond(0.98, model.target_alpha / q_scale),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(seed, args.timesteps) for seed in args.seeds]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    print(f"# Face bandit (optimum 0.15 inside two faces), SOM defaults, {args.timesteps} steps, {N} stochastic actions\n")
    columns = ("seed", "share_beyond_098", "target_share_beyond_098", "mean_action", "q_scale")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for result in results:
        cells = (f"{result[c]:.3g}" if isinstance(result[c], float) else str(result[c]) for c in columns)
        print("| " + " | ".join(cells) + " |")
    print("\n```json\n" + json.dumps(results) + "\n```")


if __name__ == "__main__":
    main()
