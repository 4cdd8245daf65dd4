"""Velocity error of the score estimator with independent and with Latin-hypercube proposals, by K and t.

The package's proposals (``sb3_som.score.propose``) draw each state's K uniforms as a Latin hypercube (one per
stratum ``[j / K, (j + 1) / K)`` in every dimension); ``iid`` draws them independently, as a reference. For
box-supported targets ``exp(sum_i q_i(a_i))`` (``benchmarks/reference_targets.py``, exact by quadrature), states
``a_t ~ p_t`` at each t, and the default ``"hybrid"`` estimator, the table gives the root mean square error of the
velocity over states and dimensions.

    python benchmarks/proposal_variance.py > benchmarks/results/proposal_variance.md
"""

from __future__ import annotations

import argparse

import torch as th

import sb3_som.score as score
from reference_targets import SeparableBoxTarget, linear, peaked
from sb3_som.paths import make_path

TIMES = (0.02, 0.1, 0.3, 0.6)
SAMPLES = (8, 16)


def iid_propose(a_t: th.Tensor, m_t: th.Tensor, s_t: th.Tensor, n_samples: int) -> th.Tensor:
    """Proposals from independent uniforms (the reference)."""
    loc = (a_t / m_t).unsqueeze(1).expand(-1, n_samples, -1)
    scale = (s_t / m_t).unsqueeze(1).expand_as(loc)
    return score.truncated_normal(loc, scale, -1.0, 1.0, th.rand(loc.shape))


TARGETS = {
    "1-D, Q = 5a": [linear(5.0)],
    "1-D, peaked at 0.9, sd 0.2": [peaked(0.9, 0.2)],
    "2-D, peaked at 0.85 sd 0.1 x Q = 5a": [peaked(0.85, 0.1), linear(5.0)],
    "6-D, peaks at -0.5 ... 0.5, sd 0.3": [peaked(0.2 * i - 0.5, 0.3) for i in range(6)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=2000)
    args = parser.parse_args()
    th.set_num_threads(1)
    latin_hypercube = score.propose
    print("# Velocity RMSE: independent against Latin-hypercube proposals (hybrid estimator, alpha Q = log target)\n")
    print(f"{args.states} states a_t ~ p_t per t; cells: RMSE over states and dimensions against quadrature.\n")
    for path_name in ("linear", "vp"):
        path = make_path(path_name, 0.1, 20.0)
        header = " | ".join(f"K = {k} {kind}" for k in SAMPLES for kind in ("iid", "Latin hypercube"))
        print(f"## {path_name} path\n\n| target | t | {header} |\n|---|---|" + "---|" * (2 * len(SAMPLES)))
        for name, log_densities in TARGETS.items():
            target = SeparableBoxTarget(log_densities, n_grid=4001)
            generator = th.Generator().manual_seed(0)
            for t_value in TIMES:
                t = th.full((args.states, 1), t_value)
                a_t = target.sample_noised(path, t, generator)
                exact = target.velocity(path, a_t, t).float()
                cells = []
                for n_samples in SAMPLES:
                    for proposals in (iid_propose, latin_hypercube):
                        score.propose = proposals
                        th.manual_seed(1)
                        velocity = score.estimate_velocity(
                            path, a_t, t, target.q_function, 1.0, n_samples, "hybrid", q_scale=th.tensor(1.0)
                        ).velocity
                        cells.append(f"{(velocity - exact).pow(2).mean().sqrt().item():.3f}")
                score.propose = latin_hypercube
                print(f"| {name} | {t_value} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
