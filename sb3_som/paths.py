"""Noise paths and the (r, t) sampler of the MeanFlow actor (pure torch, no SB3).

Time runs from ``t = 0`` (an action) to ``t = 1`` (noise). Every path is written as

    a_t = m_t a_0 + s_t e,   e ~ N(0, I),

so the score estimators and the probability-flow velocity only need ``m_t``, ``s_t`` and their
time derivatives. Tensors of times have shape ``(batch, 1)`` so they broadcast over action dims.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch as th


class NoisePath(ABC):
    """A Gaussian path ``a_t = m_t a_0 + s_t e`` from actions (t = 0) to noise (t = 1)."""

    name: str

    @abstractmethod
    def mean_coef(self, t: th.Tensor) -> th.Tensor:
        """``m_t``, same shape as ``t``."""

    @abstractmethod
    def std(self, t: th.Tensor) -> th.Tensor:
        """``s_t``, same shape as ``t``."""

    @abstractmethod
    def mean_coef_dt(self, t: th.Tensor) -> th.Tensor:
        """``dm_t/dt``, same shape as ``t``."""

    @abstractmethod
    def std_dt(self, t: th.Tensor) -> th.Tensor:
        """``ds_t/dt``, same shape as ``t``."""

    def noised(self, a0: th.Tensor, t: th.Tensor, eps: th.Tensor) -> th.Tensor:
        """``a_t = m_t a_0 + s_t e``; ``a0, eps``: (batch, action_dim), ``t``: (batch, 1)."""
        return self.mean_coef(t) * a0 + self.std(t) * eps


class LinearPath(NoisePath):
    """MeanFlow's linear (rectified-flow) path ``a_t = (1 - t) a_0 + t e``."""

    name = "linear"

    def mean_coef(self, t: th.Tensor) -> th.Tensor:
        return 1.0 - t

    def std(self, t: th.Tensor) -> th.Tensor:
        return t

    def mean_coef_dt(self, t: th.Tensor) -> th.Tensor:
        return -th.ones_like(t)

    def std_dt(self, t: th.Tensor) -> th.Tensor:
        return th.ones_like(t)


T_EPS = 1e-3
# t = U^TIME_POWER: density ∝ t^(1 / TIME_POWER - 1), finer near the actions (t = 0), where the flow of a narrow
# target turns within a time of about the target's width (docs/algorithm.md, "Times and steps")
TIME_POWER = 3


def sample_r_t(batch_size: int, mean_flow_fraction: float, device: th.device | str = "cpu") -> tuple[th.Tensor, th.Tensor]:
    """Draw the interval ``(r, t)`` of the average velocity, each of shape (batch, 1), ``r <= t``: ``t = T_EPS +
    (1 - 2 T_EPS) U^TIME_POWER`` with ``U ~ U[0, 1]``, ``r ~ U[0, t]``, then ``r = t`` (the instantaneous velocity)
    for all but a ``mean_flow_fraction`` of the batch."""
    shape = (batch_size, 1)
    t = T_EPS + (1 - 2 * T_EPS) * th.rand(shape, device=device) ** TIME_POWER
    r = t * th.rand(shape, device=device)
    keep_interval = th.rand(shape, device=device) < mean_flow_fraction
    return th.where(keep_interval, r, t), t


def time_frequencies(t: th.Tensor, n_frequencies: int) -> th.Tensor:
    """The time embedding's angular frequencies ``2^k pi``, k < n_frequencies: (n_frequencies,), t's device and dtype."""
    return math.pi * 2.0 ** th.arange(n_frequencies, device=t.device, dtype=t.dtype)


def time_features(t: th.Tensor, n_frequencies: int) -> th.Tensor:
    """Embed times (batch, 1) as ``[t, sin(2^k pi t), cos(2^k pi t)]``, k < n_frequencies.

    Returns (batch, 1 + 2 n_frequencies).
    """
    angles = t * time_frequencies(t, n_frequencies)
    return th.cat([t, th.sin(angles), th.cos(angles)], dim=-1)


def time_features_rate(t: th.Tensor, n_frequencies: int) -> th.Tensor:
    """The derivative of :func:`time_features` in t at times (batch, 1): ``[1, w cos(w t), -w sin(w t)]`` with
    ``w = 2^k pi``, k < n_frequencies (what ``torch.func.jvp`` of :func:`time_features` with a unit tangent gives).

    Returns (batch, 1 + 2 n_frequencies).
    """
    freqs = time_frequencies(t, n_frequencies)
    angles = t * freqs
    return th.cat([th.ones_like(t), freqs * th.cos(angles), freqs * -th.sin(angles)], dim=-1)
