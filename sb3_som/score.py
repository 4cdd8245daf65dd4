"""Monte-Carlo score of the noised box-supported Boltzmann policy and its probability-flow velocity (pure torch).

The target policy is ``pi*(a) ∝ exp(alpha Qn(a))`` on the box ``[-1, 1]^d``; after noising along a
path ``a_t = m_t a_0 + s_t e`` (see :mod:`sb3_som.paths`) its density is

    p_t(a_t) ∝ E_{a_0 ~ N(a_t / m_t, sigma_t^2 I) truncated to the box} [ exp(alpha Qn(a_0)) ],   sigma_t = s_t / m_t.

``K`` proposals ``a_0^k`` from that truncated Gaussian (its normaliser does not depend on ``k``) with
self-normalised weights ``w = softmax_k(alpha Qn(a_0^k))`` are draws from the posterior ``p(a_0 | a_t)``.
Optionally M of the K come from kernels around the current policy's own samples instead, and every proposal is
then weighed as a draw of the mixture of both kinds (:func:`mixture_log_ratio`): the same posterior, with
proposals where a narrow target is. Two forms of the score follow:

- posterior-mean (Tweedie) form: ``score = (m_t E[a_0|a_t] - a_t) / s_t^2``, ``E[a_0|a_t] ≈ sum_k w_k a_0^k``.
  Exact for any target, box-supported included; its Monte-Carlo noise grows as ``t -> 0``.
- gradient form: integration by parts over the box gives, per action dimension ``i``,

      score_i = (1 / m_t) ( E[d_i (alpha Qn)(a_0) | a_t] - p(a_0,i = 1 | a_t) + p(a_0,i = -1 | a_t) ),

  the posterior mean of the critic's gradient minus the posterior density on the dimension's two faces.
  The face densities vanish, to within ``phi(FACE_MARGIN)`` of the score's scale, where the posterior
  lies ``FACE_MARGIN`` proposal standard deviations inside the box; there the form is
  ``(1 / m_t) sum_k w_k d_i (alpha Qn)(a_0^k)``, with a far smaller Monte-Carlo error than the
  posterior form at small ``t``, and explodes as ``t -> 1`` (the ``1 / m_t`` factor, collapsing weights).

The "hybrid" estimator takes, per state and action dimension, the gradient form where the posterior sits
inside the face margin and the posterior form everywhere else: consistent everywhere in the box, faces
included. The margin alone decides where each form runs: it exceeds the half-width of the box once
``sigma_t >= 1 / FACE_MARGIN`` (``t >= 0.2`` on the linear path, ``t >= 0.075`` on VP), so the gradient
form never runs at the large t where it is poor (``benchmarks/estimator_error.py``). The probability-flow
ODE turns the score into the marginal velocity ``v(a_t, t)``. Shapes: ``B`` states, ``K`` proposals, ``d`` action dimensions;
times are ``(B, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch as th

from sb3_som.paths import NoisePath

ESTIMATORS = ("hybrid", "posterior")
# proposal standard deviations that both estimates of E[a_0 | a_t] must keep from a face for the gradient form
FACE_MARGIN = 4.0
# the narrowest kernel around a policy sample, in the box's units (its half-width is 1)
MIN_KERNEL_STD = 0.02

# Q values (B', K) of proposals a_0 (B', K, d) at the states ``rows`` (B',) of the batch
QFunction = Callable[[th.Tensor, th.Tensor], th.Tensor]


def _standardised_interval(loc: th.Tensor, scale: th.Tensor, low: float, high: float) -> tuple[th.Tensor, ...]:
    """The box interval in standard units of ``N(loc, scale^2)``, float64, mirrored where it lies entirely above the
    mean (so that it always reaches into the lower half, where the log-CDF is accurate): ``(lo, hi, mirror)``."""
    loc64, scale64 = loc.double(), scale.double()
    lo = (low - loc64) / scale64
    hi = (high - loc64) / scale64
    mirror = lo > 0
    return th.where(mirror, -hi, lo), th.where(mirror, -lo, hi), mirror


def truncated_normal(loc: th.Tensor, scale: th.Tensor, low: float, high: float, noise_uniform: th.Tensor) -> th.Tensor:
    """Inverse-CDF sample of ``N(loc, scale^2)`` truncated to ``[low, high]``, per element.

    ``noise_uniform`` holds U(0, 1) draws of the output's shape; ``loc`` and ``scale`` broadcast to it (the
    interval's CDF values are computed at their shape, so K draws per (loc, scale) cost one evaluation). Works in
    float64, on the lower tail (intervals right of the mean are mirrored) and with the log-CDF, so that intervals
    many standard deviations away, where the Gaussian CDF rounds to 0 or 1, are still sampled exactly.
    """
    lo, hi, mirror = _standardised_interval(loc, scale, low, high)
    lo, hi = lo.clamp(-37.0, 37.0), hi.clamp(-37.0, 37.0)  # beyond, ndtri cannot invert the CDF; the clamp below holds
    log_cdf_lo, log_cdf_hi = th.special.log_ndtr(lo), th.special.log_ndtr(hi)
    # p = cdf_lo + u (cdf_hi - cdf_lo), written relative to cdf_hi so that it cannot underflow
    ratio = th.exp(log_cdf_lo - log_cdf_hi)
    p = th.exp(log_cdf_hi) * (ratio + noise_uniform.double() * (1.0 - ratio))
    z = th.special.ndtri(p).clamp(lo, hi)
    z = th.where(mirror, -z, z)
    return (loc.double() + scale.double() * z).clamp(low, high).to(loc.dtype)


def truncated_normal_log_mass(loc: th.Tensor, scale: th.Tensor, low: float, high: float) -> th.Tensor:
    """``log P(low <= X <= high)`` for ``X ~ N(loc, scale^2)``, per element, in float64: from the log-CDFs on the
    lower tail, so that it stays finite for intervals many standard deviations from the mean."""
    lo, hi, _ = _standardised_interval(loc, scale, low, high)
    log_cdf_lo, log_cdf_hi = th.special.log_ndtr(lo), th.special.log_ndtr(hi)
    return log_cdf_hi + th.log(-th.expm1(log_cdf_lo - log_cdf_hi))


def propose(a_t: th.Tensor, m_t: th.Tensor, s_t: th.Tensor, n_samples: int) -> th.Tensor:
    """``K`` proposals ``a_0^k`` from ``N(a_t / m_t, (s_t / m_t)^2 I)`` truncated to the box ``[-1, 1]^d``.

    The K uniforms behind each state's proposals form a Latin hypercube: in each dimension i, proposal k takes
    stratum ``pi_i(k)`` of ``[0, 1)`` (``pi_i`` a random permutation of the K strata, drawn per state and
    dimension) and a uniform point inside it. Each dimension's K uniforms cover all K strata,
    and each proposal is still, on its own, a draw of the truncated Gaussian, so the self-normalised estimates stay
    consistent, with lower variance than independent draws at the same K
    (``benchmarks/results/proposal_variance.md``).

    :param a_t: (B, d) noised actions
    :param m_t: (B, 1) mean coefficient; ``s_t``: (B, 1) noise scale
    :return: (B, K, d)
    """
    batch_size, action_dim = a_t.shape
    loc = (a_t / m_t).unsqueeze(1)  # (B, 1, d)
    scale = (s_t / m_t).unsqueeze(1)  # (B, 1, 1)
    strata = th.rand(batch_size, action_dim, n_samples, device=a_t.device).argsort(dim=-1).transpose(1, 2)  # (B, K, d)
    uniforms = (strata + th.rand(batch_size, n_samples, action_dim, device=a_t.device)) / n_samples
    return truncated_normal(loc, scale, -1.0, 1.0, uniforms)


def propose_around_policy(policy_actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """One proposal per policy sample: ``a_0^j ~ N(x_j, h^2 I)`` truncated to the box, ``x_j`` the j-th of M samples.

    The kernel width ``h`` is Silverman's rule of thumb per state and dimension, ``std_j(x_j) (4 / ((d + 2) M))^(1 /
    (d + 4))``, at least ``MIN_KERNEL_STD`` (a policy that has collapsed onto one action still proposes around it).
    A kernel's centre lies in the box, so at least about a sixth of its mass does (h <= 2), and the inverse CDF and
    the box mass need no log-space care.

    :param policy_actions: (B, M, d) the current policy's samples at each state, M >= 2
    :return: proposals (B, M, d), kernel widths (B, 1, d) and each kernel's log box mass per dimension (B, M, d),
        float64
    """
    n_kernels, action_dim = policy_actions.shape[1:]
    bandwidth_factor = (4.0 / ((action_dim + 2) * n_kernels)) ** (1.0 / (action_dim + 4))
    deviations = policy_actions - policy_actions.mean(dim=1, keepdim=True)
    sample_std = (deviations.square().sum(dim=1, keepdim=True) / (n_kernels - 1)).sqrt()
    kernel_std = (bandwidth_factor * sample_std).clamp(min=MIN_KERNEL_STD)  # (B, 1, d)
    centres, scale = policy_actions.double(), kernel_std.double()
    cdf_low, cdf_high = th.special.ndtr((-1.0 - centres) / scale), th.special.ndtr((1.0 - centres) / scale)
    mass = cdf_high - cdf_low
    z = th.special.ndtri(cdf_low + th.rand_like(centres) * mass)
    proposals = (centres + scale * z).clamp(-1.0, 1.0).to(policy_actions.dtype)
    return proposals, kernel_std, mass.log()


def mixture_log_ratio(
    a0: th.Tensor,
    loc: th.Tensor,
    proposal_std: th.Tensor,
    policy_actions: th.Tensor,
    kernel_std: th.Tensor,
    kernel_log_mass: th.Tensor,
) -> th.Tensor:
    """``log N(a_0; loc, proposal_std^2 I) - log q(a_0)`` for proposals drawn from the mixture ``q`` of both kinds.

    The first ``K - M`` proposals come from the truncated Gaussian ``N(loc, proposal_std^2 I)`` and the last M one from
    each policy kernel (:func:`propose_around_policy`); the balance heuristic weighs every proposal as a draw of their
    mixture ``q = (K - M) / K q_gauss + M / K mean_j kernel_j``, so that the self-normalised weights
    ``softmax(alpha Qn + this)`` are those of the posterior ``p(a_0 | a_t)`` whatever the policy is (the Gaussian
    part covers the box). With the Gaussian alone this would be the log of its box mass, the same for all K.

    :param a0: (B, K, d) proposals; ``loc``: (B, 1, d); ``proposal_std``: (B, 1, 1)
    :param policy_actions: (B, M, d) the kernels' centres; ``kernel_std``: (B, 1, d); ``kernel_log_mass``: (B, M, d)
        their log box mass per dimension (:func:`propose_around_policy`)
    :return: (B, K)
    """
    n_proposals, n_kernels = a0.shape[1], policy_actions.shape[1]
    half_log_two_pi = 0.5 * math.log(2 * math.pi)
    # log q_gauss - log N: minus the Gaussian's log box mass, per state
    gauss_term = -truncated_normal_log_mass(loc, proposal_std, -1.0, 1.0).sum(-1).to(a0.dtype)  # (B, 1)
    gaussian_exponent = -0.5 * ((a0 - loc) / proposal_std).square().sum(-1)  # (B, K): log N + its normaliser
    log_gauss_normaliser = a0.shape[-1] * (th.log(proposal_std.squeeze(-1)) + half_log_two_pi)  # (B, 1)
    kernel_normaliser = (kernel_log_mass.to(a0.dtype) + th.log(kernel_std) + half_log_two_pi).sum(-1)  # (B, M)
    # -|(a_0 - x_j) / h|^2 / 2 for every proposal and kernel, (B, K, M), expanded so that one batched matmul does the
    # cross terms
    scaled_a0, scaled_centres = a0 / kernel_std, policy_actions / kernel_std
    cross = th.bmm(scaled_a0, scaled_centres.transpose(1, 2))
    kernel_exponent = (
        cross - 0.5 * scaled_a0.square().sum(-1, keepdim=True) - 0.5 * scaled_centres.square().sum(-1).unsqueeze(1)
    )
    log_kernels = (kernel_exponent - kernel_normaliser.unsqueeze(1)).logsumexp(dim=-1) - math.log(n_kernels)  # (B, K)
    kernel_term = log_kernels - (gaussian_exponent - log_gauss_normaliser)  # log (mean_j kernel_j) - log N
    log_q_over_likelihood = th.logaddexp(
        gauss_term + math.log((n_proposals - n_kernels) / n_proposals), kernel_term + math.log(n_kernels / n_proposals)
    )
    return -log_q_over_likelihood


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


class VelocityTarget(NamedTuple):
    """Output of :func:`estimate_velocity`."""

    velocity: th.Tensor  # (B, d) probability-flow velocity at (a_t, t)
    score: th.Tensor  # (B, d) estimated score of p_t at a_t
    q_values: th.Tensor  # (B, K) critic values of the proposals (for monitoring)
    gradient_form: th.Tensor  # (B, d) bool: where the gradient form was used


def _q_and_gradient_static(q_function: QFunction, a0: th.Tensor, rows: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Q (B, K) and dQ/da (B, K, d) of all proposals (B, K, d), detached, by ``torch.func.grad`` (which the outer
    ``no_grad`` leaves on: no graph to the critic's weights), with no data-dependent shapes."""

    def summed_q(proposals: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        q_values = q_function(proposals, rows)
        return q_values.sum(), q_values

    with th.no_grad():
        grad_q, q_values = th.func.grad(summed_q, has_aux=True)(a0)
    return q_values, grad_q


def _q_and_gradient_where_needed(
    q_function: QFunction, a0: th.Tensor, rows: th.Tensor, may_take_gradient: th.Tensor
) -> tuple[th.Tensor, th.Tensor]:
    """Q (B, K) of all proposals (B, K, d) and dQ/da (B, K, d), detached, the gradient only at the states where
    ``may_take_gradient`` (B,) holds (zero elsewhere): one critic call with autograd for those states, one without
    for the rest."""
    grad_rows, other_rows = rows[may_take_gradient], rows[~may_take_gradient]
    q_values = a0.new_empty(a0.shape[:2])
    grad_q = th.zeros_like(a0)
    if len(grad_rows) > 0:
        with th.enable_grad():
            a0_grad = a0[grad_rows].detach().requires_grad_(True)
            q_grad_rows = q_function(a0_grad, grad_rows)
            (grad_q[grad_rows],) = th.autograd.grad(q_grad_rows.sum(), a0_grad)
        q_values[grad_rows] = q_grad_rows.detach()
    if len(other_rows) > 0:
        with th.no_grad():
            q_values[other_rows] = q_function(a0[other_rows], other_rows)
    return q_values, grad_q


def estimate_velocity(
    path: NoisePath,
    a_t: th.Tensor,
    t: th.Tensor,
    q_function: QFunction,
    alpha: float,
    n_samples: int,
    estimator: str,
    q_scale: th.Tensor,
    static_shapes: bool = False,
    policy_actions: th.Tensor | None = None,
) -> VelocityTarget:
    """Monte-Carlo probability-flow velocity of the box-supported Boltzmann policy ``exp(alpha Q / q_scale)``.

    :param a_t: (B, d) noised actions; ``t``: (B, 1) their times
    :param q_function: maps proposals (B', K, d) and their batch rows (B',) to Q values (B', K)
    :param alpha: inverse temperature on the normalised Q
    :param estimator: "posterior" (Tweedie form everywhere) or "hybrid" (the gradient form for each
        state and dimension whose posterior lies ``FACE_MARGIN`` proposal standard deviations inside the
        box, the posterior form elsewhere)
    :param q_scale: the Q spread to divide by, a scalar or (B, 1)
    :param static_shapes: the hybrid takes dQ/da at every proposal (every tensor's shape then depends on B, K and d
        only, as ``torch.compile`` and CUDA graphs want) rather than only at the states that may use it (less work
        when run op by op); the velocity is the same
    :param policy_actions: (B, M, d) the current policy's samples at each state, 2 <= M < K, or None: M of the K
        proposals are then drawn around them (:func:`propose_around_policy`) and the other K - M from the truncated
        Gaussian, all weighted as draws of the mixture of both (:func:`mixture_log_ratio`). Where the target is
        narrower than the Gaussian (large t), proposals from a policy near the target land where the posterior is,
        where the Gaussian's fall mostly outside it; the estimate stays consistent whatever the policy
    :return: velocity (B, d), score (B, d), the proposals' Q values (B, K) and the gradient-form mask (B, d), all detached
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"score_estimator must be one of {ESTIMATORS}, got {estimator!r}")
    m_t, s_t = path.mean_coef(t), path.std(t)
    proposal_std = s_t / m_t  # (B, 1)
    margin = FACE_MARGIN * proposal_std
    n_policy = 0 if policy_actions is None else policy_actions.shape[1]
    if policy_actions is not None and not 2 <= n_policy < n_samples:
        raise ValueError(f"policy_actions must hold 2 to K - 1 = {n_samples - 1} samples per state, got {n_policy}")
    a0 = propose(a_t, m_t, s_t, n_samples - n_policy)
    log_ratio = None  # (B, K) where the proposals are a mixture; the Gaussian proposals alone need no correction
    if policy_actions is not None:
        policy_proposals, kernel_std, kernel_log_mass = propose_around_policy(policy_actions)
        a0 = th.cat([a0, policy_proposals], dim=1)
        log_ratio = mixture_log_ratio(
            a0, (a_t / m_t).unsqueeze(1), proposal_std.unsqueeze(1), policy_actions, kernel_std, kernel_log_mass
        )
    rows = th.arange(a_t.shape[0], device=a_t.device)
    # states where some dimension may take the gradient form: its proposal centre lies inside the margin
    may_take_gradient = (1 - (a_t / m_t).abs() >= margin).any(dim=-1)  # (B,)
    if estimator == "posterior":
        with th.no_grad():
            q_values, grad_q = q_function(a0, rows), None
    elif static_shapes:
        q_values, grad_q = _q_and_gradient_static(q_function, a0, rows)
    else:
        q_values, grad_q = _q_and_gradient_where_needed(q_function, a0, rows, may_take_gradient)

    logits = alpha * q_values / q_scale  # (B, K); per-state shifts cancel in the softmax
    if log_ratio is not None:
        logits = logits + log_ratio
    weights = th.softmax(logits, dim=1).unsqueeze(-1)  # (B, K, 1)

    a0_mean = (weights * a0).sum(1)  # posterior form's E[a_0 | a_t]
    posterior_score = score_from_posterior_mean(path, a_t, t, a0_mean)
    posterior_velocity = velocity_from_posterior_mean(path, a_t, t, a0_mean)
    if grad_q is None:
        return VelocityTarget(
            posterior_velocity.detach(), posterior_score.detach(), q_values, th.zeros_like(a_t, dtype=th.bool)
        )

    # gradient form without face terms: (1/m) sum_k w_k alpha/q_scale dQ/da(a_0^k)
    grad_log_target = (weights * grad_q).sum(1) * (alpha / q_scale)
    gradient_score = grad_log_target / m_t
    implied_a0_mean = a_t / m_t + proposal_std**2 * grad_log_target  # E[a_0 | a_t] by the gradient form (Tweedie)
    gradient_form = (
        may_take_gradient.unsqueeze(-1) & (1 - a0_mean.abs() >= margin) & (1 - implied_a0_mean.abs() >= margin)
    )  # (B, d)
    score = th.where(gradient_form, gradient_score, posterior_score)
    velocity = th.where(gradient_form, velocity_from_score(path, a_t, t, gradient_score), posterior_velocity)
    return VelocityTarget(velocity.detach(), score.detach(), q_values, gradient_form)
