"""How broad the one-step policy ends on a narrow fixed target, by action dimension, and how even the weights are.

``run``: a stateless actor is trained on a fixed target well inside the box, per coordinate a Gaussian
``exp(-(a - c)^2 / (2 width^2))`` or (``--shape laplace``, the piecewise-linear log density of a ReLU critic) a
Laplace ``exp(-|a - c| sqrt(2) / width)``, both of standard deviation ``width`` (``c``: 0.3 and -0.3 alternating;
SOM's defaults, alpha 1, ``--iterations`` updates, the learning rate falling to 0) for each dimension d of
``--dims`` (Pendulum 1, Hopper 3, HalfCheetah 6, Humanoid 17), width and seed, and one JSON line per run is appended
to ``--out``: the one-step and 20-step policies' standard deviation per coordinate over the target's (1 is the
target, by quadrature on the box), the mean's error per coordinate, and the seconds. ``ess``: the effective sample
size of the K = 16 weights by t on the same targets, 2,000 states of p_t each, with the package's estimate (its
anchor a draw of the posterior, as from a policy that samples the target) and with K Gaussian proposals alone
(``N(a_t / m_t, sigma_t^2)`` truncated to the box, weights ``softmax(Q)``). ``table`` prints both as markdown.

    python benchmarks/breadth_by_dimension.py run --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py run --shape laplace --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py ess --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py ess --shape laplace --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py table benchmarks/results/breadth_by_dimension.jsonl

A run of 6,000 updates takes 45-120 s on one core (d = 1 to 17).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixed-target harness the tests share
from fixed_target import default_flow_config, make_stateless_actor, sample_stateless, train_on_fixed_target
from reference_targets import SeparableBoxTarget
from sb3_som.paths import LinearPath
from sb3_som.score import estimate_velocity, noising_gaussian, propose

K = 16
TIMES = (0.05, 0.1, 0.3, 0.6, 0.9)
SHAPES = ("gaussian", "laplace")


def centre_of(dim: int) -> th.Tensor:
    return th.tensor([0.3 if i % 2 == 0 else -0.3 for i in range(dim)])


def fixed_target(dim: int, width: float, shape: str) -> SeparableBoxTarget:
    """The target ``exp(sum_i q(a_i))`` on the box: per coordinate a Gaussian or a Laplace of standard deviation
    ``width`` around ``centre_of(dim)``."""
    if shape == "gaussian":
        return SeparableBoxTarget([lambda a, c=c: -((a - c) ** 2) / (2 * width**2) for c in centre_of(dim).tolist()])
    scale = width / 2**0.5
    return SeparableBoxTarget([lambda a, c=c: -(a - c).abs() / scale for c in centre_of(dim).tolist()])


def target_std(target: SeparableBoxTarget) -> th.Tensor:
    """The target's standard deviation per coordinate (d,), by quadrature on the box."""
    stds = []
    for log_density in target.log_densities:
        probabilities = th.softmax(log_density(target.grid), dim=0)
        mean = (probabilities * target.grid).sum()
        stds.append((probabilities * (target.grid - mean) ** 2).sum().sqrt())
    return th.stack(stds).float()


def trained_breadth(dim: int, width: float, iterations: int, seed: int, shape: str = "gaussian") -> dict[str, float]:
    """The one-step and 20-step spread over the target's, and the one-step mean's error, after training."""
    centre, target = centre_of(dim), fixed_target(dim, width, shape)
    th.manual_seed(seed)
    actor = make_stateless_actor(dim, [256, 256])
    start = time.perf_counter()
    train_on_fixed_target(actor, target.q_function, LinearPath(), default_flow_config(alpha=1.0), iterations)
    seconds = time.perf_counter() - start
    one = sample_stateless(actor, 4000, 1, th.Generator().manual_seed(seed + 1))
    many = sample_stateless(actor, 4000, 20, th.Generator().manual_seed(seed + 1))
    std = target_std(target)
    return {
        "one_step_spread": (one.std(0) / std).mean().item(),
        "twenty_step_spread": (many.std(0) / std).mean().item(),
        "mean_error": (one.mean(0) - centre).abs().mean().item(),
        "seconds": seconds,
    }


