"""Fixed Boltzmann targets ``exp(Q)`` with known answers, for checks and benchmarks (pure torch).

- :class:`GaussianTarget`: ``Q(a) = -|a - mu|^2 / (2 sigma^2)``. Along ``a_t = m_t a_0 + s_t e`` the
  noised target is ``N(m_t mu, (m_t^2 sigma^2 + s_t^2) I)``; its score and probability-flow velocity
  ``m' E[a_0 | a_t] + s' E[e | a_t]`` follow from Gaussian conditioning.
- :class:`GaussianMixtureTarget`: ``Q(a) = log sum_i w_i N(a; c_i, sigma^2 I)``, so ``exp(Q)`` is the
  mixture itself (the multi-goal bandit's bumps with unequal weights).
"""

from __future__ import annotations

import math

import torch as th

from sb3_som.paths import NoisePath


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


class GaussianMixtureTarget:
    """Mixture ``sum_i w_i N(c_i, sigma^2 I)`` as ``exp(Q)``; ``centers``: (M, d), ``weights``: (M,)."""

    def __init__(self, centers: th.Tensor, weights: th.Tensor, sigma: float):
        self.centers = centers
        self.weights = weights / weights.sum()
        self.sigma = sigma

    def log_density(self, actions: th.Tensor) -> th.Tensor:
        """``log p(a)`` for actions (..., d) -> (...)."""
        d = self.centers.shape[1]
        sq = ((actions.unsqueeze(-2) - self.centers) ** 2).sum(-1)  # (..., M)
        log_norm = -0.5 * d * math.log(2 * math.pi * self.sigma**2)
        return th.logsumexp(th.log(self.weights) + log_norm - sq / (2 * self.sigma**2), dim=-1)

    def q_function(self, proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        """Q of proposals (B', K, d) -> (B', K); the same at every state."""
        return self.log_density(proposals)

    def sample(self, n: int, generator: th.Generator) -> th.Tensor:
        """n exact samples (n, d)."""
        component = th.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = th.randn(n, self.centers.shape[1], generator=generator)
        return self.centers[component] + self.sigma * noise

    def nearest_mode(self, actions: th.Tensor) -> th.Tensor:
        """Index (n,) of the nearest center, -1 where no center is within 3 sigma."""
        distance = th.cdist(actions, self.centers)
        nearest = distance.argmin(dim=1)
        return th.where(distance.min(dim=1).values < 3 * self.sigma, nearest, -1)
