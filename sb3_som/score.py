"""Monte-Carlo score of the noised Boltzmann policy and its probability-flow velocity (pure torch).

The target policy is ``pi*(a) ∝ exp(alpha Qn(a))`` on the box ``[-1, 1]^d``; after noising along a
path ``a_t = m_t a_0 + s_t e`` (see :mod:`sb3_som.paths`) its density is

    p_t(a_t) ∝ E_{a_0 ~ N(a_t / m_t, (s_t / m_t)^2 I)} [ exp(alpha Qn(a_0)) ],

so ``K`` proposals ``a_0^k`` with self-normalised weights ``w = softmax_k(alpha Qn(a_0^k))`` give

- the gradient form:        ``score = (1 / m_t) sum_k w_k grad (alpha Qn)(a_0^k)``
- the posterior-mean form:  ``E[a_0 | a_t] = sum_k w_k a_0^k``, ``score = (m_t E[a_0|a_t] - a_t) / s_t^2``

and the probability-flow ODE turns either into the marginal velocity ``v(a_t, t)``.
Shapes: ``B`` states, ``K`` proposals, ``d`` action dimensions; times are ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch as th

from sb3_som.paths import NoisePath

ESTIMATORS = ("gradient", "posterior", "hybrid")
PROPOSALS = ("gaussian", "clip", "truncated")

# Q values (B', K) of proposals a_0 (B', K, d) at the states ``rows`` (B',) of the batch
QFunction = Callable[[th.Tensor, th.Tensor], th.Tensor]


def truncated_normal(loc: th.Tensor, scale: th.Tensor, low: float, high: float, noise_uniform: th.Tensor) -> th.Tensor:
    """Inverse-CDF sample of ``N(loc, scale^2)`` truncated to ``[low, high]``, per element.

    ``noise_uniform`` holds U(0, 1) draws of the output's shape. Works in float64, on the lower
    tail (intervals right of the mean are mirrored) and with the log-CDF, so that intervals many
    standard deviations away, where the Gaussian CDF rounds to 0 or 1, are still sampled exactly.
    """
    loc64, scale64 = loc.double(), scale.double()
    lo = (low - loc64) / scale64
    hi = (high - loc64) / scale64
    mirror = lo > 0  # interval entirely above the mean: sample its mirror image below
    lo, hi = th.where(mirror, -hi, lo), th.where(mirror, -lo, hi)
    lo, hi = lo.clamp(-37.0, 37.0), hi.clamp(-37.0, 37.0)
    log_cdf_lo, log_cdf_hi = th.special.log_ndtr(lo), th.special.log_ndtr(hi)
    # p = cdf_lo + u (cdf_hi - cdf_lo), written relative to cdf_hi so that it cannot underflow
    ratio = th.exp(log_cdf_lo - log_cdf_hi)
    p = th.exp(log_cdf_hi) * (ratio + noise_uniform.double() * (1.0 - ratio))
    z = th.special.ndtri(p).clamp(lo, hi)
    z = th.where(mirror, -z, z)
    return (loc64 + scale64 * z).clamp(low, high).to(loc.dtype)


def propose(
    a_t: th.Tensor,
    m_t: th.Tensor,
    s_t: th.Tensor,
    n_samples: int,
    proposal: str,
    generator: th.Generator | None = None,
) -> th.Tensor:
    """``K`` proposals ``a_0^k`` from ``N(a_t / m_t, (s_t / m_t)^2 I)``.

    :param a_t: (B, d) noised actions
    :param m_t: (B, 1) mean coefficient; ``s_t``: (B, 1) noise scale
    :param proposal: "gaussian" (as is), "clip" (clipped to the box) or "truncated" (the
        Gaussian truncated to the box: exact for a box-supported target, since its normaliser
        does not depend on ``k``)
    :return: (B, K, d)
    """
    loc = (a_t / m_t).unsqueeze(1).expand(-1, n_samples, -1)
    scale = (s_t / m_t).unsqueeze(1).expand_as(loc)
    if proposal == "truncated":
        uniform = th.rand(loc.shape, device=a_t.device, generator=generator)
        return truncated_normal(loc, scale, -1.0, 1.0, uniform)
    a0 = loc + scale * th.randn(loc.shape, device=a_t.device, generator=generator)
    if proposal == "clip":
        return a0.clamp(-1.0, 1.0)
    if proposal == "gaussian":
        return a0
    raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")


def velocity_from_score(path: NoisePath, a_t: th.Tensor, t: th.Tensor, score: th.Tensor) -> th.Tensor:
    """Probability-flow velocity ``v = (m'/m) a_t + (m' s^2 / m - s s') score``.

    VP: ``-beta/2 (a_t + score)``; linear: ``-(a_t + t score) / (1 - t)``. Shapes (B, d), t (B, 1).
    """
    m, s = path.mean_coef(t), path.std(t)
    dm, ds = path.mean_coef_dt(t), path.std_dt(t)
    return (dm / m) * a_t + (dm * s**2 / m - s * ds) * score


def velocity_from_posterior_mean(path: NoisePath, a_t: th.Tensor, t: th.Tensor, a0_mean: th.Tensor) -> th.Tensor:
    """Probability-flow velocity from ``E[a_0 | a_t]``: ``v = m' E[a_0|a_t] + s' (a_t - m E[a_0|a_t]) / s``.

    Linear path: ``(a_t - E[a_0|a_t]) / t``. No division by ``m_t``, so it suits large t.
    """
    m, s = path.mean_coef(t), path.std(t)
    dm, ds = path.mean_coef_dt(t), path.std_dt(t)
    return dm * a0_mean + ds * (a_t - m * a0_mean) / s


def score_from_posterior_mean(path: NoisePath, a_t: th.Tensor, t: th.Tensor, a0_mean: th.Tensor) -> th.Tensor:
    """Tweedie: ``score = (m_t E[a_0|a_t] - a_t) / s_t^2``, (B, d)."""
    return (path.mean_coef(t) * a0_mean - a_t) / path.std(t) ** 2


def unit_normalize(score: th.Tensor, scale: float) -> th.Tensor:
    """The bounded, greedier variant ``scale * score / ||score||`` (no longer the exact field)."""
    return scale * score / score.norm(dim=-1, keepdim=True).clamp(min=1e-8)


class VelocityTarget(NamedTuple):
    """Output of :func:`estimate_velocity`."""

    velocity: th.Tensor  # (B, d) probability-flow velocity at (a_t, t)
    score: th.Tensor  # (B, d) estimated score of p_t at a_t
    q_values: th.Tensor  # (B, K) critic values of the proposals (for monitoring)


def estimate_velocity(
    path: NoisePath,
    a_t: th.Tensor,
    t: th.Tensor,
    q_function: QFunction,
    alpha: float,
    n_samples: int,
    estimator: str = "hybrid",
    proposal: str = "truncated",
    switch_time: float = 0.25,
    q_scale: th.Tensor | None = None,
    score_scale: float | None = None,
    generator: th.Generator | None = None,
) -> VelocityTarget:
    """Monte-Carlo probability-flow velocity of the noised Boltzmann policy ``exp(alpha Q / q_scale)``.

    :param a_t: (B, d) noised actions; ``t``: (B, 1) their times
    :param q_function: maps proposals (B', K, d) and their batch rows (B',) to Q values (B', K)
    :param alpha: inverse temperature on the normalised Q
    :param estimator: "gradient", "posterior", or "hybrid" (gradient form for ``t < switch_time``,
        posterior form above; each where it is accurate)
    :param q_scale: the Q spread to divide by, a scalar or (B, 1); ``None`` standardises Q over
        all proposals of the batch
    :param score_scale: ``None`` keeps the exact field; a number ``w`` replaces the score by
        ``w * score / ||score||``
    :return: velocity (B, d), score (B, d) and the proposals' Q values (B, K), all detached
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"score_estimator must be one of {ESTIMATORS}, got {estimator!r}")
    m_t, s_t = path.mean_coef(t), path.std(t)
    a0 = propose(a_t, m_t, s_t, n_samples, proposal, generator)
    rows = th.arange(a_t.shape[0], device=a_t.device)
    if estimator == "gradient":
        use_gradient = th.ones_like(rows, dtype=th.bool)
    elif estimator == "posterior":
        use_gradient = th.zeros_like(rows, dtype=th.bool)
    else:
        use_gradient = t.squeeze(-1) < switch_time
    grad_rows, post_rows = rows[use_gradient], rows[~use_gradient]

    # One critic call for the rows that need dQ/da, one without autograd for the rest.
    q_values = a_t.new_empty(a0.shape[:2])
    grad_q = a0.new_zeros(a0.shape)
    if len(grad_rows) > 0:
        with th.enable_grad():
            a0_grad = a0[grad_rows].detach().requires_grad_(True)
            q_grad_rows = q_function(a0_grad, grad_rows)
            (grad_q[grad_rows],) = th.autograd.grad(q_grad_rows.sum(), a0_grad)
        q_values[grad_rows] = q_grad_rows.detach()
    if len(post_rows) > 0:
        with th.no_grad():
            q_values[post_rows] = q_function(a0[post_rows], post_rows)

    if q_scale is None:
        q_scale = q_values.std() + 1e-6
    logits = alpha * q_values / q_scale  # (B, K); per-state shifts cancel in the softmax
    weights = th.softmax(logits, dim=1).unsqueeze(-1)  # (B, K, 1)

    # gradient form: (1/m) sum_k w_k alpha/q_scale dQ/da(a_0^k)
    grad_score = (weights * grad_q).sum(1) * (alpha / q_scale) / m_t
    a0_mean = (weights * a0).sum(1)
    score = th.where(use_gradient.unsqueeze(-1), grad_score, score_from_posterior_mean(path, a_t, t, a0_mean))
    if score_scale is not None:
        score = unit_normalize(score, score_scale)
        velocity = velocity_from_score(path, a_t, t, score)
    else:
        velocity = th.where(
            use_gradient.unsqueeze(-1),
            velocity_from_score(path, a_t, t, grad_score),
            velocity_from_posterior_mean(path, a_t, t, a0_mean),
        )
    return VelocityTarget(velocity.detach(), score.detach(), q_values)
