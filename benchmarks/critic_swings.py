"""How the critic behind the score moves the one-step policy: windows of training from one saved model.

Loads a model and a replay buffer (for instance a ``benchmarks/learn.py`` checkpoint's ``model.zip`` and
``replay_buffer.pkl``) and continues its gradient steps without collecting new transitions, in windows of
``--window`` updates; after each window the deterministic one-step policy is evaluated from the same starts
(``learn.final_evaluation``) and the Q scale and critic loss of the window are summarised. Variants:

- ``critic``: the score values its proposals with the critic itself (``score_with_target_critic=False``);
- ``target``: with the target critic, the Polyak average of the critic (``score_with_target_critic=True``);
- ``frozen``: the critic and its target are not updated (only the actor learns), with the critic itself.

Best-of-64 by the same critic (``n_action_candidates=64``) is evaluated at the start, as what the critic knows.

    python benchmarks/critic_swings.py MODEL.zip REPLAY_BUFFER.pkl --env Pendulum-v1 --variants critic target frozen
"""

from __future__ import annotations

import argparse

import numpy as np
import torch as th
from stable_baselines3.common.logger import configure

from learn import final_evaluation
from sb3_som import SOM

VARIANTS = ("critic", "target", "frozen")


def run_variant(args: argparse.Namespace, variant: str) -> None:
    th.manual_seed(0)
    model = SOM.load(args.model, device="cpu", actor_batch_fraction=args.actor_batch_fraction)
    model.load_replay_buffer(args.replay_buffer)
    model.score_with_target_critic = variant == "target"
    if variant == "frozen":
        model.critic.optimizer.step = lambda *_, **__: None  # the critic's loss is still computed (and logged)
        model.tau = 0.0
    model.set_logger(configure(None, []))
    start = np.mean(final_evaluation(model, args.env, args.episodes))
    model.n_action_candidates = 64
    best_of_64 = np.mean(final_evaluation(model, args.env, args.episodes))
    model.n_action_candidates = 1
    print(f"| {variant} | 0 | {start:.0f} (Best-of-64: {best_of_64:.0f}) | | |", flush=True)
    for window in range(args.windows):
        q_scales, critic_losses = [], []
        for _ in range(args.window):
            model.train(1, model.batch_size)
            q_scales.append(model.logger.name_to_value["train/q_scale"])
            critic_losses.append(model.logger.name_to_value["train/critic_loss"])
            model.logger.dump()
        returns = np.mean(final_evaluation(model, args.env, args.episodes))
        cells = (f"{np.median(q_scales):.2f} ({np.min(q_scales):.2f}-{np.max(q_scales):.2f})",
                 f"{np.median(critic_losses):.2f} (max {np.max(critic_losses):.2f})")  # fmt: skip
        print(f"| {variant} | {(window + 1) * args.window} | {returns:.0f} | {cells[0]} | {cells[1]} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("replay_buffer")
    parser.add_argument("--env", required=True)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--window", type=int, default=25, help="gradient steps per window")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes after each window")
    parser.add_argument("--actor-batch-fraction", type=float, default=1.0, help="as the model was trained")
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"# Windows of {args.window} gradient steps from {args.model} ({args.env}, buffer {args.replay_buffer})\n")
    print(f"Deterministic one-step return over {args.episodes} episodes from the same starts after each window.\n")
    print("| score's critic | updates | return | Q scale, median (range) | critic loss, median (max) |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        run_variant(args, variant)


if __name__ == "__main__":
    main()
