"""Bias and spread of the score estimators against quadrature, by t and by distance to the box's faces.

Targets are box-supported ``exp(sum_i q_i(a_i))`` on ``[-1, 1]^d`` (:class:`sb3_som.targets.SeparableBoxTarget`),
whose exact velocity follows from a 1-D quadrature per dimension. States ``a_t ~ p_t``; each estimator's
velocity at the default ``K`` is compared with the exact one, per action dimension, grouped by the
distance of the proposal centre ``a_t / m_t`` to the nearest face in proposal standard deviations
``sigma_t = s_t / m_t`` (negative: outside the box).

Estimators:

- ``hybrid``: the package's default (``sb3_som.score``, face-aware gradient form at small t);
- ``posterior``: the package's posterior-mean form everywhere;
- ``gradient*``: the critic-gradient form without the face terms at every t (reference, not offered);
- ``hybrid*``: ``gradient*`` below a switch time (0.25 linear, 0.1 VP) and the posterior form above, per
  state: the gradient form without its face terms, as a reference (not offered).

A second table checks where the hybrid uses each form: the median absolute velocity error of the
gradient form against the posterior form, on the dimensions where the face-aware hybrid uses the
gradient form, for an interior Gaussian target in 6 and 17 dimensions. The face margin alone bounds
those dimensions to small t; a switch time in t would be needed only if the posterior form were the
better one somewhere inside that region.

    python benchmarks/estimator_error.py [--samples K] [--states 2000] > benchmarks/results/estimator_error.md
"""

from __future__ import annotations

import argparse
import inspect
import math

import torch as th

from reference_targets import SeparableBoxTarget, linear, peaked
from sb3_som import SOM
from sb3_som.paths import NoisePath, make_path
from sb3_som.score import FACE_MARGIN, estimate_velocity, propose, velocity_from_posterior_mean, velocity_from_score

TIMES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
SWITCH_TIMES = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7)
UNCORRECTED_SWITCH_TIMES = {"linear": 0.25, "vp": 0.1}
DISTANCE_BINS = ((-math.inf, 0.0), (0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, math.inf))


TARGETS = {
    "1-D, Q = 5a (maximum on the face +1)": [linear(5.0)],
    "1-D, peaked at 0.9, sd 0.2": [peaked(0.9, 0.2)],
    "1-D, peaked at 0.0, sd 0.2 (interior)": [peaked(0.0, 0.2)],
    "2-D product: peaked at 0.85 sd 0.1 x Q = 5a": [peaked(0.85, 0.1), linear(5.0)],
}


def reference_velocities(path: NoisePath, a_t: th.Tensor, t: th.Tensor, q_function, n_samples: int) -> dict[str, th.Tensor]:
    """The two reference estimators that the package does not offer, from one set of proposals: (B, d) each."""
    m, s = path.mean_coef(t), path.std(t)
    a0 = propose(a_t, m, s, n_samples).requires_grad_(True)
    q_values = q_function(a0, th.arange(a_t.shape[0]))
    (grad_q,) = th.autograd.grad(q_values.sum(), a0)
    weights = th.softmax(q_values.detach(), dim=1).unsqueeze(-1)
    gradient = velocity_from_score(path, a_t, t, (weights * grad_q).sum(1) / m)
    posterior = velocity_from_posterior_mean(path, a_t, t, (weights * a0.detach()).sum(1))
    below_switch = t < UNCORRECTED_SWITCH_TIMES[path.name]
    return {"gradient*": gradient, "hybrid*": th.where(below_switch, gradient, posterior)}


def errors_by_estimator(path: NoisePath, target: SeparableBoxTarget, t0: float, n_states: int, n_samples: int, seed: int):
    """Per-element velocity errors of each estimator (B, d) and the distance to the face in sigma_t (B, d)."""
    generator = th.Generator().manual_seed(seed)
    th.manual_seed(seed)
    t = th.full((n_states, 1), t0)
    a_t = target.sample_noised(path, t, generator)
    exact = target.velocity(path, a_t, t)
    errors = {}
    for estimator in ("hybrid", "posterior"):
        velocity = estimate_velocity(
            path, a_t, t, target.q_function, 1.0, n_samples, estimator, q_scale=th.tensor(1.0)
        ).velocity
        errors[estimator] = velocity.double() - exact
    for name, velocity in reference_velocities(path, a_t, t, target.q_function, n_samples).items():
        errors[name] = velocity.double() - exact
    m, s = path.mean_coef(t), path.std(t)
    distance = (1 - (a_t / m).abs()) / (s / m)
    return errors, distance


