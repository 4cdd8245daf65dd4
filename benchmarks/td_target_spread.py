"""How much of a SOM critic's TD error is the spread of its TD target over the policy's next actions.

Loads a saved model and a replay buffer (a ``benchmarks/learn.py`` checkpoint's ``model.zip`` and
``replay_buffer.pkl``) and, on ``--transitions`` transitions of the buffer, draws the model's own TD target
(``SOM._td_target`` with one next action from the actor) ``--next-actions`` times per transition. Prints the
first critic's mean squared error against one draw of the target (what each update regresses on with
``n_next_actions=1``), against the mean over the draws (``n_next_actions`` large), the variance of the target over
the draws, and the mean target against the target of the deterministic next action (``e = 0``).

    python benchmarks/td_target_spread.py step_20000/model.zip step_20000/replay_buffer.pkl
"""

from __future__ import annotations

import argparse

import torch as th

from sb3_som import SOM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("replay_buffer")
    parser.add_argument("--transitions", type=int, default=4096)
    parser.add_argument("--next-actions", type=int, default=64)
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    model = SOM.load(args.model, device="cpu")
    model.load_replay_buffer(args.replay_buffer)
    data = model.replay_buffer.sample(args.transitions)
    n = args.next_actions
    model.n_next_actions = 1
    targets = th.cat([model._td_target(data) for _ in range(n)], dim=1)  # (transitions, n)
    with th.no_grad():
        current = model.critic(data.observations, data.actions)[0]  # (transitions, 1)
        deterministic = model.actor(data.next_observations, deterministic=True)
        q_deterministic = th.cat(model.critic_target(data.next_observations, deterministic), dim=1).min(dim=1).values
    discounts = data.discounts if data.discounts is not None else model.gamma
    deterministic_targets = data.rewards + (1 - data.dones) * discounts * q_deterministic.unsqueeze(1)
    one_draw = ((current - targets) ** 2).mean()  # each draw as one update would see it, averaged over the draws
    mean_target = ((current - targets.mean(dim=1, keepdim=True)) ** 2).mean()
    # in units of the target: discount times (mean over a' of min-Q(s', a') - min-Q(s', a'(e = 0)))
    next_action_gap = (targets.mean(dim=1, keepdim=True) - deterministic_targets).mean()
    print(f"# TD target over {n} next actions per transition: {args.model}, {args.transitions} transitions\n")
    print("| quantity | value |\n|---|---|")
    print(f"| first critic's MSE against one draw of the target (averaged over the draws) | {one_draw:.3f} |")
    print(f"| first critic's MSE against the mean over the draws | {mean_target:.3f} |")
    print(f"| variance of the target over the draws (mean over transitions) | {targets.var(dim=1).mean():.3f} |")
    print(f"| mean target over the draws minus the target at a'(e = 0) | {next_action_gap:.3f} |")


if __name__ == "__main__":
    main()
