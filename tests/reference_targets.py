"""Fixed Boltzmann targets ``exp(Q)`` with known answers, the reference of the tests and benchmarks (pure torch).

- :class:`GaussianTarget`: ``Q(a) = -|a - mu|^2 / (2 sigma^2)``. Along ``a_t = m_t a_0 + s_t e`` the
  noised target is ``N(m_t mu, (m_t^2 sigma^2 + s_t^2) I)``; its score and probability-flow velocity
  ``m' E[a_0 | a_t] + s' E[e | a_t]`` follow from Gaussian conditioning.
- :class:`SeparableBoxTarget`: ``exp(sum_i q_i(a_i))`` on the action box, its answers by quadrature; :func:`peaked`
  and :func:`linear` build the ``q_i``.

The multi-goal bandit's mixture, ``sb3_som.envs.GaussianMixtureTarget``, is a third. :func:`carry_along_field`
integrates a field (given as its posterior mean) from t = 0.999 to 0, the integrator of the tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch as th

from sb3_som.paths import NoisePath


def peaked(center: float, width: float) -> Callable[[th.Tensor], th.Tensor]:
    """The log density (up to a constant) of a bump at ``center`` with standard deviation ``width``, elementwise."""
    return lambda x: -((x - center) ** 2) / (2 * width**2)


def linear(slope: float) -> Callable[[th.Tensor], th.Tensor]:
    """The log density (up to a constant) ``slope * x``, elementwise: a Q whose maximum is on a face."""
    return lambda x: slope * x


class GaussianTarget:
    """Gaussian target ``N(mu, sigma^2 I)`` as ``exp(Q)``; ``mu``: (d,)."""

    def __init__(self, mu: th.Tensor, sigma: float):
        self.mu = mu  # (d,)
        self.sigma = sigma

    def q_function(self, proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        """Q of proposals (B', K, d) -> (B', K); the same at every state."""
        return -((proposals - self.mu) ** 2).sum(-1) / (2 * self.sigma**2)

    def sample_noised(self, path: NoisePath, t: th.Tensor, generator: th.Generator) -> th.Tensor:
        """a_t ~ p_t for times t (B, 1): (B, d)."""
        m, s = path.mean_coef(t), path.std(t)
        std = th.sqrt(m**2 * self.sigma**2 + s**2)
        return m * self.mu + std * th.randn(t.shape[0], self.mu.shape[0], generator=generator, dtype=t.dtype)

    def score(self, path: NoisePath, a_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        m, s = path.mean_coef(t), path.std(t)
        return -(a_t - m * self.mu) / (m**2 * self.sigma**2 + s**2)

    def velocity(self, path: NoisePath, a_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        m, s = path.mean_coef(t), path.std(t)
        var = m**2 * self.sigma**2 + s**2
        centred = a_t - m * self.mu
        a0_mean = self.mu + (m * self.sigma**2 / var) * centred
        eps_mean = (s / var) * centred
        return path.mean_coef_dt(t) * a0_mean + path.std_dt(t) * eps_mean


class SeparableBoxTarget:
    """Box-supported target ``exp(sum_i q_i(a_i))`` on ``[-1, 1]^d``, with its answers by quadrature.

    Each ``q_i`` maps a float64 tensor of values in ``[-1, 1]`` to their log density (up to a constant),
    elementwise. The posterior ``p(a_0 | a_t)`` factorises over dimensions, so ``E[a_0 | a_t]``, the
    score and the velocity of ``p_t`` follow from one 1-D quadrature per dimension (``n_grid`` points,
    float64), exactly enough to serve as a reference for the Monte-Carlo estimators.
    """

    def __init__(self, log_densities: list[Callable[[th.Tensor], th.Tensor]], n_grid: int = 20_001):
        self.log_densities = log_densities
        self.grid = th.linspace(-1.0, 1.0, n_grid, dtype=th.float64)

    @property
    def dim(self) -> int:
        return len(self.log_densities)

    def q_function(self, proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        """Q of proposals (B', K, d) -> (B', K); the same at every state."""
        values = [q(proposals[..., i].double()) for i, q in enumerate(self.log_densities)]
        return th.stack(values, dim=-1).sum(-1).to(proposals.dtype)

    def posterior_mean(self, path: NoisePath, a_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        """``E[a_0 | a_t]`` (B, d) in float64 for noised actions (B, d) at times (B, 1)."""
        m, s = path.mean_coef(t.double()), path.std(t.double())  # (B, 1)
        means = []
        for i, q in enumerate(self.log_densities):
            log_weight = q(self.grid) - (a_t[:, i : i + 1].double() - m * self.grid) ** 2 / (2 * s**2)  # (B, G)
            means.append((th.softmax(log_weight, dim=1) * self.grid).sum(1))
        return th.stack(means, dim=-1)

    def score(self, path: NoisePath, a_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        """Score of ``p_t`` at ``a_t`` (B, d), float64 (Tweedie with the quadrature posterior mean)."""
        m, s = path.mean_coef(t.double()), path.std(t.double())
        return (m * self.posterior_mean(path, a_t, t) - a_t.double()) / s**2

    def velocity(self, path: NoisePath, a_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        """Probability-flow velocity of ``p_t`` at ``a_t`` (B, d), float64."""
        t64, a0_mean = t.double(), self.posterior_mean(path, a_t, t)
        m, s = path.mean_coef(t64), path.std(t64)
        return path.mean_coef_dt(t64) * a0_mean + path.std_dt(t64) * (a_t.double() - m * a0_mean) / s

    def sample(self, n: int, generator: th.Generator) -> th.Tensor:
        """n exact samples (n, d), float64 (inverse CDF on the grid)."""
        columns = []
        for q in self.log_densities:
            cdf = th.softmax(q(self.grid), dim=0).cumsum(0)
            u = th.rand(n, dtype=th.float64, generator=generator) * cdf[-1]
            columns.append(self.grid[th.searchsorted(cdf, u).clamp(max=len(self.grid) - 1)])
        return th.stack(columns, dim=-1)

    def sample_noised(self, path: NoisePath, t: th.Tensor, generator: th.Generator) -> th.Tensor:
        """a_t ~ p_t for times t (B, 1): (B, d), float32."""
        a0 = self.sample(t.shape[0], generator).float()
        return path.noised(a0, t, th.randn(a0.shape, generator=generator))

    def mass_beyond(self, threshold: float) -> th.Tensor:
        """``P(a_i > threshold)`` under the target, per dimension (d,)."""
        probabilities = [th.softmax(q(self.grid), dim=0)[self.grid > threshold].sum() for q in self.log_densities]
        return th.stack(probabilities)


def field_times(refine: int = 1) -> th.Tensor:
    """The integrator's times, decreasing from 0.999 to 0: steps of 0.0095 / ``refine`` down to t = 0.05, then
    40 * ``refine`` steps evenly spaced in log t to 1e-4, then t = 0."""
    return th.cat(
        [th.linspace(0.999, 0.05, 100 * refine + 1)[:-1], th.logspace(math.log10(0.05), -4, 40 * refine), th.zeros(1)]
    )


def carry_along_field(
    path: NoisePath, a_start: th.Tensor, posterior_mean: Callable[[th.Tensor, th.Tensor], th.Tensor], refine: int = 1
) -> th.Tensor:
    """Carry samples ``a_start`` (n, d) of p_t at t = 0.999 to t = 0: (n, d).

    ``posterior_mean(a_t, t)`` gives ``E[a_0 | a_t]`` (n, d) at times t (n, 1); each step moves along the path
    with it and the noise it implies (first order, stable where the field is stiff near the faces at small t).
    """
    times = field_times(refine)
    a = a_start
    for t_now, t_next in zip(times[:-1].tolist(), times[1:].tolist(), strict=True):
        t, r = th.full((a.shape[0], 1), t_now), th.full((a.shape[0], 1), t_next)
        m, s = path.mean_coef(t), path.std(t)
        a0_mean = posterior_mean(a, t)
        a = path.mean_coef(r) * a0_mean + path.std(r) * (a - m * a0_mean) / s
    return a


def posterior_mean_from_velocity(path: NoisePath, a_t: th.Tensor, t: th.Tensor, velocity: th.Tensor) -> th.Tensor:
    """``E[a_0 | a_t]`` (B, d) from the probability-flow velocity (B, d) at a_t (B, d), t (B, 1)."""
    m, s, dm, ds = path.mean_coef(t), path.std(t), path.mean_coef_dt(t), path.std_dt(t)
    return (ds * a_t - s * velocity) / (ds * m - s * dm)
