"""Where a Pendulum-v1 policy loses return, and how far SOM's actor is from its target where Q is steep in the action.

1. For each saved model (SOM or SAC), ``--episodes`` deterministic episodes from the same starts as every run's final
   evaluation (``learn.final_evaluation``), split into balancing steps (|angle| < 0.3 and |angular velocity| < 1)
   and the rest (the swing-up): the return of each part, the swing-up's length, and, while balancing, the mean
   angle and torque (a constant torque holds the pendulum off the top at a cost every step).
2. For each SOM model, ``--states`` states of its replay buffer, split by how much the target critic's Q varies
   across a grid of actions (the top fifth, "steep", where the swing-up's torque is decided, and the rest): the
   target policy ``exp(alpha Q / q_scale)`` on the grid (``q_scale`` as the run's updates measure it, averaged over
   8 batches of the buffer), the one-step policy and the actor's 32-step sampler (256 draws per state), each as the
   distance of its mean action from the critic's argmax, its spread (standard deviation) and its gap
   ``max_a Q - E[Q]``.
3. With ``--actor-updates N``, for each SOM model: N more actor updates on the frozen critic (the run's own loss,
   batch size and optimizer; ``--fresh-actor``: from newly initialised actor weights and optimizer), with the
   one-step policy's gap on the steep and the other states every 1,000 updates (the mean of four readings 250
   updates apart); ``--set KEY=VALUE`` changes SOM settings for these updates (``distillation_steps=0``) and
   ``--actor-lr`` the actor optimizer's learning rate.

    python benchmarks/steep_states.py som/step_20000 sac/step_20000 > benchmarks/results/steep_states_pendulum.md

Each argument is a checkpoint directory of ``benchmarks/learn.py run`` (``model.zip``, ``replay_buffer.pkl``).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from greedy_actions import GRID, grid_q
from learn import FINAL_EVAL_SEED, load_checkpoint, parse_override
from sb3_som import SOM
from target_breadth import training_q_scale

ENV_ID = "Pendulum-v1"
BALANCED_ANGLE, BALANCED_VELOCITY = 0.3, 1.0
STEEP_QUANTILE = 0.8
DRAWS = 256


def phases(model: OffPolicyAlgorithm, episodes: int) -> list[float]:
    """Return while balancing, return of the rest, swing-up steps, mean angle and torque while balancing."""
    env = gym.make(ENV_ID)
    balanced_return = swing_return = swing_steps = 0.0
    angles, torques = [], []
    for episode in range(episodes):
        observation, _ = env.reset(seed=FINAL_EVAL_SEED + episode)
        done = False
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            angle = float(np.arctan2(observation[1], observation[0]))
            balanced = abs(angle) < BALANCED_ANGLE and abs(observation[2]) < BALANCED_VELOCITY
            observation, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            if balanced:
                balanced_return += float(reward)
                angles.append(angle)
                torques.append(float(action[0]))
            else:
                swing_return += float(reward)
                swing_steps += 1
    return [balanced_return / episodes, swing_return / episodes, swing_steps / episodes, np.mean(angles), np.mean(torques)]


def summary(actions: th.Tensor, weights: th.Tensor, q_on_actions: th.Tensor, q: th.Tensor) -> list[float]:
    """Distance of the mean from the argmax, spread and gap max Q - E[Q] of weighted actions (S, N), averaged over
    the states; q (S, G) is the critic on the grid."""
    mean = (weights * actions).sum(dim=1)
    spread = ((weights * (actions - mean.unsqueeze(1)) ** 2).sum(dim=1)).sqrt()
    gap = q.max(dim=1).values - (weights * q_on_actions).sum(dim=1)
    return [(mean - GRID[q.argmax(dim=1)]).abs().mean().item(), spread.mean().item(), gap.mean().item()]


def buffer_states(model: SOM, n_states: int) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """Observations (S, o) drawn from the buffer, the target critic on the grid (S, G), its range across the grid
    (S,) and the steep states (S,)."""
    buffer = model.replay_buffer
    assert buffer is not None
    size = buffer.buffer_size if buffer.full else buffer.pos
    rows = np.random.default_rng(0).integers(0, size, n_states)
    observations = th.as_tensor(buffer.observations[rows, 0], dtype=th.float32)
    q = grid_q(model, observations)
    q_range = q.max(dim=1).values - q.min(dim=1).values
    return observations, q, q_range, q_range > th.quantile(q_range, STEEP_QUANTILE)


def one_step_gap(model: SOM, observations: th.Tensor, q: th.Tensor) -> th.Tensor:
    """The one-step policy's ``max_a Q - E[Q]`` per state (S,), over DRAWS draws."""
    repeated = observations.repeat_interleave(DRAWS, dim=0)
    with th.no_grad():
        q_actions = model.critic_target(repeated, model.actor(repeated))[0].view(len(observations), DRAWS)
    return q.max(dim=1).values - q_actions.mean(dim=1)


