"""Proposals around the policy against Gaussian proposals alone, on narrow targets.

(a) The estimated velocity at K = 16 against the exact one of a Gaussian target ``N(mu, width^2 I)`` in 3-D (well
    inside the box), linear path, 2,000 states drawn from p_t per time: median relative error and the norm of the
    mean error (the bias, which is what the actor's regression keeps), with no policy proposals, with 4 or 8 of the
    16 drawn around samples of the target itself (a policy that has learned it), and with 4 around samples far from
    it (one that has not).
(b) A stateless actor trained on a fixed narrow target (``fixed_target.train_on_fixed_target``, SOM's defaults
    but ``policy_proposal_fraction`` 0, 0.25 and 0.5, alpha 1) for ``--iterations`` updates: the one-step policy's standard
    deviation per coordinate and its mean's distance to the target's, per dimension.

    python benchmarks/policy_proposals.py > benchmarks/results/policy_proposals.md
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch as th

from fixed_target import default_flow_config, make_stateless_actor, sample_stateless, train_on_fixed_target
from reference_targets import GaussianTarget
from sb3_som.paths import LinearPath
from sb3_som.score import estimate_velocity

CENTRE = th.tensor([0.5, -0.3, 0.7, 0.0, -0.6, 0.2])
FAR_CENTRE = -0.5
N_STATES = 2000


def velocity_errors(width: float, t0: float, policy: str, n_policy: int, n_samples: int = 16) -> tuple[float, float]:
    """Median relative error and norm of the mean error of the estimated velocity at time ``t0``, ``n_policy`` of the
    ``n_samples`` proposals around the policy's samples."""
    target, path = GaussianTarget(CENTRE[:3], width), LinearPath()
    t = th.full((N_STATES, 1), t0)
    a_t = target.sample_noised(path, t, th.Generator().manual_seed(0))
    generator = th.Generator().manual_seed(1)
    policy_actions = {
        "none": None,
        "learned": target.mu + width * th.randn(N_STATES, n_policy, 3, generator=generator),
        "wrong": (FAR_CENTRE + 0.1 * th.randn(N_STATES, n_policy, 3, generator=generator)).clamp(-1, 1),
    }[policy]
    th.manual_seed(0)
    estimate = estimate_velocity(
        path, a_t, t, target.q_function, 1.0, n_samples, "hybrid", th.tensor(1.0), policy_actions=policy_actions
    )
    exact = target.velocity(path, a_t, t)
    error = estimate.velocity - exact
    return (error.norm(dim=-1) / exact.norm(dim=-1)).median().item(), error.mean(0).norm().item()


def trained_breadth(
    centre: th.Tensor, width: float, iterations: int, seed: int, **overrides: Any
) -> tuple[float, float, float]:
    """One-step std per coordinate, mean |mean - centre| per coordinate, and seconds, of an actor trained on a fixed
    target ``exp(-|a - centre|^2 / (2 width^2))`` (``centre``: (d,), inside the box), with SOM's defaults and alpha 1
    but ``overrides`` (``FlowTargetConfig`` fields)."""
    dim = len(centre)

    def q_function(proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        return -((proposals - centre) ** 2).sum(-1) / (2 * width**2)

    th.manual_seed(seed)
    actor = make_stateless_actor(dim, [256, 256])
    start = time.perf_counter()
    config = default_flow_config(alpha=1.0, **overrides)
    train_on_fixed_target(actor, q_function, LinearPath(), config, iterations)
    seconds = time.perf_counter() - start
    actions = sample_stateless(actor, 4000, 1, th.Generator().manual_seed(seed + 1))
    return actions.std(0).mean().item(), (actions.mean(0) - centre).abs().mean().item(), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    th.set_num_threads(1)

    print("# Proposals around the policy on narrow targets\n")
    print("## (a) Estimated velocity, K = 16, 3-D Gaussian target, linear path, 2,000 states per time\n")
    print("Cells: median relative error / norm of the mean error (bias). 'learned, M': M of the 16 proposals around M")
    print(f"samples of the target; 'wrong, 4': around 4 samples of N({FAR_CENTRE}, 0.1^2) per dimension.\n")
    print("| width | t | Gaussian proposals only | learned, 4 | learned, 8 | wrong, 4 |")
    print("|---|---|---|---|---|---|")
    cases = [("none", 0), ("learned", 4), ("learned", 8), ("wrong", 4)]
    for width in (0.2, 0.05):
        for t0 in (0.1, 0.3, 0.5, 0.7, 0.9):
            cells = [velocity_errors(width, t0, policy, n_policy) for policy, n_policy in cases]
            print(f"| {width} | {t0} | " + " | ".join(f"{median:.3f} / {bias:.3f}" for median, bias in cells) + " |")

    print(f"\n## (b) Actor trained on a fixed target, {args.iterations} updates, alpha 1, SOM's other defaults\n")
    print("The target's standard deviation per coordinate is its width (well inside the box).\n")
    print("| d | width | seed | fraction | one-step std per coordinate | mean error per coordinate | seconds |")
    print("|---|---|---|---|---|---|---|")
    for dim, width in ((3, 0.1), (6, 0.05)):
        for seed in args.seeds:
            for fraction in (0.0, 0.25, 0.5):
                std, mean_error, seconds = trained_breadth(
                    CENTRE[:dim], width, args.iterations, seed, policy_proposal_fraction=fraction
                )
                print(f"| {dim} | {width} | {seed} | {fraction} | {std:.3f} | {mean_error:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
