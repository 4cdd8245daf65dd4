"""Learning on Pendulum-v1 for SOM variants against SB3's SAC: picks SOM's learning defaults.

Each variant changes one or two of SOM's (open) choices from the base configuration; every run
trains for ``--timesteps`` steps and reports the deterministic evaluation return over 10 episodes
(and the stochastic one, which is what the one-step sampler gives), also every ``--eval-every``
steps into ``--jsonl``. Runs go in parallel, one CPU thread each.

    python benchmarks/pendulum_sweep.py --timesteps 10000 --seeds 0 1 --workers 16 \
        --variants base alpha3 alpha30 > benchmarks/results/pendulum_sweep.md
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_som import SOM

# one change at a time from SOM's defaults
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "alpha3": dict(alpha=3.0),
    "alpha30": dict(alpha=30.0),
    "logit_normal": dict(time_sampler="logit_normal"),
    "p1": dict(loss_weight_power=1.0),
    "fraction25": dict(mean_flow_fraction=0.25),
    "logit_normal_fraction25_p1": dict(time_sampler="logit_normal", mean_flow_fraction=0.25, loss_weight_power=1.0),
    "a0_buffer": dict(a0_source="buffer"),
    "no_distillation": dict(distillation_steps=0),
    "distillation_coef3": dict(distillation_coef=3.0),
    "posterior": dict(score_estimator="posterior"),
    "vp": dict(noise_path="vp"),
    "k8": dict(n_score_samples=8),
    "k32": dict(n_score_samples=32),
    "k64": dict(n_score_samples=64),
    "min_critic": dict(score_critic="min"),
    "online_critic": dict(score_with_target_critic=False),
    "whole_batch": dict(actor_batch_fraction=1.0),
    "k32_min_critic": dict(n_score_samples=32, score_critic="min"),
    "fraction0": dict(mean_flow_fraction=0.0),
    "fraction1": dict(mean_flow_fraction=1.0),
    "sac": {},
}


def evaluate(model: SOM | SAC, seed: int, deterministic: bool) -> float:
    env = gym.make("Pendulum-v1")
    env.reset(seed=seed + 1000)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=10, deterministic=deterministic)
    return float(mean_return)


def run(job: tuple[str, int, int, int, dict[str, Any], str | None]) -> dict[str, Any]:
    """Train one variant, evaluating every ``eval_every`` steps; each evaluation is appended to ``jsonl``."""
    name, seed, timesteps, eval_every, overrides, jsonl = job
    th.set_num_threads(1)
    if name == "sac":
        model = SAC("MlpPolicy", "Pendulum-v1", seed=seed, verbose=0, device="cpu")
    else:
        model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", seed=seed, verbose=0, device="cpu", **{**VARIANTS[name], **overrides})
    start = time.perf_counter()
    while model.num_timesteps < timesteps:
        try:
            model.learn(min(eval_every, timesteps - model.num_timesteps), reset_num_timesteps=False)
        except FloatingPointError as error:  # a diverged run is a result, not the end of the sweep
            result = dict(variant=name, seed=seed, timesteps=model.num_timesteps, deterministic=float("nan"),
                          stochastic=float("nan"), seconds=time.perf_counter() - start, error=str(error))  # fmt: skip
            if jsonl:
                with open(jsonl, "a") as file:
                    file.write(json.dumps(result) + "\n")
            return result
        result = dict(
            variant=name,
            seed=seed,
            timesteps=model.num_timesteps,
            deterministic=evaluate(model, seed, True),
            stochastic=evaluate(model, seed, False),
            seconds=time.perf_counter() - start,
        )
        if jsonl:
            with open(jsonl, "a") as file:
                file.write(json.dumps(result) + "\n")
    return result


def print_table(results: list[dict[str, Any]], variants: list[str], header: str) -> None:
    """One row per variant: its final evaluation per seed (``nan`` where the run diverged)."""
    print(header + "\n")
    print("| variant | settings | deterministic return per seed | mean | stochastic mean | seconds per run |")
    print("|---|---|---|---|---|---|")
    for name in variants:
        rows = [r for r in results if r["variant"] == name]
        settings = "SB3 SAC defaults" if name == "sac" else (VARIANTS[name] or "SOM defaults")
        per_seed = ", ".join(f"{r['deterministic']:.0f}" + (" (diverged)" if "error" in r else "") for r in rows)
        print(
            f"| {name} | {settings} | {per_seed} | {np.mean([r['deterministic'] for r in rows]):.0f} | "
            f"{np.mean([r['stochastic'] for r in rows]):.0f} | {np.mean([r['seconds'] for r in rows]):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--overrides", default="{}", help="JSON dict of SOM arguments applied to every SOM variant")
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--jsonl", help="append each evaluation to this file as soon as it is made")
    parser.add_argument("--report", help="only print the table of the last evaluation of each run in this JSON-lines file")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as file:
            rows = [json.loads(line) for line in file if line.strip()]
        last = {(r["variant"], r["seed"]): r for r in sorted(rows, key=lambda r: r["timesteps"])}
        results = [last[key] for key in sorted(last, key=lambda key: (key[0], key[1])) if key[0] in args.variants]
        steps = sorted({r["timesteps"] for r in results})
        print_table(results, args.variants, f"# Pendulum-v1, last evaluation of each run (steps {steps}), from {args.report}")
        return
    overrides = json.loads(args.overrides)
    jobs = [
        (name, seed, args.timesteps, args.eval_every, overrides, args.jsonl) for name in args.variants for seed in args.seeds
    ]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    header = f"# Pendulum-v1, {args.timesteps} steps, seeds {args.seeds}, SOM overrides {overrides}"
    print_table(results, args.variants, header)
    print("\n```json")
    print(json.dumps(results))
    print("```")


if __name__ == "__main__":
    main()