def face_table(path_name: str, n_states: int, n_samples: int) -> None:
    path = make_path(path_name)
    names = ("hybrid", "posterior", "hybrid*", "gradient*")
    for target_name, log_densities in TARGETS.items():
        target = SeparableBoxTarget(log_densities, n_grid=4001)
        print(f"\n### {path_name} path, {target_name}, K = {n_samples}: velocity error, bias (spread) per dimension\n")
        print("| t | distance to face / sigma_t | share | " + " | ".join(names) + " |")
        print("|---" * (3 + len(names)) + "|")
        for t0 in TIMES:
            errors, distance = errors_by_estimator(path, target, t0, n_states, n_samples, seed=0)
            for low, high in DISTANCE_BINS:
                in_bin = (distance >= low) & (distance < high)
                if in_bin.sum() < 20:
                    continue
                cells = [f"{errors[n][in_bin].mean():+.3f} ({errors[n][in_bin].std():.3f})" for n in names]
                share = in_bin.double().mean().item()
                print(f"| {t0:.2f} | [{low:g}, {high:g}) | {share:.2f} | " + " | ".join(cells) + " |")


def switch_table(path_name: str, dim: int, n_states: int, n_samples: int) -> float | None:
    """Median |error| of the gradient and posterior forms where the face-aware hybrid uses the gradient form."""
    path = make_path(path_name)
    target = SeparableBoxTarget([peaked(0.1, 0.3)] * dim, n_grid=4001)
    print(f"\n### {path_name} path, d = {dim}, interior Gaussian target (0.1, sd 0.3), K = {n_samples}\n")
    print("| t | share face-safe | gradient form median abs error | posterior form median abs error |")
    print("|---|---|---|---|")
    switch = None
    for t0 in SWITCH_TIMES:
        generator = th.Generator().manual_seed(1)
        th.manual_seed(1)
        t = th.full((n_states, 1), t0)
        a_t = target.sample_noised(path, t, generator)
        exact = target.velocity(path, a_t, t)
        hybrid = estimate_velocity(path, a_t, t, target.q_function, 1.0, n_samples, "hybrid", q_scale=th.tensor(1.0))
        th.manual_seed(1)
        posterior = estimate_velocity(path, a_t, t, target.q_function, 1.0, n_samples, "posterior", q_scale=th.tensor(1.0))
        mask = hybrid.gradient_form
        if mask.sum() == 0:
            print(f"| {t0:.2f} | 0.00 | - | - |")
            continue
        gradient_error = (hybrid.velocity.double() - exact)[mask].abs().median().item()
        posterior_error = (posterior.velocity.double() - exact)[mask].abs().median().item()
        print(f"| {t0:.2f} | {mask.double().mean():.2f} | {gradient_error:.4f} | {posterior_error:.4f} |")
        if switch is None and posterior_error < gradient_error:
            switch = t0
    print(f"\nthe posterior form is better than the gradient form where the hybrid uses the latter from t = {switch}")
    return switch


def main() -> None:
    default_samples = inspect.signature(SOM).parameters["n_score_samples"].default
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=default_samples, help="K, proposals per state (SOM's default)")
    parser.add_argument("--states", type=int, default=2000)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"# Score estimators against quadrature (K = {args.samples}, {args.states} states per t, face margin {FACE_MARGIN})")
    print("\n## Where the hybrid takes the gradient form: its error against the posterior form's there")
    for path_name in ("linear", "vp"):
        for dim in (6, 17):
            switch_table(path_name, dim, args.states // 4, args.samples)
    print("\n## Bias and spread by t and distance to the face")
    for path_name in ("linear", "vp"):
        face_table(path_name, args.states, args.samples)


if __name__ == "__main__":
    main()
