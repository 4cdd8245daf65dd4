"""Monte-Carlo score of the noised box-supported Boltzmann policy and its probability-flow velocity (pure torch).

The target policy is ``pi*(a) ∝ exp(beta Q(a))`` on the box ``[-1, 1]^d`` (``beta = alpha / q_scale``); after noising
along a path ``a_t = m_t a_0 + s_t e`` (see :mod:`sb3_som.paths`) the posterior of the clean action is

    p(a_0 | a_t) ∝ exp(beta Q(a_0)) N(a_0; a_t / m_t, sigma_t^2 I) on the box,   sigma_t = s_t / m_t,

and the probability-flow velocity at ``(a_t, t)`` needs only its mean (Tweedie):
``score = (m_t E[a_0 | a_t] - a_t) / s_t^2``, ``v = m'_t E[a_0|a_t] + s'_t (a_t - m_t E[a_0|a_t]) / s_t``. This holds
for any target on the box, faces included.

:func:`estimate_velocity` estimates ``E[a_0 | a_t]`` by importance sampling with K critic evaluations per state, in
two stages, so that the weights do not collapse when the target is narrow or the action has many dimensions:

1. the anchor (the clean action ``a_t`` was noised from, when given) and ``first_stage_size(K) - 1`` draws of the
   Gaussian ``N(a_t / m_t, sigma_t^2 I)`` truncated to the box, with the critic's gradient at each;
2. per state and action dimension, a Gaussian fitted to the posterior: the log target's curvature and slope from a
   least-squares line through the first stage's gradients (curvature clipped at 0), times the Gaussian factor;
   the remaining proposals are drawn from it, truncated to the box.

Every proposal, the anchor included, is weighed as a draw of the balance of the two proposal densities
(``w ∝ exp(beta Q) N(a_0; a_t / m_t, sigma_t^2) / q_mix``, self-normalised), so the estimate is consistent whatever
the fit. Where the posterior is close to Gaussian the fitted proposals are close to draws of it and the weights
stay even in any dimension; the Gaussian proposals keep the box covered where it is not (several modes). The
anchor makes the estimate exact in expectation at the fixed point: where the policy samples the target, the
anchor is a draw of the posterior; it counts after a step along the posterior's score (:func:`stepped_anchor`), of
mean zero there, which pulls a policy broader than its target back where the weights collapse onto it. Shapes:
``B`` states, ``K`` proposals, ``d`` action dimensions; times are ``(B, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch as th

from sb3_som.paths import NoisePath

# share of the K proposals in the first stage (the anchor and the Gaussian proposals), at least 2 of them
FIRST_STAGE_SHARE = 0.25
MIN_SCORE_SAMPLES = 3
# the anchor's step size per dimension is at most this over the first stage's mean square gradient of the log
# posterior (its inverse Fisher information: the posterior's variance on a Gaussian, half of it on a Laplace)
ANCHOR_STEP_SCALE = 4.0

# Q values (B', K) of proposals a_0 (B', K, d) at the states ``rows`` (B',) of the batch
QFunction = Callable[[th.Tensor, th.Tensor], th.Tensor]

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


class BoxNormal:
    """``N(loc, scale^2)`` truncated to the box ``[-1, 1]``, per element (``loc`` and ``scale`` broadcast together).

    The box is held in standard units, in float64 and mirrored where it lies entirely above the mean, so that it
    always reaches into the lower half, where the log-CDF is accurate; its log-mass is computed once, at
    construction, for the mean and the density. So intervals many standard deviations from the mean,
    where the Gaussian CDF rounds to 0 or 1, still get exact samples and finite log-densities. Results come back
    in ``loc``'s dtype.
    """

    def __init__(self, loc: th.Tensor, scale: th.Tensor) -> None:
        self.dtype = loc.dtype
        self.loc, self.scale = loc.double(), scale.double()
        lo, hi = (-1.0 - self.loc) / self.scale, (1.0 - self.loc) / self.scale
        self.mirror = lo > 0
        self.lo, self.hi = th.where(self.mirror, -hi, lo), th.where(self.mirror, -lo, hi)
        log_cdf_lo, log_cdf_hi = th.special.log_ndtr(self.lo), th.special.log_ndtr(self.hi)
        self.log_mass = log_cdf_hi + th.log(-th.expm1(log_cdf_lo - log_cdf_hi))  # log P(-1 <= X <= 1)

    def sample(self, noise_uniform: th.Tensor) -> th.Tensor:
        """Inverse-CDF samples from U(0, 1) draws ``noise_uniform`` of the output's shape (to which ``loc`` and
        ``scale`` broadcast: K draws per (loc, scale) cost one evaluation of the interval's CDF)."""
        # beyond +-37 ndtri cannot invert the CDF; the clamp of z below holds the sample in the box
        lo, hi = self.lo.clamp(-37.0, 37.0), self.hi.clamp(-37.0, 37.0)
        log_cdf_lo, log_cdf_hi = th.special.log_ndtr(lo), th.special.log_ndtr(hi)
        # p = cdf_lo + u (cdf_hi - cdf_lo), written relative to cdf_hi so that it cannot underflow
        ratio = th.exp(log_cdf_lo - log_cdf_hi)
        p = th.exp(log_cdf_hi) * (ratio + noise_uniform.double() * (1.0 - ratio))
        z = th.special.ndtri(p).clamp(lo, hi)
        z = th.where(self.mirror, -z, z)
        return (self.loc + self.scale * z).clamp(-1.0, 1.0).to(self.dtype)

    def mean(self) -> th.Tensor:
        """``loc + scale (phi(lo) - phi(hi)) / Z`` in standard units, inside the box."""
        log_phi_lo = -0.5 * self.lo.square() - HALF_LOG_TWO_PI
        log_phi_hi = -0.5 * self.hi.square() - HALF_LOG_TWO_PI
        shift = th.exp(log_phi_lo - self.log_mass) - th.exp(log_phi_hi - self.log_mass)  # E[z] in standard units
        shift = th.where(self.mirror, -shift, shift)
        return (self.loc + self.scale * shift).clamp(-1.0, 1.0).to(self.dtype)

    def log_density(self, x: th.Tensor) -> th.Tensor:
        """``log`` of the density at x (..., d) in the box, summed over the last dimension (to which ``loc`` and
        ``scale`` broadcast)."""
        loc, scale = self.loc.to(self.dtype), self.scale.to(self.dtype)
        log_mass = self.log_mass.to(self.dtype)
        return (-0.5 * ((x - loc) / scale).square() - th.log(scale) - HALF_LOG_TWO_PI - log_mass).sum(-1)


