"""What sets SOM's Q scale over training, with and without reward noise.

Trains SOM (its ``som.yml`` Pendulum-v1 entry, which is the package defaults) on Pendulum-v1 whose reward
carries Gaussian noise of standard deviation ``--reward-noise`` (0: the plain task), and records, every
``--every`` steps, the mean over the updates since the last record of

- ``spread``: the first critic's standard deviation of Q across 16 uniform actions, averaged over 32 states
  (what ``q_normalization="state"`` divides by);
- ``td_rms``: the first critic's RMS TD error on the batch (the Q scale's floor);
- ``q_scale``: the Q scale used, ``max(spread, floor)`` (``--floor`` below);
- ``disagreement``: the RMS over the same states and actions (another draw of 16 per state) of
  ``(Q1 - Q2) / sqrt(2)``, the twin critics' disagreement;
- ``difference_disagreement``: the twin critics' disagreement about differences between actions, as
  ``train/q_disagreement`` logs it (the root mean square over the same states and actions of the two critics'
  action profiles' difference over sqrt(2), each profile Q minus its mean over the state's actions),

and the deterministic evaluation return on the noise-free task (10 episodes), both with the one-step action
``e = 0`` (``mean_return``) and with Best-of-8 by the critic (``mean_return_best_of``). ``--floor`` replaces the Q
scale's floor for the run: ``td`` (``td_rms``, the package's), ``none`` (the spread alone), ``disagreement``
(``difference_disagreement``) or ``alpha-disagreement`` (``alpha * difference_disagreement``: the target
weighs two actions by at most ``exp(difference / disagreement)``).

    python benchmarks/q_scale_diagnosis.py --reward-noise 2.0 --seed 0 --timesteps 10000 --out diag.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import sb3_som.som as som_module
from sb3_som import SOM
from sb3_som.critic_values import Q_SPREAD_ACTIONS, Q_SPREAD_STATES

# candidates of the second deterministic evaluation (Best-of-N by the critic)
BEST_OF = 8


class RewardNoise(gym.Wrapper):
    """Adds N(0, sigma^2) to every reward."""

    def __init__(self, env: gym.Env, sigma: float, seed: int):
        super().__init__(env)
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, float(reward) + self.sigma * self.rng.standard_normal(), terminated, truncated, info


def instrument(model: SOM, sums: dict[str, float], floor: str) -> None:
    """Wrap SOM's Q-profile measure and Q scale rule (``sb3_som.som.action_profile``, ``sb3_som.som.floored_q_scale``)
    so that each update adds its components to ``sums`` and uses ``floor``; the model runs with
    ``q_scale_floor="td_error"``, so the rule receives the RMS TD error."""
    disagreements: dict[str, th.Tensor] = {}
    package_profile = som_module.action_profile

    def recorded_profile(critic, critic_features: th.Tensor, which: str) -> tuple[th.Tensor, th.Tensor]:
        features = critic_features[:Q_SPREAD_STATES]
        actions = 2 * th.rand(features.shape[0], Q_SPREAD_ACTIONS, model.actor.action_dim) - 1
        features = features.unsqueeze(1).expand(-1, Q_SPREAD_ACTIONS, -1)
        q1, q2 = (q_net(th.cat([features, actions], -1).flatten(0, 1)).view(actions.shape[:2]) for q_net in critic.q_networks)
        disagreements["overall"] = ((q1 - q2) / math.sqrt(2)).pow(2).mean().sqrt().detach()
        spread, disagreements["difference"] = package_profile(critic, critic_features, which)
        return spread, disagreements["difference"]

    def recorded_scale(spread: th.Tensor, td_error_rms: th.Tensor) -> th.Tensor:
        if floor == "td":
            value = th.maximum(spread, td_error_rms)
        elif floor == "none":
            value = spread
        else:
            factor = model.target_alpha if floor == "alpha-disagreement" else 1.0
            value = th.maximum(spread, factor * disagreements["difference"])
        for key, number in (
            ("spread", spread),
            ("td_rms", td_error_rms),
            ("q_scale", value),
            ("disagreement", disagreements["overall"]),
            ("difference_disagreement", disagreements["difference"]),
        ):
            sums[key] += float(number)
        sums["updates"] += 1
        return value

    som_module.action_profile = recorded_profile
    som_module.floored_q_scale = recorded_scale


class Record(BaseCallback):
    def __init__(self, sums: dict[str, float], every: int, out: str, record: dict):
        super().__init__()
        self.sums, self.every, self.out, self.record = sums, every, out, record
        self.eval_env = Monitor(gym.make("Pendulum-v1"))
        self.eval_env.reset(seed=10_000 + record["seed"])

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0 and self.sums["updates"] > 0:
            returns, _ = evaluate_policy(self.model, self.eval_env, 10, return_episode_rewards=True)
            self.model.n_action_candidates = BEST_OF
            best_of_returns, _ = evaluate_policy(self.model, self.eval_env, 10, return_episode_rewards=True)
            self.model.n_action_candidates = 1
            means = {key: value / self.sums["updates"] for key, value in self.sums.items() if key != "updates"}
            row = dict(
                self.record,
                timesteps=self.num_timesteps,
                mean_return=float(np.mean(returns)),
                mean_return_best_of=float(np.mean(best_of_returns)),
                **means,
            )
            with open(self.out, "a") as file:
                file.write(json.dumps(row) + "\n")
            self.sums.clear()
            self.sums["updates"] = 0
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward-noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--floor", choices=["td", "none", "disagreement", "alpha-disagreement"], default="td")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    th.set_num_threads(1)
    env = RewardNoise(gym.make("Pendulum-v1"), args.reward_noise, args.seed)
    model = SOM("MlpMeanFlowPolicy", env, seed=args.seed, q_scale_floor="td_error")
    sums: dict[str, float] = defaultdict(float)
    instrument(model, sums, args.floor)
    record = dict(env="Pendulum-v1", reward_noise=args.reward_noise, seed=args.seed, floor=args.floor)
    model.learn(args.timesteps, callback=Record(sums, args.every, args.out, record))


if __name__ == "__main__":
    main()
