"""Mass the integrated velocity field puts beyond 0.98, against the box-supported target's.

Carries 4000 samples of ``p_t`` (t = 0.999) to t = 0 along each estimator's field with the integrator of
``tests/test_math.py`` (``integrate_flow``, which the tests use with K = 64), for a target whose maximum
lies on the face +1 (``Q = 5a``) and one peaked 0.1 inside it, on both noise paths, at K = 64 and 256. The
``exact`` rows integrate the quadrature's field with the same steps (``refine`` 1) and with four times as many
(``refine`` 4): what the integrator alone gets.

    python benchmarks/integrated_field.py > benchmarks/results/integrated_field.md
"""

from __future__ import annotations

import os
import sys

import torch as th

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_math import FACE_TARGETS, integrate_flow

from sb3_som.paths import LinearPath, VPPath

N = 4000


def main() -> None:
    th.set_num_threads(1)
    print(f"# Mass beyond 0.98 after integrating the estimated field from t = 0.999 to 0 ({N} samples)\n")
    print("| path | target | estimator | K | steps x | mass beyond 0.98 | target's | samples outside the box |")
    print("|---|---|---|---|---|---|---|---|")
    for path in (LinearPath(), VPPath()):
        for target_name in ("linear_q", "peaked_near_face"):
            target = FACE_TARGETS[target_name]
            reference = target.mass_beyond(0.98).item()
            runs = [(estimator, n_samples, 1) for estimator in ("hybrid", "posterior") for n_samples in (64, 256)]
            for estimator, n_samples, refine in [*runs, ("exact", "-", 1), ("exact", "-", 4)]:
                actions = integrate_flow(path, target, estimator, N, 0 if n_samples == "-" else n_samples, refine)
                mass = (actions.clamp(-1, 1) > 0.98).double().mean().item()
                outside = (actions.abs() > 1 + 1e-3).double().mean().item()
                cells = (
                    path.name,
                    target_name,
                    estimator,
                    n_samples,
                    refine,
                    f"{mass:.3f}",
                    f"{reference:.3f}",
                    f"{outside:.4f}",
                )
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