def noising_gaussian(a_t: th.Tensor, m_t: th.Tensor, s_t: th.Tensor) -> BoxNormal:
    """The Gaussian factor of the posterior of ``a_0`` given ``a_t``, ``N(a_t / m_t, (s_t / m_t)^2 I)`` truncated to the
    box: loc (B, 1, d), scale (B, 1, 1), from noised actions ``a_t`` (B, d) and the path's ``m_t``, ``s_t`` (B, 1)."""
    return BoxNormal((a_t / m_t).unsqueeze(1), (s_t / m_t).unsqueeze(1))


def propose(gaussian: BoxNormal, n_samples: int) -> th.Tensor:
    """``K`` proposals ``a_0^k`` per state from the truncated Gaussian ``gaussian`` (loc (B, 1, d), scale (B, 1, 1):
    :func:`noising_gaussian`).

    The K uniforms behind each state's proposals form a Latin hypercube: in each dimension i, proposal k takes
    stratum ``pi_i(k)`` of ``[0, 1)`` (``pi_i`` a random permutation of the K strata, drawn per state and
    dimension) and a uniform point inside it. Each dimension's K uniforms cover all K strata,
    and each proposal is still, on its own, a draw of the truncated Gaussian, so the self-normalised estimates stay
    consistent, with lower variance than independent draws at the same K.

    :return: (B, K, d)
    """
    batch_size, _, action_dim = gaussian.loc.shape
    device = gaussian.loc.device
    strata = th.rand(batch_size, action_dim, n_samples, device=device).argsort(dim=-1).transpose(1, 2)  # (B, K, d)
    uniforms = (strata + th.rand(batch_size, n_samples, action_dim, device=device)) / n_samples
    return gaussian.sample(uniforms)


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
    effective_sample_size: th.Tensor  # (B,) 1 / sum_k w_k^2 of the self-normalised weights, in [1, K]


def first_stage_size(n_samples: int) -> int:
    """How many of the K proposals form the first stage (anchor included): ``max(2, round(FIRST_STAGE_SHARE * K))``."""
    return max(2, round(FIRST_STAGE_SHARE * n_samples))


