"""Mode coverage on two one-step toy tasks: SOM against SB3's SAC and TD3.

Tasks (``sb3_som.envs``): the multi-goal bandit (six Gaussian bumps on a circle, weights 2 and 1, reward =
normalised mixture density) and Two-Moons (reward 1 on two interleaved half circles, falling off with
the distance to them). Each algorithm trains ``--timesteps`` steps with the same 128x128 nets; then its
policy samples 2000 actions for the constant observation (SOM and SAC stochastic, TD3 its deterministic
policy, which is all it has).

Columns: mean reward; bandit: share of samples within 3 sigma of a bump, bumps holding >= 5% of the
samples (of 6), heavy:light mass ratio (exact: 2); Two-Moons: share within 2 sigma of a moon, moons
holding >= 10% (of 2), arc segments holding >= 1% (of 20: each moon cut into 10 equal arcs).

    python benchmarks/toy.py --seeds 0 1 2 --out benchmarks/results/toy
"""

from __future__ import annotations

import argparse
import json
import os
from multiprocessing import Pool
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3

from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit, TwoMoonsBandit

N_SAMPLES = 2000
SHARED = dict(learning_starts=200, device="cpu")
NET = [128, 128]
ALGOS: dict[str, tuple[type, dict[str, Any]]] = {
    "SOM": (SOM, {}),  # alpha per task: SOM_ALPHA
    "SAC": (SAC, {}),
    "TD3": (TD3, {}),
}
TASKS = {"bandit": MultiGoalBandit, "two_moons": TwoMoonsBandit}
# SOM's alpha per task, as hyperparams/som.yml's entries: a target that holds the bandit's six modes, and Two-Moons' arcs
SOM_ALPHA = {"bandit": 0.5, "two_moons": 3.0}


def coverage(task: str, env: MultiGoalBandit | TwoMoonsBandit, actions: np.ndarray) -> dict[str, float]:
    """The table's columns for actions (N, 2)."""
    result = dict(reward=float(env.reward(actions).mean()))
    if isinstance(env, MultiGoalBandit):
        modes = env.mixture.nearest_mode(th.as_tensor(actions, dtype=th.float32)).numpy()
        counts = np.array([(modes == i).sum() for i in range(len(env.mixture.weights))])
        heavy, light = counts[0::2].sum(), counts[1::2].sum()
        result.update(on_modes=float((modes >= 0).mean()), modes=int((counts >= 0.05 * len(actions)).sum()),
                      heavy_to_light=float(heavy / light) if light else float("inf"))  # fmt: skip
    else:
        distances, positions = env.arc_position(actions)
        moon = distances.argmin(axis=1)
        near = distances.min(axis=1) <= 2 * env.sigma
        segments = np.minimum((positions[np.arange(len(actions)), moon] * 10).astype(int), 9) + 10 * moon
        segment_counts = np.bincount(segments[near], minlength=20)
        result.update(on_moons=float(near.mean()),
                      moons=int(sum((near & (moon == i)).sum() >= 0.1 * len(actions) for i in range(2))),
                      segments=int((segment_counts >= 0.01 * len(actions)).sum()))  # fmt: skip
    return result


def run(job: tuple[str, str, int, int]) -> dict[str, Any]:
    task, algo, seed, timesteps = job
    th.set_num_threads(1)
    env = TASKS[task]()
    algo_class, kwargs = ALGOS[algo]
    if algo_class is SOM:
        kwargs = {**kwargs, "alpha": SOM_ALPHA[task]}
    # a fresh policy_kwargs per model: SB3 writes into the dict it is given
    model = algo_class("MlpPolicy", env, seed=seed, policy_kwargs=dict(net_arch=NET), **SHARED, **kwargs)
    model.learn(timesteps)
    actions, _ = model.predict(np.zeros((N_SAMPLES, 1), dtype=np.float32), deterministic=algo == "TD3")
    return dict(task=task, algo=algo, seed=seed, timesteps=timesteps, **coverage(task, env, actions), actions=actions.tolist())


def figure(task: str, results: list[dict[str, Any]], path: str) -> None:
    """Samples of the first seed of each algorithm over the reward landscape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = TASKS[task]()
    grid = np.linspace(-1, 1, 201)
    xx, yy = np.meshgrid(grid, grid)
    landscape = env.reward(np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(xx.shape)
    fig, axes = plt.subplots(1, len(ALGOS), figsize=(4 * len(ALGOS), 4))
    for ax, algo in zip(axes, ALGOS, strict=True):
        result = next(r for r in results if r["task"] == task and r["algo"] == algo)
        actions = np.array(result["actions"])
        ax.contourf(xx, yy, landscape, levels=20, cmap="Greys")
        ax.scatter(actions[:, 0], actions[:, 1], s=3, alpha=0.4, color="tab:red")
        ax.set_title(f"{algo}: mean reward {result['reward']:.2f}")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
    fig.suptitle(f"{task}: {N_SAMPLES} policy samples after {results[0]['timesteps']} steps (seed {result['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=2500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/toy", help="prefix of the .md, .json and .png outputs")
    args = parser.parse_args()
    jobs = [(task, algo, seed, args.timesteps) for task in TASKS for algo in ALGOS for seed in args.seeds]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    lines = [f"# Mode coverage after {args.timesteps} steps, 128x128 nets, seeds {args.seeds}: mean over seeds (per seed)\n"]
    for task, columns in (("bandit", ("reward", "on_modes", "modes", "heavy_to_light")),
                          ("two_moons", ("reward", "on_moons", "moons", "segments"))):  # fmt: skip
        lines += [f"\n## {task}\n", "| algorithm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for algo in ALGOS:
            rows = [r for r in results if r["task"] == task and r["algo"] == algo]
            cells = [f"{np.mean([r[c] for r in rows]):.2f} ({', '.join(f'{r[c]:.2f}' for r in rows)})" for c in columns]
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
        figure(task, results, f"{args.out}_{task}.png")
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(f"{args.out}.md", "w") as file:
        file.write(table)
    with open(f"{args.out}.json", "w") as file:
        json.dump([{k: v for k, v in r.items() if k != "actions"} for r in results], file, indent=1)


if __name__ == "__main__":
    main()
