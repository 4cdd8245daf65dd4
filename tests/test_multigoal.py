"""The sequential multi-goal task MultiGoalPointMass-v0: soft Q-learning's dynamics, costs and goals."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback

from sb3_som import SOM
from sb3_som.envs import MultiGoalPointMass


@pytest.mark.parametrize("make_id", ["MultiGoalPointMass-v0", "sb3_som:MultiGoalPointMass-v0"])
def test_the_task_is_registered_with_its_thirty_step_limit(make_id):
    env = gym.make(make_id)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation) and np.abs(observation).max() < 0.5  # starts near the origin
    truncations = []
    for _ in range(30):
        _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))  # staying put reaches no goal
        assert not terminated and info["goal"] == -1
        truncations.append(truncated)
    assert truncations == [False] * 29 + [True]


@pytest.mark.parametrize("goal", range(4))
def test_moving_straight_to_a_goal_ends_the_episode_there_with_its_reward(goal):
    env = gym.make("MultiGoalPointMass-v0")
    position, _ = env.reset(seed=1)
    direction = MultiGoalPointMass.GOALS[goal] / 5.0
    total = 0.0
    for _ in range(10):
        action = np.clip(direction * 1.5, -1, 1).astype(np.float32)  # clipped to the velocity bound of 1
        next_position, reward, terminated, truncated, info = env.step(action)
        distance = np.linalg.norm(next_position - MultiGoalPointMass.GOALS, axis=1).min()
        expected = -30.0 * float(np.clip(action, -1, 1) @ np.clip(action, -1, 1)) - distance**2 + 10.0 * terminated
        assert reward == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(next_position, np.clip(position + np.clip(action, -1, 1), -7, 7), rtol=1e-6)
        position, total = next_position, total + reward
        if terminated:
            break
    assert terminated and not truncated and info["goal"] == goal and distance < 1.0
    assert total < 10.0  # no return exceeds the goal reward


def test_an_rgb_frame_shows_the_goals_and_the_point_mass():
    env = gym.make("MultiGoalPointMass-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    side = MultiGoalPointMass.PIXELS
    assert frame.shape == (side, side, 3) and frame.dtype == np.uint8
    assert tuple(frame[side // 2, side // 2]) == (200, 30, 30)  # the point starts at the centre
    goal_pixel = (side // 2, side // 2 + int(5.0 * side / 14))  # the goal at (5, 0)
    assert tuple(frame[goal_pixel]) == (60, 170, 60)
    assert tuple(frame[0, 0]) == (255, 255, 255)


def test_a_short_som_run_reaches_a_goal_and_its_critic_stays_within_the_return_bound():
    """3,000 steps of a small SOM, learning from step 100: every stochastic episode reaches a goal, and the critic's
    mean Q never exceeds the largest return the task has (the goal reward, 10: every other reward is a cost)."""
    model = SOM(
        "MlpPolicy",
        "MultiGoalPointMass-v0",
        learning_starts=100,
        learning_rate=1e-3,
        batch_size=64,
        n_score_samples=8,
        distillation_steps=2,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    q_means = []

    class RecordQ(BaseCallback):
        def _on_step(self) -> bool:
            q_means.append(self.model.logger.name_to_value.get("train/q_mean", -np.inf))
            return True

    model.learn(3000, callback=RecordQ())
    env = gym.make("MultiGoalPointMass-v0")
    goals = []
    for episode in range(20):
        observation, _ = env.reset(seed=episode)
        done = False
        while not done:
            action, _ = model.predict(observation, deterministic=False)
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        goals.append(info["goal"])
    assert min(goals) >= 0, goals  # a goal in every episode
    assert max(q_means) <= MultiGoalPointMass.GOAL_REWARD
    assert len(set(q_means)) > 100  # the critic logged throughout the run
