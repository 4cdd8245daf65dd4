"""Learning curves of SOM against SB3's SAC, each with its rl-zoo3 hyperparameters.

``run`` trains one (algorithm, task, seed) and appends one JSON line per evaluation checkpoint
(deterministic return over ``--eval-episodes`` episodes of a separate environment) to ``--out``, so a
run that is stopped early keeps every checkpoint it reached. ``report`` turns those lines into a
table of returns at the largest budget every run of a task reached, and a PNG of the curves
(mean and min-max band over seeds).

Hyperparameters: SOM's from ``hyperparams/som.yml``; SAC's from rl-zoo3's ``hyperparams/sac.yml``, whose
MuJoCo entries are named ``-v4`` (the ``-v5`` task takes the ``-v4`` entry; tasks without an entry take
its ``default``). ``n_timesteps`` is replaced by ``--timesteps``.

    python benchmarks/learn.py run --algo som --env Pendulum-v1 --seed 0 --timesteps 10000 --out runs.jsonl
    python benchmarks/learn.py report runs.jsonl --table table.md --png curves.png
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import time
from collections import defaultdict
from importlib import resources
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_som import SOM

ALGOS = {"som": SOM, "sac": SAC}
# keys of a zoo entry that this runner passes to the constructor as they are
PLAIN_KEYS = {"policy", "learning_rate", "buffer_size", "batch_size", "gamma", "tau", "train_freq", "gradient_steps",
              "learning_starts", "ent_coef", "use_sde"}  # fmt: skip


def zoo_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """The zoo entry for ``env_id`` (see the module docstring for the fallbacks), as constructor kwargs."""
    if algo == "som":
        path = str(resources.files("sb3_som.hyperparams").joinpath("som.yml"))
    else:  # located without importing rl_zoo3 (and its dependencies)
        path = os.path.join(importlib.util.find_spec("rl_zoo3").submodule_search_locations[0], "hyperparams", "sac.yml")
    with open(path) as file:
        entries = yaml.safe_load(file)
    key = env_id if env_id in entries else env_id.replace("-v5", "-v4")
    entry = dict(entries.get(key, entries["default"]))
    entry.pop("n_timesteps", None)
    unknown = set(entry) - PLAIN_KEYS - {"policy_kwargs"}
    if unknown:
        raise ValueError(f"{algo} entry {key!r} has keys this runner does not apply: {sorted(unknown)}")
    if "policy_kwargs" in entry:
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # the zoo's own convention: a Python expression
    return entry


class Checkpoints(BaseCallback):
    """Evaluates the deterministic policy every ``every`` steps and appends a JSON line per checkpoint.

    Each line also carries the latest ``train/`` diagnostics the algorithm logged (``train`` field).
    """

    def __init__(self, record: dict[str, Any], eval_env: gym.Env, every: int, episodes: int, out: str):
        super().__init__()
        self.record, self.eval_env, self.every, self.episodes, self.out = record, eval_env, every, episodes, out
        self.start = time.perf_counter()
        self.diagnostics: dict[str, float] = {}

    def _on_step(self) -> bool:
        self.diagnostics.update(
            {
                key[len("train/") :]: float(value)
                for key, value in self.logger.name_to_value.items()
                if key.startswith("train/")
            }
        )
        if self.num_timesteps % self.every == 0:
            returns, _ = evaluate_policy(self.model, self.eval_env, self.episodes, return_episode_rewards=True)
            row = dict(self.record, timesteps=self.num_timesteps, mean_return=float(np.mean(returns)),
                       std_return=float(np.std(returns)), seconds=round(time.perf_counter() - self.start, 1),
                       train=dict(self.diagnostics))  # fmt: skip
            with open(self.out, "a") as file:
                file.write(json.dumps(row) + "\n")
        return True


def current_commit() -> str:
    """The checkout's commit, with ``+`` when its tracked files differ from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=os.path.dirname(here)).returncode != 0
    return commit + ("+" if dirty else "")


def run(args: argparse.Namespace) -> None:
    hyperparams = zoo_hyperparams(args.algo, args.env)
    model = ALGOS[args.algo](env=args.env, seed=args.seed, device=args.device, **hyperparams)
    eval_env = Monitor(gym.make(args.env))
    eval_env.reset(seed=10_000 + args.seed)
    record = dict(algo=args.algo, env=args.env, seed=args.seed, device=args.device, commit=current_commit(),
                  machine=f"{platform.node()} ({os.cpu_count()} cpus)", threads=th.get_num_threads())  # fmt: skip
    model.learn(args.timesteps, callback=Checkpoints(record, eval_env, args.eval_every, args.eval_episodes, args.out))


def report(args: argparse.Namespace) -> None:
    rows = []
    for path in args.files:
        with open(path) as file:
            rows += [json.loads(line) for line in file if line.strip()]
    curves: dict[str, dict[str, dict[int, dict[int, float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for row in rows:
        curves[row["env"]][row["algo"]][row["seed"]][row["timesteps"]] = row["mean_return"]
    lines = ["| task | budget (steps) | SOM | SAC | seeds (SOM, SAC) |", "|---|---|---|---|---|"]
    for env_id, by_algo in curves.items():
        budget = min(max(points) for seeds in by_algo.values() for points in seeds.values())
        cells = []
        for algo in ("som", "sac"):
            finals = [points[budget] for points in by_algo.get(algo, {}).values() if budget in points]
            per_seed = ", ".join(f"{value:.0f}" for value in finals)
            cells.append(f"{np.mean(finals):.0f} ± {np.std(finals):.0f} ({per_seed})" if finals else "-")
        seeds = ", ".join(str(len(by_algo.get(algo, {}))) for algo in ("som", "sac"))
        lines.append(f"| {env_id} | {budget} | {cells[0]} | {cells[1]} | {seeds} |")
    table = "\n".join(lines) + "\n\nCells: mean ± std over seeds of the deterministic evaluation return (per-seed values).\n"
    print(table)
    if args.table:
        with open(args.table, "w") as file:
            file.write(table)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6), squeeze=False)
        for ax, (env_id, by_algo) in zip(axes[0], curves.items(), strict=True):
            for algo, color in (("som", "tab:blue"), ("sac", "tab:orange")):
                seeds = by_algo.get(algo, {})
                if not seeds:
                    continue
                steps = sorted(set.intersection(*(set(points) for points in seeds.values())))
                values = np.array([[points[step] for step in steps] for points in seeds.values()])
                ax.plot(steps, values.mean(0), color=color, label=f"{algo.upper()} ({len(seeds)} seeds)")
                ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2)
            ax.set_title(env_id)
            ax.set_xlabel("environment steps")
            ax.set_ylabel("evaluation return")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="train one algorithm on one task with one seed")
    one.add_argument("--algo", choices=sorted(ALGOS), required=True)
    one.add_argument("--env", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--timesteps", type=int, required=True)
    one.add_argument("--eval-every", type=int, default=1000)
    one.add_argument("--eval-episodes", type=int, default=10)
    one.add_argument("--device", default="cpu")
    one.add_argument("--out", required=True, help="JSON-lines file the checkpoints are appended to")
    summary = commands.add_parser("report", help="table and curves from run outputs")
    summary.add_argument("files", nargs="+")
    summary.add_argument("--table")
    summary.add_argument("--png")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
