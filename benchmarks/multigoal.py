"""SOM against SAC (and TD3) on the sequential multi-goal task ``MultiGoalPointMass-v0``, each at its defaults.

``run`` trains one (algorithm, seed) for ``--timesteps`` steps and appends one JSON line per evaluation to ``--out``
(with the ``--hyperparams`` it ran with):
``--eval-episodes`` stochastic episodes (the policy as it explores), with the share of episodes that reach a goal, the
share that reach each goal, the number of goals reached by at least 5% of the episodes, the entropy of the goal shares
(of the episodes that reach one; log 4 = 1.386 is all four equally), the mean return, the critic's value of the first
step (min over the Q networks, mean over episodes) against the Monte-Carlo discounted return that followed it, and
the mean of ``train/q_mean`` and the training episodes that reached each goal since the last evaluation (random
ones included: ``learning_starts``); for SOM, also the goal directions of its actions at the start
state against those of its target ``exp(alpha Q / q_scale)`` there (``start_directions``). The last line also holds
the first ``TRAJECTORIES`` episodes' positions for the figure. ``report`` turns the lines into a table (final
evaluation per seed) and a PNG of the curves and trajectories.

    python benchmarks/multigoal.py run --algo som --seed 0 --out multigoal_runs.jsonl
    python benchmarks/multigoal.py report multigoal_runs.jsonl --table multigoal.md --png multigoal.png

One run of 20,000 steps takes about 3 (SAC) to 6 (SOM) minutes on one core.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from learn import training_q_scale
from sb3_som import SOM
from sb3_som.critic_values import q_at_states
from sb3_som.envs import MultiGoalPointMass

ENV_ID = "MultiGoalPointMass-v0"
ALGOS = {"som": SOM, "sac": SAC, "td3": TD3}
N_GOALS = len(MultiGoalPointMass.GOALS)
REACHED_SHARE = 0.05  # a goal counts as reached by a run when at least this share of its episodes reach it
TRAJECTORIES = 30  # episodes of the final evaluation whose positions the last line keeps
START_ACTIONS = 4000  # stochastic actions of the policy at the start state, for its goal directions
TARGET_GRID = 201  # points per axis of the action box on which the start state's target is evaluated


def goal_directions(actions: th.Tensor, weights: th.Tensor) -> list[float]:
    """Weight of actions (N, 2) heading for each goal (+x, -x, +y, -y: the quarter-plane around its axis), for
    weights (N,) that sum to 1."""
    x, y = actions[:, 0], actions[:, 1]
    along_x = x.abs() >= y.abs()
    sectors = [along_x & (x > 0), along_x & (x <= 0), ~along_x & (y > 0), ~along_x & (y <= 0)]
    return [weights[sector].sum().item() for sector in sectors]


def start_directions(model: SOM) -> dict[str, list[float]]:
    """Goal directions at the start state (the origin) of SOM's stochastic actions and of its target.

    The target is ``exp(alpha Q / q_scale)`` as the actor's update sees it: Q from the target critic's first network
    on a ``TARGET_GRID``-square grid of the action box, the Q scale measured on a replay batch as in training. Where
    the two agree, the one-step policy reproduces its target, and which goals it heads for is the critic's doing.
    """
    numpy_state = np.random.get_state()  # the replay sample and the actions draw from training's random streams
    with th.random.fork_rng(devices=[]), th.no_grad():
        beta = model.target_alpha / training_q_scale(model, batches=1)
        critic = model.critic_target
        axis = th.linspace(-1.0, 1.0, TARGET_GRID)
        grid = th.stack(th.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 2).to(model.device)
        origin = th.zeros(1, 2, device=model.device)
        q_values = q_at_states(critic, critic.extract_features(origin, critic.features_extractor), grid, "first")[0]
        target = goal_directions(grid[0], th.softmax(beta * q_values, dim=0))
        actions, _ = model.predict(np.zeros((START_ACTIONS, 2), dtype=np.float32), deterministic=False)
        policy = goal_directions(th.as_tensor(actions), th.full((START_ACTIONS,), 1 / START_ACTIONS))
    np.random.set_state(numpy_state)
    return {"policy": policy, "target": target}


def evaluate(model: BaseAlgorithm, episodes: int, seed: int, keep: int = 0) -> dict[str, Any]:
    """``episodes`` stochastic episodes of ``model``: goal shares, return, first-step value against its return."""
    env = gym.make(ENV_ID)
    goals, returns, first_values, discounted, paths = [], [], [], [], []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        positions, rewards, first_value = [observation.tolist()], [], None
        done = False
        while not done:
            action, _ = model.predict(observation, deterministic=False)
            if first_value is None:
                with th.no_grad():
                    obs_tensor = model.policy.obs_to_tensor(observation)[0]
                    action_tensor = th.as_tensor(model.policy.scale_action(action), device=model.device).view(1, -1)
                    first_value = th.cat(model.critic(obs_tensor, action_tensor), dim=1).min().item()
            observation, reward, terminated, truncated, info = env.step(action)
            positions.append(observation.tolist())
            rewards.append(reward)
            done = terminated or truncated
        goals.append(info["goal"])
        returns.append(sum(rewards))
        first_values.append(first_value)
        discounted.append(sum(r * model.gamma**k for k, r in enumerate(rewards)))
        if episode < keep:
            paths.append([[round(x, 2) for x in p] for p in positions])
    goals_array = np.array(goals)
    shares = [float(np.mean(goals_array == g)) for g in range(N_GOALS)]
    success = float(np.mean(goals_array >= 0))
    conditional = np.array(shares) / success if success > 0 else np.zeros(N_GOALS)
    entropy = float(sum(-p * math.log(p) for p in conditional if p > 0))  # 0.0, not -0.0, for one goal
    result = {
        "success": success,
        "goal_shares": shares,
        "goals_reached": int(sum(share >= REACHED_SHARE for share in shares)),
        "goal_entropy": entropy,
        "mean_return": float(np.mean(returns)),
        "first_value": float(np.mean(first_values)),
        "first_return": float(np.mean(discounted)),
    }
    if keep:
        result["trajectories"] = paths
    if isinstance(model, SOM):
        result["start_directions"] = start_directions(model)
    return result


class EvaluationLines(BaseCallback):
    """Every ``every`` steps, an evaluation line appended to ``out`` (the last, at the budget, with trajectories)."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self.args = args
        self.q_means: list[float] = []
        self.training_goals = [0] * N_GOALS

    def _on_step(self) -> bool:
        q_mean = self.model.logger.name_to_value.get("train/q_mean")
        if q_mean is not None:
            self.q_means.append(q_mean)
        for info in self.locals["infos"]:
            if info.get("goal", -1) >= 0:
                self.training_goals[info["goal"]] += 1
        if self.num_timesteps % self.args.eval_every == 0:
            final = self.num_timesteps >= self.args.timesteps
            result = evaluate(self.model, self.args.eval_episodes, seed=10_000, keep=TRAJECTORIES if final else 0)
            line = {"algo": self.args.algo, "seed": self.args.seed, "hyperparams": hyperparams(self.args)}
            line.update(timesteps=self.num_timesteps, **result)
            line["q_mean"] = float(np.mean(self.q_means)) if self.q_means else None
            line["training_goals"] = self.training_goals
            self.q_means, self.training_goals = [], [0] * N_GOALS
            with open(self.args.out, "a") as out:
                out.write(json.dumps(line) + "\n")
        return True


