"""Where a run's deterministic policy levels off, and whether acting with an average of the actor's weights moves it.

Trains one run as ``benchmarks/learn.py run`` does (the algorithm's rl-zoo3 entry, ``--hyperparams`` on top) and,
every ``--every`` steps from ``--start`` on, evaluates the deterministic policy over ``--episodes`` episodes from the
same starts as every run's final evaluation (``learn.final_evaluation``): with the actor as it is, and with
exponential moving averages of its weights (Polyak coefficient per environment step after ``learning_starts``,
one per ``--taus``), swapped in for the evaluation only. The evaluations act deterministically and draw no
random numbers, so the run learns as it would without them. One JSON line per evaluation point.

    python benchmarks/late_evaluations.py --algo som --env Pendulum-v1 --seed 0 --out late.jsonl \
        --hyperparams n_action_candidates=4
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from learn import ALGOS, current_commit, final_evaluation, parse_override, zoo_hyperparams


class LateEvaluations(BaseCallback):
    """Evaluates the live actor and the averages of its weights every ``every`` steps from ``start`` on."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self.args = args
        self.averages: dict[float, list[th.Tensor]] = {}

    def _on_training_start(self) -> None:
        self.averages = {tau: [p.detach().clone() for p in self.model.actor.parameters()] for tau in self.args.taus}

    def _on_step(self) -> bool:
        weights = list(self.model.actor.parameters())
        if self.model.num_timesteps > self.model.learning_starts:
            with th.no_grad():
                for tau, average in self.averages.items():
                    th._foreach_lerp_(average, weights, tau)
        steps = self.model.num_timesteps
        if steps >= self.args.start and steps % self.args.every == 0:
            self.evaluate(weights, steps)
        return True

    def evaluate(self, weights: list[th.Tensor], steps: int) -> None:
        args = self.args
        row = dict(algo=args.algo, env=args.env, seed=args.seed, hyperparams=args.hyperparams, commit=current_commit(),
                   timesteps=steps, episodes=args.episodes)  # fmt: skip
        row["live"] = float(np.mean(final_evaluation(self.model, args.env, args.episodes)))
        live = [w.detach().clone() for w in weights]
        with th.no_grad():
            for tau, average in self.averages.items():
                th._foreach_copy_(weights, average)
                row[f"average_tau_{tau:g}"] = float(np.mean(final_evaluation(self.model, args.env, args.episodes)))
            th._foreach_copy_(weights, live)
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGOS), required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=20000)
    parser.add_argument("--start", type=int, default=10000, help="first evaluation step")
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--taus", type=float, nargs="*", default=[0.005, 0.001], help="Polyak coefficients of the averages")
    parser.add_argument("--hyperparams", nargs="*", default=[], help="KEY=VALUE on top of the zoo entry")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.hyperparams = dict(parse_override(parser, item) for item in args.hyperparams)
    th.set_num_threads(1)
    hyperparams = {**zoo_hyperparams(args.algo, args.env), **args.hyperparams}
    model = ALGOS[args.algo](env=args.env, seed=args.seed, device="cpu", **hyperparams)
    model.learn(args.timesteps, callback=LateEvaluations(args))


if __name__ == "__main__":
    main()
