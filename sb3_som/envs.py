"""Toy tasks for checking that a policy keeps several good options: two bandits and a sequential multi-goal task.

``import sb3_som`` registers them with gymnasium as ``MultiGoalBandit-v0``, ``TwoMoonsBandit-v0`` and
``MultiGoalPointMass-v0`` (:func:`register_envs`), so ``gym.make``, rl-zoo3's ``--env`` (with ``--gym-packages
sb3_som`` where sb3_som is not imported otherwise) and ``gym.make("sb3_som:MultiGoalBandit-v0")`` find them.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces


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


class TwoMoonsBandit(gym.Env):
    """One-step episodes; a 2-D action in [-1, 1]^2 earns ``exp(-d^2 / (2 sigma^2))``, d its distance to two moons.

    The moons are interleaved half circles of radius ``radius``: the upper one centred at
    ``(-radius / 2, -offset)`` spanning angles [0, pi], the lower one at ``(radius / 2, offset)`` spanning
    [pi, 2 pi]. Every point of either arc earns the maximal reward 1, so the optimal stochastic policy
    spreads along both arcs, not onto one point.
    """

    def __init__(self, radius: float = 0.6, offset: float = 0.15, sigma: float = 0.08):
        self.radius, self.sigma = radius, sigma
        self.centers = np.array([[-radius / 2, -offset], [radius / 2, offset]])
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def arc_position(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance of actions (N, 2) to each moon (N, 2) and where along it they project, in [0, 1] (N, 2)."""
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, 2)
        distances, positions = [], []
        for moon, center in enumerate(self.centers):
            offset = actions - center
            start = moon * np.pi  # the upper moon spans [0, pi], the lower one [pi, 2 pi]
            relative = (np.arctan2(offset[:, 1], offset[:, 0]) - start) % (2 * np.pi)
            # off the arc (relative angle in (pi, 2 pi)): the angularly nearer end is the nearer point
            along = np.where(relative <= np.pi, relative, np.where(relative > 1.5 * np.pi, 0.0, np.pi))
            nearest = center + self.radius * np.stack([np.cos(start + along), np.sin(start + along)], axis=1)
            distances.append(np.linalg.norm(actions - nearest, axis=1))
            positions.append(along / np.pi)
        return np.stack(distances, axis=1), np.stack(positions, axis=1)

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """Reward of actions (N, 2), in [0, 1]."""
        distances, _ = self.arc_position(actions)
        return np.exp(-(distances.min(axis=1) ** 2) / (2 * self.sigma**2))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(self.reward(np.clip(action, -1.0, 1.0))[0])
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


class MultiGoalPointMass(gym.Env):
    """Soft Q-learning's multi-goal task: a 2-D point mass whose action is its velocity, four equally good goals.

    As ``MultiGoalEnv`` of Haarnoja et al. (2017), "Reinforcement Learning with Deep Energy-Based Policies"
    (``haarnoja/softqlearning``, ``softqlearning/environments/multigoal.py``), with its default settings: the
    position starts at ``N(0, 0.1^2 I)``; an action ``a`` in ``[-1, 1]^2`` moves it to ``x + a`` (clipped to
    ``[-7, 7]^2``); the reward is ``-30 |a|^2 - min_g |x' - g|^2`` over the goals ``g`` at (5, 0), (-5, 0), (0, 5)
    and (0, -5), plus 10 and the end of the episode when ``x'`` is within 1 of a goal. Episodes are cut at 30 steps
    (the paper's path length), so no return exceeds 10. ``info["goal"]`` is the goal reached (an index into
    :attr:`GOALS`) or -1.
    """

    metadata = {"render_modes": ("rgb_array",), "render_fps": 10}  # noqa: RUF012 (gymnasium's Env declares it so)
    GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=np.float32)
    GOAL_RADIUS = 1.0
    GOAL_REWARD = 10.0
    ACTION_COST = 30.0
    DISTANCE_COST = 1.0
    BOUND = 7.0
    START_STD = 0.1
    MAX_STEPS = 30
    PIXELS = 140  # the rgb_array frame's side: 10 pixels per unit of the arena

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-self.BOUND, self.BOUND, (2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.position = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        start = self.START_STD * self.np_random.standard_normal(2)
        self.position = np.clip(start, -self.BOUND, self.BOUND).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        self.position = np.clip(self.position + action, -self.BOUND, self.BOUND).astype(np.float32)
        distances = np.linalg.norm(self.position - self.GOALS, axis=1)
        reward = -self.ACTION_COST * float(action @ action) - self.DISTANCE_COST * float(distances.min() ** 2)
        reached = bool(distances.min() < self.GOAL_RADIUS)
        if reached:
            reward += self.GOAL_REWARD
        return self.position.copy(), reward, reached, False, {"goal": int(distances.argmin()) if reached else -1}

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: a frame (PIXELS, PIXELS, 3) of the arena, the goals' discs in green and
        the point mass in red (y upwards)."""
        if self.render_mode != "rgb_array":
            return None
        scale = self.PIXELS / (2 * self.BOUND)
        ys, xs = np.mgrid[0 : self.PIXELS, 0 : self.PIXELS]
        world = np.stack([(xs + 0.5) / scale - self.BOUND, self.BOUND - (ys + 0.5) / scale], axis=-1)  # (P, P, 2)
        frame = np.full((self.PIXELS, self.PIXELS, 3), 255, dtype=np.uint8)
        near_goal = (np.linalg.norm(world[:, :, None] - self.GOALS, axis=-1) < self.GOAL_RADIUS).any(-1)
        frame[near_goal] = (60, 170, 60)
        frame[np.linalg.norm(world - self.position, axis=-1) < 0.3] = (200, 30, 30)
        return frame


ENV_IDS = {
    "MultiGoalBandit-v0": MultiGoalBandit,
    "TwoMoonsBandit-v0": TwoMoonsBandit,
    "MultiGoalPointMass-v0": MultiGoalPointMass,
}
# environment steps after which an episode is truncated, where the task has such a limit
MAX_EPISODE_STEPS = {"MultiGoalPointMass-v0": MultiGoalPointMass.MAX_STEPS}


def register_envs() -> None:
    """Register the toy tasks with gymnasium under :data:`ENV_IDS` (again is a no-op)."""
    for env_id, env_class in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id, entry_point=f"{__name__}:{env_class.__name__}", max_episode_steps=MAX_EPISODE_STEPS.get(env_id)
            )
