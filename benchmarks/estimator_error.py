"""Velocity error of the score estimators by t, per noise path: picks ``hybrid_switch_time``.

Extends ALGORITHM.md's ``score_probe.py`` to the project's own estimators (``sb3_som.score``) and to
both paths. Target: Gaussian ``N(0.1, sigma^2 I)`` written as ``exp(Q)`` (alpha = 1, Q unnormalised),
closed-form velocity from ``sb3_som.targets``. Prints the median relative velocity error
``|v_est - v| / |v|`` over 512 states and, per path, the crossover time where the box-truncated
posterior form becomes better than the gradient form.

    python benchmarks/estimator_error.py [--dims 6 17] [--samples 32] [--sigma 0.3]
"""

from __future__ import annotations

import argparse

import torch as th

from sb3_som.paths import make_path
from sb3_som.score import estimate_velocity
from sb3_som.targets import GaussianTarget

TIMES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9)
VARIANTS = (("gradient", "gaussian"), ("posterior", "gaussian"), ("posterior", "clip"), ("posterior", "truncated"))


def relative_error(path_name: str, dim: int, sigma: float, n_samples: int, t0: float, estimator: str, proposal: str) -> float:
    generator = th.Generator().manual_seed(0)
    th.manual_seed(0)
    path = make_path(path_name)
    target = GaussianTarget(th.full((dim,), 0.1), sigma)
    t = th.full((512, 1), t0)
    a_t = target.sample_noised(path, t, generator)
    estimate = estimate_velocity(
        path, a_t, t, target.q_function, 1.0, n_samples, estimator, proposal, q_scale=th.tensor(1.0)
    ).velocity
    exact = target.velocity(path, a_t, t)
    return ((estimate - exact).norm(dim=-1) / exact.norm(dim=-1)).median().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", type=int, nargs="+", default=[6, 17])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--sigma", type=float, default=0.3)
    args = parser.parse_args()
    for path_name in ("linear", "vp"):
        for dim in args.dims:
            print(f"\n## path={path_name} d={dim} K={args.samples} sigma={args.sigma}: median |v_est - v| / |v|")
            print("| t | " + " | ".join(f"{e}-{p}" for e, p in VARIANTS) + " |")
            print("|---" * (len(VARIANTS) + 1) + "|")
            crossover = None
            for t0 in TIMES:
                errors = [relative_error(path_name, dim, args.sigma, args.samples, t0, e, p) for e, p in VARIANTS]
                print(f"| {t0:.2f} | " + " | ".join(f"{err:.3g}" for err in errors) + " |")
                if crossover is None and errors[3] < errors[0]:
                    crossover = t0
            print(f"truncated posterior first beats the gradient form at t = {crossover}")


if __name__ == "__main__":
    main()
