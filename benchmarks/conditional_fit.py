"""How closely SOM's actor fits its target at a state, against the number of states it fits at once.

From a SOM checkpoint of ``learn.py`` (Box observations), the critic is held as it is and the actor takes
``--updates`` updates of its own loss (``SOM._actor_loss``, its optimizer and learning rate), each on the states of a
pool: the latest ``N`` states of the replay buffer for each ``--pools N``, or ``all``, the replay batches themselves
(what training does). At the latest 32 states, which every pool holds, the policy's spread per action coordinate
(``learn.policy_diagnostics``) is compared with its target's (``learn.target_spread`` at the Q scale the pool's
updates measure, ``learn.training_q_scale``): one JSON line per pool.

    python benchmarks/conditional_fit.py runs/checkpoints/som_Humanoid-v5_0/step_100000 --pools 32 1024 all \\
        --out benchmarks/results/conditional_fit_cpu.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn import (
    DIAGNOSTIC_STATES,
    Q_SCALE_BATCHES,
    latest_observations,
    load_checkpoint,
    policy_diagnostics,
    target_spread,
    training_q_scale,
)
from sb3_som import SOM

# where the actor's spread is read during the updates
REPORT_EVERY = 1000


def pool_argument(text: str) -> str:
    """A ``--pools`` entry: "all", or a size of at least ``DIAGNOSTIC_STATES`` (the pool holds the states the spreads
    are read at)."""
    if text != "all" and not (text.isdigit() and int(text) >= DIAGNOSTIC_STATES):
        raise argparse.ArgumentTypeError(f"a pool is all or a size of at least {DIAGNOSTIC_STATES}, got {text!r}")
    return text


def pool_sampler(model: SOM, pool: str) -> Callable[[ReplayBufferSamples], th.Tensor] | None:
    """What the actor's updates take as a replay batch's observations for ``pool``: a uniform draw of a batch from
    the latest ``pool`` states of the replay buffer (None for "all": the batch's own)."""
    if pool == "all":
        return None
    states = th.as_tensor(latest_observations(model, int(pool)), dtype=th.float32, device=model.device)

    def draw(replay: ReplayBufferSamples) -> th.Tensor:
        return states[th.randint(len(states), (len(replay.rewards),), device=states.device)]

    return draw


def fit(model: SOM, states: Callable[[ReplayBufferSamples], th.Tensor] | None, updates: int) -> list[dict[str, float]]:
    """``updates`` actor updates on replay batches whose observations ``states`` draws (None: their own); the policy's
    spread and the weights' effective sample size every ``REPORT_EVERY`` updates."""
    curve = []
    for update in range(1, updates + 1):
        replay = model.replay_buffer.sample(model.batch_size)  # type: ignore[union-attr]
        if states is not None:
            replay = replay._replace(observations=states(replay))
        with th.no_grad():
            _, td_error_rms, _ = model._critic_loss(replay)
        loss, logs = model._actor_loss(replay, td_error_rms)
        model.actor.optimizer.zero_grad()
        loss.backward()
        model.actor.optimizer.step()
        if update % REPORT_EVERY == 0:
            curve.append({"update": update, "spread": policy_diagnostics(model)["spread"],
                          "effective_sample_size": float(logs["effective_sample_size"])})  # fmt: skip
    return curve


def measure(model: SOM, pool: str, updates: int) -> dict[str, Any]:
    """The target's spread at the latest ``DIAGNOSTIC_STATES`` states and the policy's before and after ``updates``
    actor updates on ``pool`` (:func:`pool_sampler`), with the Q scale those updates measure and the policy's spread
    along the way (``curve``). The actor's weights and its optimizer's state change."""
    states = pool_sampler(model, pool)
    q_scale = training_q_scale(model, Q_SCALE_BATCHES, states)
    row: dict[str, Any] = {"pool": pool, "updates": updates, "q_scale": q_scale.item(),
                           "target_spread": target_spread(model, q_scale),
                           "spread_before": policy_diagnostics(model)["spread"]}  # fmt: skip
    row["curve"] = fit(model, states, updates)
    row["spread"] = policy_diagnostics(model)["spread"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a SOM checkpoint directory of benchmarks/learn.py")
    parser.add_argument("--pools", nargs="+", type=pool_argument, default=["32", "1024", "all"], help="sizes, or all")
    parser.add_argument("--updates", type=int, default=3000, help="actor updates per pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    args = parser.parse_args()
    model, state = load_checkpoint(args.checkpoint, "cpu")
    if not isinstance(model, SOM):
        parser.error(f"{args.checkpoint} holds a {type(model).__name__} model; conditional_fit measures SOM's actor")
    actor, optimizer = copy.deepcopy(model.actor.state_dict()), copy.deepcopy(model.actor.optimizer.state_dict())
    for pool in args.pools:
        model.actor.load_state_dict(actor)
        model.actor.optimizer.load_state_dict(optimizer)
        th.manual_seed(args.seed)
        np.random.seed(args.seed)
        config = state["config"]
        row = {"checkpoint": os.path.normpath(args.checkpoint), "env": config["env"], "seed": config["seed"],
               "timesteps": model.num_timesteps, **measure(model, pool, args.updates)}  # fmt: skip
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
