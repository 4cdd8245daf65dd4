"""The Q scale's floors where the reward ignores the action: does the target turn greedy on the critic's noise?

SOM (package defaults, twin critics) on the tests' four-state cycle whose reward is 1 whatever the action
(``tests/test_som.py``'s ``ConstantRewardCycle``, episodes of 8 steps, gamma 0.98), with each ``q_scale_floor``;
every 600 steps it prints the last update's ``train/`` logs of Q's spread across actions, the Q networks'
disagreement about it, the square root of the critic loss (about the RMS TD error) and the Q scale, and the
one-step policy's standard deviation per action coordinate over 500 samples at each state (a uniform
coordinate on [-1, 1]: 0.577; a target greedy on noise: near 0).

    python benchmarks/floor_without_action_signal.py > benchmarks/results/floor_without_action_signal.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_som import ConstantRewardCycle

from sb3_som import SOM

CHUNK, CHUNKS, SEEDS = 600, 5, (0, 1)


def main() -> None:
    th.set_num_threads(1)
    print("| q_scale_floor | seed | steps | Q spread | disagreement | sqrt(critic loss) | Q scale | policy std |")
    print("|---|---|---|---|---|---|---|---|")
    for floor in ("critic_disagreement", "td_error"):
        for seed in SEEDS:
            env = gym.wrappers.TimeLimit(ConstantRewardCycle(), max_episode_steps=8)
            model = SOM("MlpPolicy", env, gamma=0.98, learning_starts=100, q_scale_floor=floor, seed=seed, device="cpu")
            states = th.arange(4).repeat_interleave(500)
            for _ in range(CHUNKS):
                model.learn(CHUNK, reset_num_timesteps=False)
                logged = model.logger.name_to_value
                with th.no_grad():
                    policy_std = model.actor(states).std(dim=0).mean().item()
                print(
                    f"| {floor} | {seed} | {model.num_timesteps} | {logged['train/q_spread']:.4f} "
                    f"| {logged['train/q_disagreement']:.4f} | {logged['train/critic_loss'] ** 0.5:.4f} "
                    f"| {logged['train/q_scale']:.4f} | {policy_std:.3f} |"
                )


if __name__ == "__main__":
    main()
