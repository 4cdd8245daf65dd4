"""In the full loop: one-step vs 20-step samples of SOM's actor on the multi-goal bandit.

SOM (its defaults, ``alpha`` from ``--alpha``, 0.5) learns its critic and actor on ``sb3_som.envs.MultiGoalBandit`` (six bumps,
weights 2 and 1); then the actor samples 2000 actions with one step (the one-step network) and with 20 steps (the
flow network) from the same noise. Columns: mean reward of each, the relative gap, share of samples within 3 sigma
of a mode, modes holding >= 5% of the samples; and the policy's target ``exp(alpha Q / q_scale)`` at the run's final
Q scale, by quadrature on a grid of the box, with Q the learned critic's (its target network's first Q network, which
the actor's update values proposals with) and with Q the reward itself: the modes holding >= 5% of each, and the
total variation between the one-step samples' shares of the six modes (and of no mode) and the learned target's.

At alpha 0.5 the target holds all six modes, the heavy ones 2-3 times as much as the light ones; at alpha 3 it
holds the three heavy ones at the reward and, at a learned critic, often one (``bandit_fidelity_alpha3.md``):

    python benchmarks/bandit_fidelity.py --seeds 0 1 2 3 4 --workers 1 > benchmarks/results/bandit_fidelity.md
    python benchmarks/bandit_fidelity.py --alpha 3 --seeds 0 1 2 3 4 --workers 1 > benchmarks/results/bandit_fidelity_alpha3.md
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from typing import Any

import torch as th

from sb3_som import SOM
from sb3_som.envs import MultiGoalBandit

N = 2000
GRID = 401  # points per axis of the quadrature grid on the box


def run(job: tuple[int, int, float]) -> dict[str, Any]:
    seed, timesteps, alpha = job
    th.set_num_threads(1)
    env = MultiGoalBandit()
    model = SOM(
        "MlpMeanFlowPolicy",
        env,
        learning_starts=200,
        alpha=alpha,
        policy_kwargs=dict(net_arch=[128, 128]),
        seed=seed,
        device="cpu",
    )
    model.learn(timesteps)
    result: dict[str, Any] = dict(seed=seed)
    with th.no_grad():
        noise = th.randn(N, 2, generator=th.Generator().manual_seed(seed + 7))
        samples = {steps: model.actor.sample(th.zeros(N, 1), noise, steps=steps) for steps in (1, 20)}
        for steps, actions in samples.items():
            modes = env.mixture.nearest_mode(actions)
            counts = th.stack([(modes == i).sum() for i in range(6)])
            result[f"reward_{steps}"] = float(env.reward(actions.numpy()).mean())
            result[f"on_modes_{steps}"] = float((modes >= 0).float().mean())
            result[f"modes_{steps}"] = int((counts >= 0.05 * N).sum())
    result["gap"] = abs(result["reward_1"] - result["reward_20"]) / result["reward_20"]
    one_step_shares = mode_shares(env, samples[1], th.full((N,), 1.0 / N))
    grid = box_grid()
    result["q_scale"] = float(model.logger.name_to_value["train/q_scale"])
    inverse_temperature = model.target_alpha / result["q_scale"]
    with th.no_grad():
        q_critic = model.critic_target.q1_forward(th.zeros(grid.shape[0], 1), grid).squeeze(-1)
    q_reward = th.as_tensor(env.reward(grid.numpy()))
    for name, q_values in (("critic", q_critic), ("reward", q_reward)):
        shares = mode_shares(env, grid, th.softmax(inverse_temperature * q_values, dim=0))
        result[f"target_modes_{name}"] = int((shares[:6] >= 0.05).sum())
        if name == "critic":
            result["share_distance"] = float(0.5 * (one_step_shares - shares).abs().sum())
    return result


def box_grid() -> th.Tensor:
    """The quadrature grid of the action box [-1, 1]^2: ``GRID`` points per axis, (GRID^2, 2)."""
    axis = th.linspace(-1.0, 1.0, GRID)
    return th.stack(th.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)


def mode_shares(env: MultiGoalBandit, actions: th.Tensor, weights: th.Tensor) -> th.Tensor:
    """Weighted shares (7,) of actions (n, 2) on each of the six modes (within 3 sigma of its centre) and on none."""
    modes = env.mixture.nearest_mode(actions)
    return th.stack([weights[modes == i].sum() for i in (*range(6), -1)])


def print_results(columns: tuple[str, ...], results: list[dict[str, Any]]) -> None:
    """Print ``results`` as a markdown table of ``columns`` (floats to 3 significant digits), then all as JSON."""
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for result in results:
        cells = (f"{result[c]:.3g}" if isinstance(result[c], float) else str(result[c]) for c in columns)
        print("| " + " | ".join(cells) + " |")
    print("\n```json\n" + json.dumps(results) + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, default=2500)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(seed, args.timesteps, args.alpha) for seed in args.seeds]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    print(f"# Multi-goal bandit, SOM alpha {args.alpha}, {args.timesteps} steps, 128x128 nets\n")
    columns = ("seed", "reward_1", "reward_20", "gap", "on_modes_1", "on_modes_20", "modes_1", "modes_20",
               "target_modes_critic", "target_modes_reward", "share_distance", "q_scale")  # fmt: skip
    print_results(columns, results)


if __name__ == "__main__":
    main()
