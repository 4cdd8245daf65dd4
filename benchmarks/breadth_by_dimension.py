"""How much broader than a narrow target the one-step policy ends, by action dimension.

A stateless actor is trained on a fixed Gaussian target ``exp(-|a - c|^2 / (2 width^2))`` well inside the box
(``c``: 0.3 and -0.3 alternating; ``policy_proposals.trained_breadth``: SOM's defaults, alpha 1, ``--iterations``
updates) for each dimension d of ``--dims`` (Pendulum 1, Hopper 3, HalfCheetah 6, Humanoid 17) and width, with the
Gaussian proposals alone at K = 16 (the default) and K = 64, and with 8 of the 16 proposals around the policy
(``policy_proposal_fraction=0.5``). A cell is the one-step policy's standard deviation per coordinate divided by
the target's (1 is the target; the uniform distribution on [-1, 1] has 0.577 / width).

    python benchmarks/breadth_by_dimension.py > benchmarks/results/breadth_by_dimension.md
"""

from __future__ import annotations

import argparse

import torch as th
from policy_proposals import trained_breadth

from fixed_target import SOM_DEFAULTS

K = SOM_DEFAULTS["n_score_samples"]
SETTINGS: tuple[tuple[str, dict[str, float]], ...] = (
    (f"K = {K}", {}),
    ("K = 64", {"n_score_samples": 64}),
    (f"K = {K}, {K // 2} around the policy", {"policy_proposal_fraction": 0.5}),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 3, 6, 17])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.1])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    th.set_num_threads(1)

    print(f"# One-step spread on a fixed Gaussian target by dimension, {args.iterations} updates, alpha 1\n")
    print("Cells: the one-step policy's standard deviation per coordinate / the target's (its width), per seed;")
    print("in brackets the mean's error per coordinate.\n")
    print("| d | width | " + " | ".join(name for name, _ in SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    for width in args.widths:
        for dim in args.dims:
            centre = th.tensor([0.3 if i % 2 == 0 else -0.3 for i in range(dim)])
            cells = []
            for _, overrides in SETTINGS:
                runs = [trained_breadth(centre, width, args.iterations, seed, **overrides) for seed in args.seeds]
                cells.append(", ".join(f"{std / width:.2f} ({mean_error:.3f})" for std, mean_error, _ in runs))
            print(f"| {dim} | {width} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
