"""How much of a SOM critic's TD error is the spread of its TD target over the policy's next actions.

Loads a saved model and a replay buffer (a ``benchmarks/learn.py`` checkpoint's ``model.zip`` and
``replay_buffer.pkl``) and, on ``--transitions`` transitions of the buffer, draws ``--next-actions`` next actions per
transition from the actor; for each, the TD target ``r + gamma (1 - done) min_i Q_target_i(s', a')``. Prints the
first critic's mean squared error against one draw of the target (what each update regresses on with
``n_next_actions=1``), against the mean over the draws (``n_next_actions`` large), the variance of the target over
the draws, and the mean Q of the next actions against Q of the deterministic next action (``e = 0``).

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
    with th.no_grad():
        next_observations = data.next_observations.repeat_interleave(n, dim=0)
        next_q = th.cat(model.critic_target(next_observations, model.actor(next_observations)), dim=1).min(dim=1).values
        targets = data.rewards + (1 - data.dones) * model.gamma * next_q.view(-1, n)  # (transitions, n)
        current = model.critic(data.observations, data.actions)[0]  # (transitions, 1)
        deterministic = model.actor(data.next_observations, deterministic=True)
        q_deterministic = th.cat(model.critic_target(data.next_observations, deterministic), dim=1).min(dim=1).values
    one_draw = ((current - targets[:, :1]) ** 2).mean()
    mean_target = ((current - targets.mean(dim=1, keepdim=True)) ** 2).mean()
    next_action_gap = (next_q.view(-1, n).mean(dim=1) - q_deterministic).mean()
    print(f"# TD target over {n} next actions per transition: {args.model}, {args.transitions} transitions\n")
    print("| quantity | value |\n|---|---|")
    print(f"| first critic's MSE against one draw of the target | {one_draw:.3f} |")
    print(f"| first critic's MSE against the mean over the draws | {mean_target:.3f} |")
    print(f"| variance of the target over the draws (mean over transitions) | {targets.var(dim=1).mean():.3f} |")
    print(f"| mean over draws of min-Q(s', a') minus min-Q(s', a'(e = 0)) | {next_action_gap:.3f} |")


if __name__ == "__main__":
    main()
