"""How broad the one-step policy ends on a narrow fixed target, by action dimension, and how even the weights are.

``run``: a stateless actor is trained on a fixed Gaussian target ``exp(-|a - c|^2 / (2 width^2))`` well inside the
box (``c``: 0.3 and -0.3 alternating; SOM's defaults, alpha 1, ``--iterations`` updates, the learning rate falling
to 0) for each dimension d of ``--dims`` (Pendulum 1, Hopper 3, HalfCheetah 6, Humanoid 17), width and seed, and
one JSON line per run is appended to ``--out``: the one-step and 20-step policies' standard deviation per coordinate
over the target's (1 is the target; the uniform distribution on [-1, 1] has 0.577 / width), the mean's error per
coordinate, and the seconds. ``ess``: the effective sample size of the K = 16 weights by t on the same targets,
2,000 states of p_t each, with the package's estimate (its anchor a draw of the posterior, as from a policy that
samples the target) and with K Gaussian proposals alone (``N(a_t / m_t, sigma_t^2)`` truncated to the box, weights
``softmax(Q)``). ``table`` prints both as markdown.

    python benchmarks/breadth_by_dimension.py run --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py ess --out benchmarks/results/breadth_by_dimension.jsonl
    python benchmarks/breadth_by_dimension.py table benchmarks/results/breadth_by_dimension.jsonl

A run of 6,000 updates takes 45-90 s on one core (d = 1 to 17).
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
from sb3_som.paths import LinearPath
from sb3_som.score import estimate_velocity, propose

K = 16
TIMES = (0.05, 0.1, 0.3, 0.6, 0.9)


def centre_of(dim: int) -> th.Tensor:
    return th.tensor([0.3 if i % 2 == 0 else -0.3 for i in range(dim)])


def gaussian_q(centre: th.Tensor, width: float):
    def q_function(proposals: th.Tensor, rows: th.Tensor) -> th.Tensor:
        return -((proposals - centre) ** 2).sum(-1) / (2 * width**2)

    return q_function


def trained_breadth(dim: int, width: float, iterations: int, seed: int) -> dict[str, float]:
    """The one-step and 20-step spread over the target's, and the one-step mean's error, after training."""
    centre = centre_of(dim)
    th.manual_seed(seed)
    actor = make_stateless_actor(dim, [256, 256])
    start = time.perf_counter()
    train_on_fixed_target(actor, gaussian_q(centre, width), LinearPath(), default_flow_config(alpha=1.0), iterations)
    seconds = time.perf_counter() - start
    one = sample_stateless(actor, 4000, 1, th.Generator().manual_seed(seed + 1))
    many = sample_stateless(actor, 4000, 20, th.Generator().manual_seed(seed + 1))
    return {
        "one_step_spread": one.std(0).mean().item() / width,
        "twenty_step_spread": many.std(0).mean().item() / width,
        "mean_error": (one.mean(0) - centre).abs().mean().item(),
        "seconds": seconds,
    }


def effective_sample_sizes(dim: int, width: float, t0: float, n: int = 2000) -> dict[str, float]:
    """Mean effective sample size of the K weights at time t0: the package's estimate and Gaussian proposals alone."""
    centre, path = centre_of(dim), LinearPath()
    generator = th.Generator().manual_seed(0)
    t = th.full((n, 1), t0)
    a0 = (centre + width * th.randn(n, dim, generator=generator)).clamp(-1, 1)
    a_t = path.noised(a0, t, th.randn(n, dim, generator=generator))
    q_function = gaussian_q(centre, width)
    th.manual_seed(0)
    estimate = estimate_velocity(path, a_t, t, q_function, 1.0, K, th.tensor(1.0), anchor=a0)
    proposals = propose(a_t, path.mean_coef(t), path.std(t), K)
    weights = th.softmax(q_function(proposals, th.arange(n)), dim=1)
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
        (row["d"], row["width"], row.get("seed"), row.get("t"), row.get("iterations")) for row in lines if row["kind"] == kind
    }


def table(paths: list[str]) -> None:
    rows = []
    for path in paths:
        with open(path) as lines:
            rows += [json.loads(line) for line in lines]
    runs = defaultdict(list)
    for row in rows:
        if row["kind"] == "run":
            runs[row["width"], row["d"], row["iterations"]].append(row)
    print("## One-step spread on a fixed Gaussian target\n")
    print("Cells: the policy's standard deviation per coordinate over the target's (1 is the target), per seed; the")
    print("20-step sampler of the same network in brackets.\n")
    print("| width | d | updates | one-step (20-step) per seed | one-step mean | mean's error per coordinate |")
    print("|---|---|---|---|---|---|")
    for (width, dim, iterations), entries in sorted(runs.items(), key=lambda item: (-item[0][0], item[0][1], item[0][2])):
        entries.sort(key=lambda row: row["seed"])
        cells = ", ".join(f"{row['one_step_spread']:.2f} ({row['twenty_step_spread']:.2f})" for row in entries)
        mean = np.mean([row["one_step_spread"] for row in entries])
        error = np.mean([row["mean_error"] for row in entries])
        print(f"| {width} | {dim} | {iterations} | {cells} | {mean:.2f} | {error:.3f} |")
    ess = defaultdict(dict)
    for row in rows:
        if row["kind"] == "ess":
            ess[row["width"], row["d"]][row["t"]] = row
    print(f"\n## Effective sample size of the K = {K} weights by t\n")
    print("Cells: the package's estimate / Gaussian proposals alone, mean over 2,000 states of p_t.\n")
    print("| width | d | " + " | ".join(f"t = {t0}" for t0 in TIMES) + " |")
    print("|---|---|" + "---|" * len(TIMES))
    for (width, dim), by_t in sorted(ess.items(), key=lambda item: (-item[0][0], item[0][1])):
        cells = [f"{by_t[t0]['ess']:.1f} / {by_t[t0]['ess_gaussian_only']:.1f}" if t0 in by_t else "" for t0 in TIMES]
        print(f"| {width} | {dim} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "ess", "table"))
    parser.add_argument("lines", nargs="*", help="table: the JSON lines files")
    parser.add_argument("--out", help="run, ess: the JSON lines file to append to (cells already there are skipped)")
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 3, 6, 17])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.1, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=6000)
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
                    if (dim, width, None, t0, None) not in finished:
                        append(
                            args.out,
                            {"kind": "ess", "d": dim, "width": width, "t": t0, **effective_sample_sizes(dim, width, t0)},
                        )
                continue
            for seed in args.seeds:
                if (dim, width, seed, None, args.iterations) not in finished:
                    result = trained_breadth(dim, width, args.iterations, seed)
                    append(
                        args.out,
                        {"kind": "run", "d": dim, "width": width, "seed": seed, "iterations": args.iterations, **result},
                    )


if __name__ == "__main__":
    main()