def _q_and_gradient(q_function: QFunction, a0: th.Tensor, rows: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Q (B, K) and dQ/da (B, K, d) of proposals (B, K, d), detached, by ``torch.func.grad`` (which an outer
    ``no_grad`` leaves on: no graph to the critic's weights); every shape depends on B, K and d only."""

    def summed_q(proposals: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        q_values = q_function(proposals, rows)
        return q_values.sum(), q_values

    with th.no_grad():
        grad_q, q_values = th.func.grad(summed_q, has_aux=True)(a0)
    return q_values, grad_q


def fit_posterior(
    points: th.Tensor, log_target_grad: th.Tensor, loc: th.Tensor, proposal_std: th.Tensor
) -> tuple[th.Tensor, th.Tensor]:
    """A Gaussian per state and dimension fitted to ``exp(log_target) N(loc, proposal_std^2)``, truncated to the box.

    The log target's gradient is fitted, per dimension, by a least-squares line through the points:
    ``g_i(a) ≈ gbar_i - c_i (a_i - abar_i)``, with the curvature ``c_i`` clipped at 0 (a convex or flat stretch
    gets the Gaussian factor's width). The product with the Gaussian factor is then Gaussian, with precision
    ``1 / proposal_std^2 + c_i`` and mean ``(loc_i / proposal_std^2 + c_i abar_i + gbar_i) / precision``, clipped to
    the box.

    :param points: (B, J, d) where the gradients were taken, J >= 2; ``log_target_grad``: (B, J, d)
    :param loc: (B, 1, d) the Gaussian factor's mean; ``proposal_std``: (B, 1, 1) its standard deviation
    :return: mean (B, 1, d) and standard deviation (B, 1, d) of the fit
    """
    point_mean, grad_mean = points.mean(1, keepdim=True), log_target_grad.mean(1, keepdim=True)
    deviation = points - point_mean
    slope = (deviation * (log_target_grad - grad_mean)).sum(1, keepdim=True)
    slope = slope / deviation.square().sum(1, keepdim=True).clamp(min=1e-12)
    curvature = (-slope).clamp(min=0.0)
    prior_precision = proposal_std**-2
    precision = prior_precision + curvature
    mean = (loc * prior_precision + curvature * point_mean + grad_mean) / precision
    return mean.clamp(-1.0, 1.0), precision.rsqrt()


def stepped_anchor(points: th.Tensor, log_target_grad: th.Tensor, loc: th.Tensor, proposal_std: th.Tensor) -> th.Tensor:
    """The anchor ``a = points[:, 0]`` moved along a Stein direction of the posterior: ``a + h (phi g + phi')``.

    ``g`` is the gradient of ``log p(a_0 | a_t)`` at the anchor and ``phi(a) = 1 - a^2`` per dimension, so that
    ``E_p[phi g + phi'] = 0`` for any density p on the box, faces included (integration by parts; ``phi`` vanishes
    at the faces): where the anchor is a draw of the posterior and ``h`` does not depend on it, the step has mean
    zero and the estimate stays unbiased; where the anchor lies in the posterior's tails (a policy broader than its
    target) the step moves it toward the posterior's mass. The step size per dimension comes from the other
    first-stage points only (the Gaussian proposals), so that it does not depend on the anchor:
    ``h = min(their fit's variance, ANCHOR_STEP_SCALE / mean_j g_j^2)``. On a Gaussian posterior the fit is exact
    and the step lands on the posterior mean; on a kinked one (a ReLU critic) the fitted curvature is unreliable and
    the gradients' mean square bounds it.

    :param points: (B, J, d) the first stage, the anchor first, J >= 2; ``log_target_grad``: (B, J, d) the
        gradient of the log target ``beta Q`` there
    :param loc: (B, 1, d) the Gaussian factor's mean; ``proposal_std``: (B, 1, 1) its standard deviation
    :return: (B, d)
    """
    log_posterior_grad = log_target_grad - (points - loc) / proposal_std.square()
    anchor, grad = points[:, 0], log_posterior_grad[:, 0]
    _, fit_std = fit_posterior(points[:, 1:], log_target_grad[:, 1:], loc, proposal_std)
    fisher = log_posterior_grad[:, 1:].square().mean(1).clamp(min=1e-12)
    step_size = th.minimum(fit_std.squeeze(1).square(), ANCHOR_STEP_SCALE / fisher)
    return anchor + step_size * ((1 - anchor.square()) * grad - 2 * anchor)


def estimate_velocity(
    path: NoisePath,
    a_t: th.Tensor,
    t: th.Tensor,
    q_function: QFunction,
    alpha: float,
    n_samples: int,
    q_scale: th.Tensor,
    anchor: th.Tensor | None = None,
) -> VelocityTarget:
    """Monte-Carlo probability-flow velocity of the box-supported Boltzmann policy ``exp(alpha Q / q_scale)``.

    :param a_t: (B, d) noised actions; ``t``: (B, 1) their times
    :param q_function: maps proposals (B', K, d) and their batch rows (B',) to Q values (B', K)
    :param alpha: inverse temperature on the normalised Q
    :param n_samples: K, the critic evaluations per state, >= 3
    :param q_scale: the Q spread to divide by, a scalar or (B, 1)
    :param anchor: (B, d) the clean actions (in the box) that ``a_t`` was noised from, or None: each is then one of
        its state's first-stage proposals. Where the anchor is a draw of the target's posterior (the policy samples
        the target), the estimate is unbiased for any K and d
    :return: velocity (B, d), score (B, d), the proposals' Q values (B, K) and the weights' effective sample size
        (B,), all detached
    """
    if n_samples < MIN_SCORE_SAMPLES:
        raise ValueError(f"n_samples must be >= {MIN_SCORE_SAMPLES} (two first-stage proposals, one fitted), got {n_samples}")
    m_t, s_t = path.mean_coef(t), path.std(t)
    gaussian = noising_gaussian(a_t, m_t, s_t)
    loc, proposal_std = (a_t / m_t).unsqueeze(1), (s_t / m_t).unsqueeze(1)  # (B, 1, d), (B, 1, 1): gaussian's
    beta = alpha / q_scale
    n_first = first_stage_size(n_samples)
    n_gaussian = n_first - (anchor is not None)
    n_fitted = n_samples - n_first
    first = propose(gaussian, n_gaussian)
    if anchor is not None:
        first = th.cat([anchor.unsqueeze(1), first], dim=1)  # (B, J, d)
    rows = th.arange(a_t.shape[0], device=a_t.device)
    q_first, grad_first = _q_and_gradient(q_function, first, rows)
    fit_mean, fit_std = fit_posterior(first, beta * grad_first, loc, proposal_std)
    fit = BoxNormal(fit_mean, fit_std)
    fitted = fit.sample(th.rand(a_t.shape[0], n_fitted, a_t.shape[1], device=a_t.device))  # (B, K - J, d)
    with th.no_grad():
        q_fitted = q_function(fitted, rows)
    a0, q_values = th.cat([first, fitted], dim=1), th.cat([q_first, q_fitted], dim=1)  # (B, K, d), (B, K)
    values = a0  # what each point contributes to the weighted mean: itself, the anchor its Stein step
    if anchor is not None:
        stepped = stepped_anchor(first, beta * grad_first, loc, proposal_std)
        values = th.cat([stepped.unsqueeze(1), a0[:, 1:]], dim=1)

    # log N(a_0; loc, sigma^2) - log q_mix(a_0), q_mix the proposals' balance of both truncated Gaussians; the
    # untruncated factor's normaliser is the same for all K and cancels
    gaussian_factor = (-0.5 * ((a0 - loc) / proposal_std).square()).sum(-1)
    log_gaussian, log_fitted = gaussian.log_density(a0), fit.log_density(a0)
    n_drawn = n_gaussian + n_fitted
    log_mix = th.logaddexp(log_gaussian + math.log(n_gaussian / n_drawn), log_fitted + math.log(n_fitted / n_drawn))
    logits = beta * q_values + gaussian_factor - log_mix  # (B, K); per-state shifts cancel in the softmax
    weights = th.softmax(logits, dim=1)
    # control variate: the same proposals weighed for the fitted Gaussian itself, whose mean is known; where the fit
    # is the posterior both weightings agree and the estimate is the fit's exact mean
    fit_weights = th.softmax(log_fitted - log_mix, dim=1)
    fitted_mean = fit.mean().squeeze(1)  # (B, d)
    # not clipped to the box: a noisy estimate past a face averages, over the regression, to a mean inside it
    a0_mean = (weights.unsqueeze(-1) * values - fit_weights.unsqueeze(-1) * a0).sum(1) + fitted_mean
    score = score_from_posterior_mean(path, a_t, t, a0_mean)
    velocity = velocity_from_posterior_mean(path, a_t, t, a0_mean)
    return VelocityTarget(velocity.detach(), score.detach(), q_values, 1.0 / weights.square().sum(1))
