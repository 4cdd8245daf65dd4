"""One-step vs k-step fidelity on fixed targets: picks the flow defaults of SOM.

For each variant of (time sampler, share of r != t, adaptive-loss power, self-distillation), an actor
is trained against a fixed Q (``sb3_som.fidelity``; alpha = 1, so the target is ``exp(Q)`` exactly)
and its one-step samples are compared with its own 20-step samples and with exact target samples:

- ``gauss``: N((0.4, -0.3), 0.15^2 I);
- ``mixture``: the multi-goal bandit's six bumps (sigma 0.1, weights 2 and 1 alternating).

Columns: energy distances (one-step vs exact, 20-step vs exact, one-step vs 20-step), share of one-step
samples within 3 sigma of a mode, heavy:light mass ratio among them (exact: 2), modes covered (>= 5%).

    python benchmarks/one_step_fidelity.py --iterations 4000 --workers 2 --constant-lr \
        > benchmarks/results/one_step_fidelity.md

(the committed results used ``--constant-lr``: the harness's learning-rate decay came later).
"""

from __future__ import annotations

import argparse
import itertools
import time
from multiprocessing import Pool

import torch as th

from fixed_target import (
    default_flow_config,
    energy_distance,
    make_stateless_actor,
    sample_stateless,
    train_on_fixed_target,
)
from reference_targets import GaussianTarget
from sb3_som.envs import multi_goal_mixture
from sb3_som.paths import make_path

N_SAMPLES = 2000


def run(job: tuple[str, str, float, float, int, int, int, bool]) -> dict:
    target_name, sampler, fraction, power, distillation, iterations, seed, decay = job
    th.set_num_threads(1)
    th.manual_seed(seed)
    generator = th.Generator().manual_seed(seed + 1)
    if target_name == "gauss":
        target = GaussianTarget(th.tensor([0.4, -0.3]), 0.15)
        exact = target.mu + target.sigma * th.randn(N_SAMPLES, 2, generator=generator)
    else:
        target = multi_goal_mixture()
        exact = target.sample(N_SAMPLES, generator)
    actor = make_stateless_actor(2, [256, 256])
    config = default_flow_config(
        alpha=1.0,
        time_sampler=sampler,
        mean_flow_fraction=fraction,
        loss_weight_power=power,
        distillation_steps=distillation,
    )
    start = time.perf_counter()
    train_on_fixed_target(actor, target.q_function, make_path("linear"), config, iterations, decay_learning_rate=decay)
    seconds = time.perf_counter() - start
    one = sample_stateless(actor, N_SAMPLES, 1, generator)
    many = sample_stateless(actor, N_SAMPLES, 20, generator)
    result = dict(
        target=target_name,
        sampler=sampler,
        fraction=fraction,
        power=power,
        distillation=distillation,
        seed=seed,
        seconds=seconds,
        ed_one=energy_distance(one, exact),
        ed_many=energy_distance(many, exact),
        ed_one_many=energy_distance(one, many),
    )
    if target_name == "gauss":
        result.update(mean_error=(one.mean(0) - target.mu).norm().item(), std_ratio=(one.std(0) / target.sigma).mean().item())
    else:
        modes = target.nearest_mode(one)
        counts = th.stack([(modes == i).sum() for i in range(len(target.weights))]).float()
        heavy, light = counts[0::2].sum().item(), counts[1::2].sum().item()
        result.update(
            on_modes=(modes >= 0).float().mean().item(),
            heavy_light=heavy / max(light, 1.0),
            modes_covered=int((counts >= 0.05 * N_SAMPLES).sum().item()),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--constant-lr", action="store_true", help="no learning-rate decay (as in the committed run)")
    args = parser.parse_args()
    jobs = [
        (target, sampler, fraction, power, distillation, args.iterations, seed, not args.constant_lr)
        for target, sampler, fraction, power, distillation, seed in itertools.product(
            ("gauss", "mixture"), ("logit_normal", "uniform"), (0.25, 0.75), (1.0, 0.5), (0, 8), args.seeds
        )
    ]
    with Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    schedule = "constant learning rate" if args.constant_lr else "decaying learning rate"
    setup = f"{args.iterations} iterations, {schedule}, batch 256, 256x256 actor, K = 32, linear path"
    print(f"# One-step fidelity on fixed targets ({setup})\n")
    for target_name in ("gauss", "mixture"):
        extra = ("mean_error", "std_ratio") if target_name == "gauss" else ("on_modes", "heavy_light", "modes_covered")
        variant = ("sampler", "fraction", "power", "distillation", "seed")
        columns = (*variant, "ed_one", "ed_many", "ed_one_many", *extra, "seconds")
        print(f"\n## {target_name}\n")
        print("| " + " | ".join(columns) + " |")
        print("|---" * len(columns) + "|")
        for result in results:
            if result["target"] == target_name:
                cells = [f"{result[c]:.4g}" if isinstance(result[c], float) else str(result[c]) for c in columns]
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
