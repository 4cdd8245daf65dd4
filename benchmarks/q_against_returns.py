"""The critic's values against the real discounted returns of the policy it values, for saved SOM and SAC models.

For each saved model, runs ``--episodes`` episodes of its stochastic policy (the policy whose value the TD targets
estimate; reset seeds ``learn.FINAL_EVAL_SEED + i``) and, at every visited state, compares the critic's value of
the action taken, ``Q(s_t, a_t)`` (the minimum over the Q networks, as the TD target takes it, and the first
network), with the discounted return that followed, ``G_t = sum_k gamma^k r_{t+k}`` (the model's own gamma). SAC's
critic targets the soft return, whose later steps also earn its entropy bonus, ``G_t - sum_{k >= 1} gamma^k
ent_coef log pi(a_{t+k} | s_{t+k})``; its Q is compared with that (SOM's TD target has no entropy term). A state
whose episode was truncated counts only if at least ``--horizon`` steps followed it, so that the missing tail weighs
at most ``gamma^horizon``. Writes one table row per model: episode length and return, mean ``G_t``, the mean
return the critic targets, mean ``Q``, the ratio of the two, and the correlation of ``Q`` with it over the states.

A ``benchmarks/learn.py`` checkpoint directory holds only its run's latest checkpoint; to follow a run over time,
copy each ``model.zip`` as it appears.

    python benchmarks/q_against_returns.py --env Humanoid-v5 \
        --som runs/ckpt/som_Humanoid-v5_0/step_100000/model.zip --sac runs/ckpt/sac_Humanoid-v5_0/step_100000/model.zip \
        --md benchmarks/results/q_against_returns_humanoid.md
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from learn import FINAL_EVAL_SEED
from sb3_som import SOM


class Episode(NamedTuple):
    """One episode of a model's stochastic policy."""

    observations: np.ndarray  # (T, o)
    actions: np.ndarray  # (T, d), in the box
    rewards: np.ndarray  # (T,)
    entropy_bonus: np.ndarray  # (T,) -ent_coef log pi(a_t | s_t) for SAC, zeros for SOM
    terminated: bool  # ended by termination, not truncation


def box_action_and_bonus(model: BaseAlgorithm, observation: np.ndarray) -> tuple[np.ndarray, float]:
    """A stochastic action in the box (d,) and the entropy bonus SAC's TD target adds for it (0 for SOM)."""
    if not isinstance(model, SAC):
        action, _ = model.predict(observation, deterministic=False)
        return model.policy.scale_action(action), 0.0
    observation_tensor, _ = model.policy.obs_to_tensor(observation)
    with th.no_grad():
        action, log_prob = model.actor.action_log_prob(observation_tensor)
        ent_coef = model.log_ent_coef.exp() if model.log_ent_coef is not None else model.ent_coef_tensor
    return action[0].cpu().numpy(), -float(ent_coef * log_prob)


def episode(model: BaseAlgorithm, env: gym.Env, seed: int) -> Episode:
    """One episode of the model's stochastic policy, reset with ``seed``."""
    observation, _ = env.reset(seed=seed)
    observations, actions, rewards, bonuses = [], [], [], []
    while True:
        box_action, bonus = box_action_and_bonus(model, observation)
        observations.append(observation)
        actions.append(box_action)
        bonuses.append(bonus)
        observation, reward, terminated, truncated, _ = env.step(model.policy.unscale_action(box_action))
        rewards.append(float(reward))
        if terminated or truncated:
            arrays = (np.stack(observations), np.stack(actions), np.array(rewards), np.array(bonuses))
            return Episode(*arrays, bool(terminated))


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + gamma G_{t+1}`` for each step of one episode: (T,)."""
    returns = np.empty_like(rewards)
    running = 0.0
    for step in range(len(rewards) - 1, -1, -1):
        running = rewards[step] + gamma * running
        returns[step] = running
    return returns


def critic_values(model: BaseAlgorithm, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Each Q network's value of the (state, box action) pairs: (networks, T)."""
    observation_tensor, _ = model.policy.obs_to_tensor(observations)
    action_tensor = th.as_tensor(actions, dtype=th.float32, device=model.device)
    with th.no_grad():
        values = model.policy.critic(observation_tensor, action_tensor)
    return th.cat(values, dim=1).T.cpu().numpy()


