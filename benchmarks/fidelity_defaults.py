"""One-step fidelity of SOM's default flow settings on the fixed targets, over seeds.

The same setting as ``tests/test_fidelity.py`` (256x256 actor, 4000 iterations with a decaying learning
rate, 10,000 samples), for the seeds given; ``--n-score-samples`` replaces SOM's K, ``--actor-batch`` the states per
actor update (default: SOM's, ``ceil(actor_batch_fraction * batch_size)``):

    python benchmarks/fidelity_defaults.py --seeds 1 2 > benchmarks/results/fidelity_defaults.txt
    python benchmarks/fidelity_defaults.py --seeds 0 1 2 --n-score-samples 8 > benchmarks/results/fidelity_k8.txt
"""

from __future__ import annotations

import argparse

import torch as th

from fixed_target import DEFAULT_ACTOR_BATCH, default_flow_config, energy_distance, fit_and_sample
from reference_targets import GaussianTarget
from sb3_som.envs import multi_goal_mixture

N = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n-score-samples", type=int, help="K (default: SOM's)")
    parser.add_argument("--actor-batch", type=int, default=DEFAULT_ACTOR_BATCH, help="samples per actor update")
    args = parser.parse_args()
    overrides = {} if args.n_score_samples is None else {"n_score_samples": args.n_score_samples}
    config = default_flow_config(alpha=1.0, **overrides)
    gauss = GaussianTarget(th.tensor([0.4, -0.3]), 0.15)
    mixture = multi_goal_mixture()
    print(f"K = {config.n_score_samples}, {args.actor_batch} samples per actor update")
    for seed in args.seeds:
        one, many, generator = fit_and_sample(gauss.q_function, 4000, seed, N, config, args.actor_batch)
        exact = gauss.mu + gauss.sigma * th.randn(N, 2, generator=generator)
        print(
            f"gauss seed {seed}: mean error {(one.mean(0) - gauss.mu).norm():.4f}, "
            f"spread ratio {(one.std(0) / gauss.sigma).numpy().round(3)}, "
            f"ED(one, exact) {energy_distance(one, exact):.5f}, ED(one, 20-step) {energy_distance(one, many):.5f}"
        )
        one, many, generator = fit_and_sample(mixture.q_function, 4000, seed, N, config, args.actor_batch)
        exact = mixture.sample(N, generator)
        modes = mixture.nearest_mode(one)
        counts = th.stack([(modes == i).sum() for i in range(6)]).float()
        print(
            f"mixture seed {seed}: on a mode {(modes >= 0).float().mean():.3f}, counts {counts.int().tolist()}, "
            f"heavy:light {counts[0::2].sum() / counts[1::2].sum():.2f}, "
            f"ED(one, exact) {energy_distance(one, exact):.5f}, ED(one, 20-step) {energy_distance(one, many):.5f}"
        )


if __name__ == "__main__":
    main()