def hyperparams(args: argparse.Namespace) -> dict[str, Any]:
    """The algorithm's settings other than its defaults, from ``--hyperparams KEY=VALUE``: a value that reads as a
    Python literal (a number, a boolean) is that literal, any other a string."""
    settings: dict[str, Any] = {}
    for item in args.hyperparams:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--hyperparams takes KEY=VALUE items, got {item!r}")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return settings


def run(args: argparse.Namespace) -> None:
    th.set_num_threads(1)
    model = ALGOS[args.algo]("MlpPolicy", ENV_ID, seed=args.seed, **hyperparams(args))
    model.learn(args.timesteps, callback=EvaluationLines(args))


def read_lines(paths: list[str]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    runs: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        with open(path) as lines:
            for line in lines:
                entry = json.loads(line)
                runs[entry["algo"], entry["seed"]].append(entry)
    return runs


def report(args: argparse.Namespace) -> None:
    runs = read_lines(args.lines)
    finals = {key: max(lines, key=lambda entry: entry["timesteps"]) for key, lines in runs.items()}
    algos = [algo for algo in ALGOS if any(key[0] == algo for key in finals)]
    rows = [
        "| algorithm | seed | steps | success | goal shares (+x, -x, +y, -y) | goals >= 5% | goal entropy "
        "| start state's directions: policy / target |"
    ]
    rows.append("|---|---|---|---|---|---|---|---|")
    summary = ["| algorithm | seeds | success, mean | seeds with >= 3 goals | goal entropy, mean |", "|---|---|---|---|---|"]
    for algo in algos:
        keys = sorted(key for key in finals if key[0] == algo)
        for key in keys:
            final = finals[key]
            shares = ", ".join(f"{share:.2f}" for share in final["goal_shares"])
            directions = final.get("start_directions")
            start = "-"
            if directions:
                start = " / ".join(" ".join(f"{v:.2f}" for v in directions[k]) for k in ("policy", "target"))
            rows.append(
                f"| {algo.upper()} | {key[1]} | {final['timesteps']} | {final['success']:.2f} | {shares} | "
                f"{final['goals_reached']} | {final['goal_entropy'] + 0.0:.2f} | {start} |"
            )
        entries = [finals[key] for key in keys]
        summary.append(
            f"| {algo.upper()} | {len(keys)} | {np.mean([e['success'] for e in entries]):.2f} | "
            f"{sum(e['goals_reached'] >= 3 for e in entries)} of {len(keys)} | "
            f"{np.mean([e['goal_entropy'] for e in entries]) + 0.0:.2f} |"
        )
    text = "\n".join(summary) + "\n\n" + "\n".join(rows) + "\n"
    with open(args.table, "w") as table:
        table.write(text)
    print(text)
    if args.png:
        draw(runs, finals, algos, args.png)


def draw(runs: dict, finals: dict, algos: list[str], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({key[1] for key in finals})
    figure, axes = plt.subplots(2, len(algos), figsize=(4.2 * len(algos), 8.4), squeeze=False)
    for column, algo in enumerate(algos):
        trajectories = axes[0, column]
        for seed in seeds:
            final = finals.get((algo, seed))
            for path in (final or {}).get("trajectories", []):
                xy = np.array(path)
                trajectories.plot(xy[:, 0], xy[:, 1], color=f"C{seed}", alpha=0.5, linewidth=0.8)
        for goal in MultiGoalPointMass.GOALS:
            trajectories.add_patch(matplotlib.patches.Circle(goal, MultiGoalPointMass.GOAL_RADIUS, fill=False))
        trajectories.set(xlim=(-7, 7), ylim=(-7, 7), aspect="equal", title=f"{algo.upper()}: final policy, colour = seed")
        curves = axes[1, column]
        for seed in seeds:
            lines = sorted(runs.get((algo, seed), []), key=lambda entry: entry["timesteps"])
            steps = [entry["timesteps"] for entry in lines]
            curves.plot(steps, [entry["first_value"] for entry in lines], color=f"C{seed}", label=f"Q, seed {seed}")
            curves.plot(steps, [entry["first_return"] for entry in lines], color=f"C{seed}", linestyle=":")
        curves.set(xlabel="steps", title="critic's first-step value (solid) / its return (dotted)")
        curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    figure.tight_layout()
    figure.savefig(png, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train one algorithm and seed, append its evaluation lines")
    run_parser.add_argument("--algo", choices=sorted(ALGOS), required=True)
    run_parser.add_argument("--seed", type=int, default=0)
    run_parser.add_argument("--timesteps", type=int, default=20_000)
    run_parser.add_argument("--eval-every", type=int, default=2_500)
    run_parser.add_argument("--eval-episodes", type=int, default=200)
    run_parser.add_argument(
        "--hyperparams", nargs="*", default=[], help="KEY=VALUE passed to the algorithm (numbers and booleans as such)"
    )
    run_parser.add_argument("--out", required=True)
    report_parser = commands.add_parser("report", help="table and figure from evaluation lines")
    report_parser.add_argument("lines", nargs="+")
    report_parser.add_argument("--table", required=True)
    report_parser.add_argument("--png")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
