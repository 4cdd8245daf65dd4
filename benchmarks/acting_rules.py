"""Final return of one trained SOM model under each acting rule, from the same initial states.

Loads a saved model (for instance a ``benchmarks/learn.py`` checkpoint's ``model.zip``) and evaluates it with
``learn.final_evaluation`` (episode i from ``reset(seed=FINAL_EVAL_SEED + i)``, as every run's final evaluation)
under SOM's inference settings: the one-step action at ``e = 0`` (the default), Best-of-N by the critic
(``n_action_candidates``), k-step sampling (``sampling_steps``) and, for comparison, sampled (stochastic)
actions. Training is not involved: what changes is only how the trained policy turns an observation into an action.

    python benchmarks/acting_rules.py runs/checkpoints/som_Pendulum-v1_0/step_20000/model.zip --env Pendulum-v1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch as th

from learn import final_evaluation
from sb3_som import SOM

RULES = [
    {"n_action_candidates": 1, "sampling_steps": 1, "deterministic": True},
    {"n_action_candidates": 4, "sampling_steps": 1, "deterministic": True},
    {"n_action_candidates": 16, "sampling_steps": 1, "deterministic": True},
    {"n_action_candidates": 64, "sampling_steps": 1, "deterministic": True},
    {"n_action_candidates": 1, "sampling_steps": 4, "deterministic": True},
    {"n_action_candidates": 1, "sampling_steps": 1, "deterministic": False},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--env", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"# Acting rules of trained SOM models on {args.env}, {args.episodes} episodes from the same starts\n")
    print("| model | n_action_candidates | sampling_steps | deterministic | mean return | std |\n|---|---|---|---|---|---|")
    for path in args.models:
        model = SOM.load(path, device="cpu")
        for rule in RULES:
            model.policy.n_action_candidates, model.policy.sampling_steps = rule["n_action_candidates"], rule["sampling_steps"]
            returns = final_evaluation(model, args.env, args.episodes, rule["deterministic"])
            cells = (
                path,
                rule["n_action_candidates"],
                rule["sampling_steps"],
                rule["deterministic"],
                f"{np.mean(returns):.1f}",
                f"{np.std(returns):.1f}",
            )
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
