"""In the full loop: is SOM's one-step policy as broad as its target on a quadratic bandit, faces and many dimensions
included?

A one-step bandit with a constant observation and actions in ``[-1, 1]^d`` earns ``-|a - c|^2 / width`` with
``c = (optimum, ..., optimum)``. SOM (defaults, ``learning_starts=200``) trains ``--timesteps`` steps; then its
policy samples 2000 stochastic actions. Since the critic of a one-step task is the reward itself, the target
``exp(alpha Q / q_scale)`` is a product of Gaussians ``N(optimum, width q_scale / (2 alpha))`` per coordinate
truncated to the box; the table compares the policy's standard deviation per coordinate and its share of
coordinates beyond 0.98 with that target's at the run's final ``q_scale``. ``share_past_face``: the share of
coordinates of the one-step map's output ``e - u(e, 0, 1)`` beyond the box (N fresh noise draws), which the policy's
clip puts on the face.

Two cases: the optimum 0.15 inside two faces in 2-D (does the policy pile its actions on the faces?), and a narrow
optimum inside the box in 17-D (Humanoid's action dimension: is the policy as narrow as its target?):

    python benchmarks/quadratic_bandit.py --dim 2 --optimum 0.85 --seeds 0 1 2 3 4 5 > benchmarks/results/face_bandit.md
    python benchmarks/quadratic_bandit.py --dim 17 --optimum 0.3 --seeds 0 1 2 > benchmarks/results/quadratic_bandit_17d.md
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from bandit_fidelity import print_results
from sb3_som import SOM

WIDTH = 0.08  # reward -|a - optimum|^2 / WIDTH
FACE = 0.98  # a coordinate beyond this counts as on a face
N = 2000


class QuadraticBandit(gym.Env):
    """One-step episodes with actions in ``[-1, 1]^dim``; the reward ``-|a - optimum|^2 / WIDTH``."""

    def __init__(self, dim: int, optimum: float):
        self.optimum = optimum
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float(((np.clip(action, -1.0, 1.0) - self.optimum) ** 2).sum()) / WIDTH
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


def target_coordinate(optimum: float, inverse_temperature: float) -> tuple[float, float]:
    """Standard deviation and share beyond ``FACE`` of one coordinate under ``exp(-c (a - optimum)^2 / WIDTH)`` on
    [-1, 1] (by quadrature)."""
    grid = np.linspace(-1.0, 1.0, 200_001)
    density = np.exp(-inverse_temperature * (grid - optimum) ** 2 / WIDTH)
    density /= density.sum()
    mean = float((density * grid).sum())
    return float(np.sqrt((density * (grid - mean) ** 2).sum())), float(density[np.abs(grid) > FACE].sum())


def run(job: tuple[int, int, int, float]) -> dict[str, Any]:
    seed, timesteps, dim, optimum = job
    th.set_num_threads(1)
    model = SOM("MlpMeanFlowPolicy", QuadraticBandit(dim, optimum), learning_starts=200, seed=seed, device="cpu")
    model.learn(timesteps)
    actions, _ = model.predict(np.zeros((N, 1), dtype=np.float32), deterministic=False)
    q_scale = float(model.logger.name_to_value["train/q_scale"])
    target_std, target_share = target_coordinate(optimum, model.target_alpha / q_scale)
    std = float(actions.std(0).mean())
    with th.no_grad():
        noise = th.randn(N, dim, generator=th.Generator().manual_seed(seed))
        features = model.actor.extract_features(th.zeros(N, 1), model.actor.features_extractor)
        unclipped = noise - model.actor.one_step_velocity(features, noise)
    return dict(
        seed=seed,
        std_over_target=std / target_std,
        share_beyond_098=float((np.abs(actions) > FACE).mean()),
        target_share_beyond_098=target_share,
        share_past_face=float((unclipped.abs() > 1.0).float().mean()),
        std=std,
        target_std=target_std,
        mean_action=float(actions.mean()),
        q_scale=q_scale,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--optimum", type=float, default=0.85, help="every coordinate of the reward's peak")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(seed, args.timesteps, args.dim, args.optimum) for seed in args.seeds]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    print(f"# Quadratic bandit, d = {args.dim}, optimum {args.optimum} per coordinate, SOM defaults, {args.timesteps} "
          f"steps, {N} stochastic actions\n")  # fmt: skip
    columns = ("seed", "std_over_target", "share_beyond_098", "target_share_beyond_098", "share_past_face", "std",
               "target_std", "q_scale")  # fmt: skip
    print_results(columns, results)


if __name__ == "__main__":
    main()