def measure(model: BaseAlgorithm, env_id: str, episodes: int, horizon: int) -> dict[str, float]:
    """The row of one model (see the module's docstring)."""
    env = gym.make(env_id)
    lengths, totals, returns, targeted, q_min, q_first = [], [], [], [], [], []
    for index in range(episodes):
        run = episode(model, env, FINAL_EVAL_SEED + index)
        lengths.append(len(run.rewards))
        totals.append(run.rewards.sum())
        kept = len(run.rewards) if run.terminated else max(0, len(run.rewards) - horizon)
        if kept == 0:
            continue
        values = critic_values(model, run.observations[:kept], run.actions[:kept])
        returns.append(discounted_returns(run.rewards, model.gamma)[:kept])
        # the bonus counts from the next step on: the critic's Q(s_t, a_t) is given a_t
        soft = discounted_returns(run.rewards + run.entropy_bonus, model.gamma) - run.entropy_bonus
        targeted.append(soft[:kept])
        q_min.append(values.min(axis=0))
        q_first.append(values[0])
    all_targeted, all_q_min = np.concatenate(targeted), np.concatenate(q_min)
    return {
        "length": float(np.mean(lengths)),
        "return": float(np.mean(totals)),
        "states": float(len(all_targeted)),
        "G": float(np.concatenate(returns).mean()),
        "targeted": float(all_targeted.mean()),
        "Q (min)": float(all_q_min.mean()),
        "Q (first)": float(np.concatenate(q_first).mean()),
        "ratio": float(all_q_min.mean() / all_targeted.mean()),
        "correlation": float(np.corrcoef(all_q_min, all_targeted)[0, 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", required=True)
    parser.add_argument("--som", nargs="*", default=[], help="saved SOM models (.zip)")
    parser.add_argument("--sac", nargs="*", default=[], help="saved SAC models (.zip)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=300, help="steps a truncated episode's state needs after it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--md", required=True)
    args = parser.parse_args()
    th.set_num_threads(1)

    lines = [
        f"# The critic against the real discounted returns: {args.env}",
        "",
        f"{args.episodes} episodes of each model's stochastic policy (reset seeds {FINAL_EVAL_SEED} on), every state of "
        f"a terminated episode and those of a truncated one with at least {args.horizon} steps after them. G: the "
        "discounted return that followed (the model's gamma); targeted: what the critic's TD target estimates (SOM: "
        "G; SAC: G with its entropy bonus from the next step on); Q: the critic's value of the action taken (the "
        "minimum over the Q networks; first: the first network); ratio: Q (min) / targeted; correlation: of Q (min) "
        "with targeted over the states.",
        "",
        "| model | episode length | return | states | G | targeted | Q (min) | Q (first) | ratio | correlation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algorithm, paths in ((SOM, args.som), (SAC, args.sac)):
        for path in paths:
            model = algorithm.load(path, device="cpu")
            model.set_random_seed(args.seed)
            row = measure(model, args.env, args.episodes, args.horizon)
            lines.append(
                f"| {algorithm.__name__} `{path}` | {row['length']:.0f} | {row['return']:.0f} | {row['states']:.0f} | "
                f"{row['G']:.1f} | {row['targeted']:.1f} | {row['Q (min)']:.1f} | {row['Q (first)']:.1f} | "
                f"{row['ratio']:.2f} | {row['correlation']:.2f} |"
            )
            print(lines[-1], flush=True)
    with open(args.md, "w") as file:
        file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
