"""Where SOM's Pendulum-v1 swing-up loses to a reference model's, start by start, and what its critic and actor say there.

For each saved model: the mean deterministic and stochastic return over the ``--episodes`` starts of every run's
final evaluation (``learn.final_evaluation``; the stochastic episodes with torch's seed 0). Then, for each SOM
model, the ``--worst`` starts where it loses most to the reference (the first argument): the start's angle and
angular velocity, both returns, and at the start state for the two extreme torques a = -1 and a = +1 (the normalised
action): the critic's value (min over its Q networks), the discounted return of taking a once and then the model's
deterministic policy (gamma 0.99 over ``HORIZON`` steps, a Monte-Carlo estimate of that policy's Q), and the
share of the actor's samples (1,000 draws) with a < 0.

    python benchmarks/swing_up_starts.py sac/step_20000 som_0/step_20000 som_2/step_20000 \\
        > benchmarks/results/swing_up_starts_pendulum.md

Each argument is a checkpoint directory of ``benchmarks/learn.py run`` (``model.zip``).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from learn import FINAL_EVAL_SEED, final_evaluation, load_checkpoint
from sb3_som import SOM
from sb3_som.critic_values import q_at_states

ENV_ID = "Pendulum-v1"
GAMMA = 0.99
# steps of a Monte-Carlo return: GAMMA ** HORIZON is below 0.002, far beyond the episode's 200
HORIZON = 600
EXTREME_ACTIONS = (-1.0, 1.0)
ACTOR_DRAWS = 1000


def start_state(episode: int) -> tuple[np.ndarray, np.ndarray]:
    """The observation and the (angle, angular velocity) of the final evaluation's start ``episode``."""
    env = gym.make(ENV_ID)
    observation, _ = env.reset(seed=FINAL_EVAL_SEED + episode)
    return observation, np.array(env.unwrapped.state)


def monte_carlo_q(model: OffPolicyAlgorithm, episode: int, action: float) -> float:
    """Discounted return of the normalised ``action`` at the start ``episode``, then the deterministic policy."""
    env = gym.make(ENV_ID).unwrapped
    env.reset(seed=FINAL_EVAL_SEED + episode)
    observation, reward, *_ = env.step(np.array([action * env.max_torque], dtype=np.float32))
    value, discount = float(reward), 1.0
    for _ in range(HORIZON):
        torque, _ = model.predict(observation, deterministic=True)
        observation, reward, *_ = env.step(torque)
        discount *= GAMMA
        value += discount * float(reward)
    return value


def critic_q(model: SOM, observation: np.ndarray) -> list[float]:
    """The critic's values (min over its Q networks) of the ``EXTREME_ACTIONS`` at ``observation``."""
    observations = th.as_tensor(observation[None], dtype=th.float32, device=model.device)
    actions = th.tensor(EXTREME_ACTIONS, device=model.device).view(1, -1, 1)  # (1, 2, 1)
    with th.no_grad():
        features = model.critic.extract_features(observations, model.critic.features_extractor)
        return q_at_states(model.critic, features, actions, "min")[0].tolist()


def share_below_zero(model: SOM, observation: np.ndarray) -> float:
    """The share of the actor's samples at ``observation`` with a < 0."""
    observations = th.as_tensor(observation[None], dtype=th.float32, device=model.device).repeat(ACTOR_DRAWS, 1)
    with th.no_grad():
        return float((model.actor(observations) < 0).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="the reference first, then SOM checkpoint directories")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--worst", type=int, default=5)
    args = parser.parse_args()
    th.set_num_threads(1)
    models = [load_checkpoint(path, "cpu")[0] for path in args.checkpoints]
    returns = {}
    print(f"## Returns over the final evaluation's {args.episodes} starts\n")
    print("| model | deterministic | stochastic |\n|---|---|---|")
    for path, model in zip(args.checkpoints, models, strict=True):
        returns[path] = np.array(final_evaluation(model, ENV_ID, args.episodes))
        th.manual_seed(0)
        stochastic = final_evaluation(model, ENV_ID, args.episodes, deterministic=False)
        print(f"| {path} | {returns[path].mean():.1f} | {np.mean(stochastic):.1f} |")
    reference = args.checkpoints[0]
    for path, model in zip(args.checkpoints[1:], models[1:], strict=True):
        if not isinstance(model, SOM):
            continue
        losses = returns[path] - returns[reference]
        print(f"\n## {path}: the {args.worst} starts where it loses most to {reference}\n")
        print(
            "| start | angle | angular velocity | reference | SOM | critic Q(-1) | critic Q(+1) | Monte-Carlo Q(-1) "
            "| Monte-Carlo Q(+1) | actor's share a < 0 |\n|---|---|---|---|---|---|---|---|---|---|"
        )
        for episode in np.argsort(losses)[: args.worst]:
            observation, (angle, velocity) = start_state(int(episode))
            critic = critic_q(model, observation)
            monte_carlo = [monte_carlo_q(model, int(episode), action) for action in EXTREME_ACTIONS]
            print(
                f"| {episode} | {angle:+.2f} | {velocity:+.2f} | {returns[reference][episode]:.1f} "
                f"| {returns[path][episode]:.1f} | {critic[0]:.1f} | {critic[1]:.1f} | {monte_carlo[0]:.1f} "
                f"| {monte_carlo[1]:.1f} | {share_below_zero(model, observation):.2f} |"
            )
        print(f"\nMean loss to the reference: {losses.mean():.2f}; starts losing more than 10: {(losses < -10).sum()}")


if __name__ == "__main__":
    main()
