"""A multimodal bandit for checking that a policy covers several action modes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sb3_som.targets import GaussianMixtureTarget


def multi_goal_mixture(n_goals: int = 6, radius: float = 0.6, sigma: float = 0.1) -> GaussianMixtureTarget:
    """Gaussian bumps on a circle with alternating weights 2 and 1 (the multi-goal bandit's landscape)."""
    angles = th.arange(n_goals, dtype=th.float32) * 2 * math.pi / n_goals
    centers = radius * th.stack([th.cos(angles), th.sin(angles)], dim=1)
    weights = th.tensor([2.0 if i % 2 == 0 else 1.0 for i in range(n_goals)])
    return GaussianMixtureTarget(centers, weights, sigma)


class MultiGoalBandit(gym.Env):
    """One-step episodes; a 2-D action in [-1, 1]^2 earns the mixture density normalised to [0, 1].

    The reward has ``n_goals`` bumps, the even ones twice as heavy as the odd ones. The observation
    is a constant, so the optimal stochastic policy is a distribution over actions alone.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, n_goals: int = 6, radius: float = 0.6, sigma: float = 0.1):
        self.mixture = multi_goal_mixture(n_goals, radius, sigma)
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._max_log_density = self.mixture.log_density(self.mixture.centers).max().item()

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """Normalised mixture density of actions (..., 2), in [0, 1]."""
        log_density = self.mixture.log_density(th.as_tensor(actions, dtype=th.float32))
        return np.exp(log_density.numpy() - self._max_log_density).clip(0.0, 1.0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(self.reward(np.clip(action, -1.0, 1.0)))
        return np.zeros(1, dtype=np.float32), reward, True, False, {}
