"""The stochastic action distribution of a trained SOM policy, against a trained SAC policy's at the same states.

Collects ``--states`` states from one episode of the SOM model's deterministic policy (reset with the final
evaluation's first seed, ``learn.FINAL_EVAL_SEED``), evenly spaced over the episode; at each, draws ``--samples``
stochastic actions from each model (the SAC model is optional: without it, SOM's alone), scaled to the box
``[-1, 1]^d``, and counts, per state and action dimension, the modes of a Gaussian kernel density estimate
(bandwidth ``BANDWIDTH``; a mode is a peak on a grid of the box, faces included, whose prominence is at least
``MODE_PROMINENCE`` of the highest density, so that the estimate's own noise on a flat density does not count).
Writes a table (``--md``) and a figure of four of the states' per-dimension histograms (``--png``).

    python benchmarks/action_distribution.py runs/ckpt/som_HalfCheetah-v5_0/step_100000/model.zip \
        runs/ckpt/sac_HalfCheetah-v5_0/step_100000/model.zip --env HalfCheetah-v5 \
        --md benchmarks/results/action_distribution_halfcheetah.md \
        --png benchmarks/results/action_distribution_halfcheetah.png
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from scipy.signal import find_peaks
from scipy.stats import gaussian_kde
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from learn import FINAL_EVAL_SEED, sampled_actions
from sb3_som import SOM
from sb3_som.objective import FACE_THRESHOLD

BANDWIDTH = 0.08  # the kernel's standard deviation, in box units
MODE_PROMINENCE = 0.3  # a mode rises at least this share of the highest density above the valleys around it
GRID = np.linspace(-1.0, 1.0, 401)
FIGURE_STATES = 4


def visited_states(model: SOM, env_id: str, count: int) -> np.ndarray:
    """``count`` observations evenly spaced over one deterministic episode of ``model``: (count, o)."""
    env = gym.make(env_id)
    observation, _ = env.reset(seed=FINAL_EVAL_SEED)
    observations, done = [observation], False
    while not done:
        action, _ = model.predict(observation, deterministic=True)
        observation, _, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        done = terminated or truncated
    picks = np.linspace(0, len(observations) - 1, count).round().astype(int)
    return np.stack([observations[i] for i in picks])


def count_modes(values: np.ndarray) -> int:
    """Modes of a kernel density estimate of 1-D samples in the box (see the module's docstring)."""
    if values.std() < 1e-6:
        return 1
    density = gaussian_kde(values, bw_method=BANDWIDTH / values.std())(GRID)
    padded = np.concatenate([[0.0], density, [0.0]])  # a peak at a face counts
    peaks, _ = find_peaks(padded, prominence=MODE_PROMINENCE * density.max())
    return len(peaks)


def summary(actions: np.ndarray) -> dict[str, float]:
    """Per model: the share of (state, dimension) pairs with 2+ modes, the mean modes, the mean per-dimension
    standard deviation, and the share of coordinates on a face."""
    modes = np.array([[count_modes(actions[s, :, j]) for j in range(actions.shape[2])] for s in range(len(actions))])
    return {
        "share with 2+ modes": float((modes >= 2).mean()),
        "mean modes": float(modes.mean()),
        "mean std": float(actions.std(axis=1).mean()),
        "share on a face": float((np.abs(actions) > FACE_THRESHOLD).mean()),
    }


def plot(actions: dict[str, np.ndarray], states: int, env_id: str, path: str) -> None:
    """Per-dimension histograms of each model's actions (S, N, d) at four of the ``states`` states, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = actions["SOM"].shape[2]
    figure, axes = plt.subplots(FIGURE_STATES, dims, figsize=(2.2 * dims, 1.8 * FIGURE_STATES), sharex=True)
    bins = np.linspace(-1.0, 1.0, 41)
    for row, state in enumerate(np.linspace(0, states - 1, FIGURE_STATES).round().astype(int)):
        for j in range(dims):
            axis = axes[row, j]
            for name, sampled in actions.items():
                axis.hist(sampled[state, :, j], bins=bins, alpha=0.55, density=True, label=name)
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"action {j}")
        axes[row, 0].set_ylabel(f"state {state}")
    axes[0, -1].legend(fontsize=7)
    title = "SOM against SAC" if len(actions) > 1 else "SOM"
    figure.suptitle(f"{env_id}: stochastic actions at the same states ({title})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("som", help="a saved SOM model (.zip)")
    parser.add_argument("sac", nargs="?", help="a saved SAC model (.zip) for the same task (optional)")
    parser.add_argument("--env", required=True)
    parser.add_argument("--states", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--md", required=True)
    parser.add_argument("--png", required=True)
    args = parser.parse_args()
    models: dict[str, BaseAlgorithm] = {"SOM": SOM.load(args.som, device="cpu")}
    if args.sac is not None:
        models["SAC"] = SAC.load(args.sac, device="cpu")
    for model in models.values():
        model.set_random_seed(args.seed)
    observations = visited_states(models["SOM"], args.env, args.states)
    actions = {name: sampled_actions(model, observations, args.samples) for name, model in models.items()}

    lines = [
        f"# Stochastic actions of trained {' and '.join(models)} policies: {args.env}",
        "",
        f"SOM: `{args.som}`; SAC: `{args.sac or 'not given'}`. {args.states} states evenly spaced over one "
        f"deterministic episode of SOM's policy (reset seed {FINAL_EVAL_SEED}), {args.samples} stochastic actions per "
        f"state and model, in the box [-1, 1]^d. Modes: peaks of a Gaussian KDE (bandwidth {BANDWIDTH}) per state and "
        f"dimension whose prominence is at least {MODE_PROMINENCE:.0%} of the highest density; on a face: "
        f"|a| > {FACE_THRESHOLD}.",
        "",
        "| model | (state, dimension) pairs with 2+ modes | mean modes | mean std | share on a face |",
        "|---|---|---|---|---|",
    ]
    for name, sampled in actions.items():
        row = summary(sampled)
        lines.append(
            f"| {name} | {row['share with 2+ modes']:.2f} | {row['mean modes']:.2f} | {row['mean std']:.3f} | "
            f"{row['share on a face']:.3f} |"
        )
    with open(args.md, "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    plot(actions, args.states, args.env, args.png)


if __name__ == "__main__":
    main()