def effective_sample_sizes(dim: int, width: float, t0: float, shape: str, n: int = 2000) -> dict[str, float]:
    """Mean effective sample size of the K weights at time t0: the package's estimate and Gaussian proposals alone."""
    target, path = fixed_target(dim, width, shape), LinearPath()
    generator = th.Generator().manual_seed(0)
    t = th.full((n, 1), t0)
    a0 = target.sample(n, generator).float()
    a_t = path.noised(a0, t, th.randn(n, dim, generator=generator))
    th.manual_seed(0)
    estimate = estimate_velocity(path, a_t, t, target.q_function, 1.0, K, th.tensor(1.0), anchor=a0)
    proposals = propose(noising_gaussian(a_t, path.mean_coef(t), path.std(t)), K)
    weights = th.softmax(target.q_function(proposals, th.arange(n)), dim=1)
    return {
        "ess": estimate.effective_sample_size.mean().item(),
        "ess_gaussian_only": (1 / weights.square().sum(1)).mean().item(),
    }


def append(out: str, line: dict) -> None:
    with open(out, "a") as file:
        file.write(json.dumps(line) + "\n")


def done(out: str, kind: str) -> set[tuple]:
    try:
        with open(out) as file:
            lines = [json.loads(line) for line in file]
    except FileNotFoundError:
        return set()
    return {
        (row["shape"], row["d"], row["width"], row.get("seed"), row.get("t"), row.get("iterations"))
        for row in lines
        if row["kind"] == kind
    }


def table(paths: list[str]) -> None:
    rows = []
    for path in paths:
        with open(path) as lines:
            rows += [json.loads(line) for line in lines]
    runs, ess = defaultdict(list), defaultdict(dict)
    for row in rows:
        if row["kind"] == "run":
            runs[row["shape"], row["width"], row["d"], row["iterations"]].append(row)
        else:
            ess[row["shape"], row["width"], row["d"]][row["t"]] = row
    print("## One-step spread on a fixed target\n")
    print("Cells: the policy's standard deviation per coordinate over the target's (1 is the target), per seed; the")
    print("20-step sampler of the flow network in brackets.\n")
    print("| shape | width | d | updates | one-step (20-step) per seed | one-step mean | mean's error per coordinate |")
    print("|---|---|---|---|---|---|---|")
    for (shape, width, dim, iterations), entries in sorted(runs.items(), key=sort_key):
        entries.sort(key=lambda row: row["seed"])
        cells = ", ".join(f"{row['one_step_spread']:.2f} ({row['twenty_step_spread']:.2f})" for row in entries)
        mean = np.mean([row["one_step_spread"] for row in entries])
        error = np.mean([row["mean_error"] for row in entries])
        print(f"| {shape} | {width} | {dim} | {iterations} | {cells} | {mean:.2f} | {error:.3f} |")
    print(f"\n## Effective sample size of the K = {K} weights by t\n")
    print("Cells: the package's estimate / Gaussian proposals alone, mean over 2,000 states of p_t.\n")
    print("| shape | width | d | " + " | ".join(f"t = {t0}" for t0 in TIMES) + " |")
    print("|---|---|---|" + "---|" * len(TIMES))
    for (shape, width, dim), by_t in sorted(ess.items(), key=sort_key):
        cells = [f"{by_t[t0]['ess']:.1f} / {by_t[t0]['ess_gaussian_only']:.1f}" if t0 in by_t else "" for t0 in TIMES]
        print(f"| {shape} | {width} | {dim} | " + " | ".join(cells) + " |")


def sort_key(item: tuple) -> tuple:
    """Table order: shape, then width from broad to narrow, then dimension (and updates)."""
    shape, width, *rest = item[0]
    return (SHAPES.index(shape), -width, *rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "ess", "table"))
    parser.add_argument("lines", nargs="*", help="table: the JSON lines files")
    parser.add_argument("--out", help="run, ess: the JSON lines file to append to (cells already there are skipped)")
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 3, 6, 17])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.1, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--shape", choices=SHAPES, default="gaussian")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.command == "table":
        table(args.lines)
        return
    finished = done(args.out, args.command)
    for width in args.widths:
        for dim in args.dims:
            if args.command == "ess":
                for t0 in TIMES:
                    if (args.shape, dim, width, None, t0, None) not in finished:
                        result = effective_sample_sizes(dim, width, t0, args.shape)
                        append(args.out, {"kind": "ess", "shape": args.shape, "d": dim, "width": width, "t": t0, **result})
                continue
            for seed in args.seeds:
                if (args.shape, dim, width, seed, None, args.iterations) not in finished:
                    result = trained_breadth(dim, width, args.iterations, seed, args.shape)
                    line = {"kind": "run", "shape": args.shape, "d": dim, "width": width, "seed": seed}
                    append(args.out, {**line, "iterations": args.iterations, **result})


if __name__ == "__main__":
    main()