def actor_against_target(model: SOM, n_states: int) -> tuple[list[tuple[str, str, list[float]]], float]:
    """Rows (states, policy, [distance from the argmax, spread, gap]) for steep and other buffer states, and the
    Q scale."""
    observations, q, q_range, steep = buffer_states(model, n_states)
    q_scale = training_q_scale(model)[3]
    target_weights = th.softmax(model.target_alpha * q / q_scale, dim=1)
    policies = {"target": (GRID.expand_as(q), target_weights, q)}
    repeated = observations.repeat_interleave(DRAWS, dim=0)
    for name, steps in (("one-step policy", 1), ("32-step sampler", 32)):
        model.actor.sampling_steps = steps
        with th.no_grad():
            actions = model.actor(repeated)
            q_actions = model.critic_target(repeated, actions)[0]
        uniform = th.full((n_states, DRAWS), 1.0 / DRAWS)
        policies[name] = (actions.view(n_states, DRAWS), uniform, q_actions.view(n_states, DRAWS))
    model.actor.sampling_steps = 1
    out = []
    for label, group in ((f"steep (top fifth, Q range {q_range[steep].median():.0f})", steep),
                         (f"other (Q range {q_range[~steep].median():.1f})", ~steep)):  # fmt: skip
        for name, (actions, weights, q_actions) in policies.items():
            out.append((label, name, summary(actions[group], weights[group], q_actions[group], q[group])))
    return out, q_scale


def train_actor(
    model: SOM, n_states: int, updates: int, fresh: bool, actor_lr: float | None
) -> list[tuple[int, float, float]]:
    """(updates, steep states' gap, other states' gap) every 1,000 actor updates on the frozen critic."""
    observations, q, _, steep = buffer_states(model, n_states)
    if fresh:
        model.actor.load_state_dict(model.policy.make_actor().state_dict())
        optimizer = model.actor.optimizer
        model.actor.optimizer = type(optimizer)(model.actor.parameters(), **optimizer.defaults)
    if actor_lr is not None:
        for group in model.actor.optimizer.param_groups:
            group["lr"] = actor_lr
    model.policy.set_training_mode(True)
    readings, rows = [], []
    for update in range(1, updates + 1):
        batch = model.replay_buffer.sample(model.batch_size)  # type: ignore[union-attr]
        with th.no_grad():
            _, td_error_rms, _ = model._critic_loss(batch)
        loss, _ = model._actor_loss(batch, td_error_rms)
        model.actor.optimizer.zero_grad()
        loss.backward()
        model.actor.optimizer.step()
        if update % 250 == 0:
            gap = one_step_gap(model, observations, q)
            readings.append((gap[steep].mean().item(), gap[~steep].mean().item()))
        if update % 1000 == 0:
            steep_gap, other_gap = np.mean(readings[-4:], axis=0)
            rows.append((update, float(steep_gap), float(other_gap)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--states", type=int, default=2000, help="0: the first table only")
    parser.add_argument("--actor-updates", type=int, default=0)
    parser.add_argument("--fresh-actor", action="store_true")
    parser.add_argument("--actor-lr", type=float, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="SOM settings for the actor updates")
    args = parser.parse_args()
    settings = dict(parse_override(parser, item) for item in args.set)
    th.set_num_threads(1)
    th.manual_seed(0)
    models = {directory: load_checkpoint(directory, "cpu")[0] for directory in args.checkpoints}
    print(f"# Where the deterministic policy loses return on {ENV_ID}, {args.episodes} episodes from the final "
          "evaluation's starts\n")  # fmt: skip
    print("| checkpoint | algorithm | return balancing | return swinging up | swing-up steps | angle balancing "
          "| torque balancing |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for directory, model in models.items():
        values = phases(model, args.episodes)
        cells = [f"{values[0]:.1f}", f"{values[1]:.1f}", f"{values[2]:.1f}", f"{values[3]:.3f}", f"{values[4]:.2f}"]
        print(f"| {directory} | {type(model).__name__} | " + " | ".join(cells) + " |", flush=True)
    for directory, model in models.items():
        if not isinstance(model, SOM) or args.states == 0:
            continue
        rows, q_scale = actor_against_target(model, args.states)
        print(f"\n## {directory}: actor against its target (alpha {model.target_alpha:g}, q_scale {q_scale:.2f}, "
              f"{args.states} buffer states)\n")  # fmt: skip
        print("| states | policy | mean action's distance from the argmax | spread | max Q - E[Q] |\n|---|---|---|---|---|")
        for label, name, (distance, spread, gap) in rows:
            print(f"| {label} | {name} | {distance:.3f} | {spread:.3f} | {gap:.2f} |", flush=True)
        if args.actor_updates:
            start = "newly initialised actor" if args.fresh_actor else "the run's actor"
            for key, value in settings.items():
                setattr(model, key, value)
            changes = ", ".join([f"{key}={value!r}" for key, value in settings.items()] +
                                ([f"actor learning rate {args.actor_lr:g}"] if args.actor_lr else []))  # fmt: skip
            print(f"\n{args.actor_updates} actor updates on the frozen critic from {start}"
                  f"{' with ' + changes if changes else ''}, one-step policy's max Q - E[Q]:\n\n"
                  "| updates | steep states | other states |\n|---|---|---|")  # fmt: skip
            rows = train_actor(model, args.states, args.actor_updates, args.fresh_actor, args.actor_lr)
            for update, steep_gap, other_gap in rows:
                print(f"| {update} | {steep_gap:.2f} | {other_gap:.2f} |", flush=True)


if __name__ == "__main__":
    main()
