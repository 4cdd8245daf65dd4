"""Speed of SOM against SB3's SAC, side by side in one process, same nets and batch.

Measures, as medians of ``--repeats`` repeats:
(a) predict latency for one observation and for a batch of 256;
(b) time per gradient step (``model.train(gradient_steps, batch_size)`` on a filled buffer), eager and with
    ``compile_step=True``;
(c) the same SOM actor sampled with k = 1, 2, 5, 10, 20 steps;
(d) SOM's gradient step with one setting changed at a time (``LEVERS``: K and the distillation's steps), each
    timed in alternation with SAC's;
(e) the score estimation's achieved GFLOP/s against this machine's measured fp32 matmul rate;
(f) ``learn()``: environment steps per second with a gradient step after each, SOM (eager and compiled) and SAC
    in alternation, ``--learn-steps`` steps per timing.
Times are reported together with their ratio to SAC's, which is what transfers between machines. In (a)
and (b) SOM and SAC are timed in alternation and the ratio is the median of the per-pair ratios.

    python benchmarks/speed.py --env HalfCheetah-v5 --device cpu > benchmarks/results/speed_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch as th
from stable_baselines3 import SAC

from sb3_som import SOM
from sb3_som.critic_values import proposal_q_function
from sb3_som.objective import MEAN_FLOW_FRACTION, PATH
from sb3_som.paths import sample_r_t
from sb3_som.score import estimate_velocity, first_stage_size

NET = dict(net_arch=[256, 256])
# part (d): one change at a time from SOM's defaults
LEVERS: list[dict[str, object]] = [
    {},
    {"n_score_samples": 8},
    {"n_score_samples": 32},
    {"distillation_steps": 4},
    {"distillation_steps": 1},
]


def timed_seconds(fn: Callable[[], object], number: int, device: str) -> float:
    """Wall time of ``number`` calls of fn, the device's queued work included."""
    if device.startswith("cuda"):
        th.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    if device.startswith("cuda"):
        th.cuda.synchronize()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, number: int, device: str) -> float:
    """Median over ``repeats`` of the mean time of ``number`` calls of fn."""
    fn()  # warm-up
    return statistics.median(timed_seconds(fn, number, device) / number for _ in range(repeats))


def paired_median_seconds(
    fn_som: Callable[[], object], fn_sac: Callable[[], object], repeats: int, number: int, device: str
) -> tuple[float, float, float]:
    """SOM and SAC timed in alternation, ``repeats`` pairs of ``number`` calls each.

    Returns the median time per call of each and the median of the per-pair ratios SOM / SAC, so that
    a machine that speeds up or slows down during the run shifts both sides of every ratio alike.
    """
    pairs = [(median_seconds(fn_som, 1, number, device), median_seconds(fn_sac, 1, number, device)) for _ in range(repeats)]
    som_seconds, sac_seconds = zip(*pairs, strict=True)
    ratio = statistics.median(som / sac for som, sac in pairs)
    return statistics.median(som_seconds), statistics.median(sac_seconds), ratio


def critic_row_flops(model: SOM) -> int:
    """Multiply-add FLOPs of one Q network on one (state, action) row: 2 * sum of in * out."""
    return sum(2 * layer.in_features * layer.out_features for layer in model.critic.q_networks[0].modules()
               if isinstance(layer, th.nn.Linear))  # fmt: skip


def score_gflops(som: SOM, batch: int, repeats: int, device: str) -> None:
    """Part (e): time one score estimation at the defaults and count its critic FLOPs.

    Forward rows: batch * K through the first Q network; the first stage's rows (a quarter of K) add one backward
    pass to the input (about the forward's FLOPs again). Compared with a plain matmul of the same row count through
    one 256 x 256 layer.
    """
    config = som.flow_config
    observations = som.replay_buffer.sample(batch).observations
    with th.no_grad():
        features = som.critic.extract_features(observations, som.critic.features_extractor)
    a_t = 2 * th.rand(batch, som.actor.action_dim, device=som.device) - 1
    _, t = sample_r_t(batch, MEAN_FLOW_FRACTION, device=som.device)
    gradient_rows = batch * first_stage_size(config.n_score_samples)
    flops = critic_row_flops(som) * (config.n_score_samples * batch + gradient_rows)
    q_function = proposal_q_function(som.critic, features, "first")

    def estimate() -> None:
        estimate_velocity(PATH, a_t, t, q_function, config.alpha, config.n_score_samples, q_scale=th.tensor(1.0))

    seconds = median_seconds(estimate, repeats, 10, device)
    rows = batch * config.n_score_samples
    left, right = th.randn(rows, 256, device=som.device), th.randn(256, 256, device=som.device)
    matmul_seconds = median_seconds(lambda: left @ right, repeats, 50, device)
    matmul_rate = 2 * rows * 256 * 256 / matmul_seconds / 1e9
    print(f"\n## Score estimation throughput (defaults: K = {config.n_score_samples}, batch {batch})\n")
    print("| quantity | value |\n|---|---|")
    print(f"| critic FLOPs per estimate (with the first stage's gradients) | {flops / 1e9:.3f} GFLOP |")
    print(f"| time per estimate | {seconds * 1e3:.2f} ms |")
    print(f"| achieved | {flops / seconds / 1e9:.0f} GFLOP/s |")
    print(f"| fp32 matmul ({rows} x 256 x 256), measured | {matmul_rate:.0f} GFLOP/s |")
    print(f"| achieved / matmul | {flops / seconds / 1e9 / matmul_rate:.2f} |")


def step_cell(som: SOM, sac: SAC, args: argparse.Namespace, **settings: object) -> str:
    """SOM's gradient step with ``settings`` applied, timed in alternation with SAC's: "ms (ratio to SAC)".

    The settings are put back afterwards.
    """
    defaults = {name: getattr(som, name) for name in settings}
    for name, value in settings.items():
        setattr(som, name, value)
    t_som, _, ratio = paired_median_seconds(
        lambda: som.train(args.grad_steps, args.batch_size),
        lambda: sac.train(args.grad_steps, args.batch_size),
        max(3, args.repeats // 2),
        1,
        args.device,
    )
    for name, value in defaults.items():
        setattr(som, name, value)
    return f"{t_som / args.grad_steps * 1e3:.1f} | {ratio:.2f}"


def learn_rates(som: SOM, sac: SAC, args: argparse.Namespace) -> None:
    """Part (f): ``learn(--learn-steps)`` on the filled models, timed three times each in alternation (SOM eager,
    SOM compiled, SAC), as environment steps per second; the compiled step is compiled before the timings."""
    som.compile_step = True
    som.train(1, args.batch_size)  # compiles
    seconds: dict[str, list[float]] = {"SOM": [], "SOM, compile_step=True": [], "SAC": []}
    for _ in range(3):
        for name, model, compiled in (("SOM", som, False), ("SOM, compile_step=True", som, True), ("SAC", sac, False)):
            if isinstance(model, SOM):
                model.compile_step = compiled
            learn = partial(model.learn, args.learn_steps, reset_num_timesteps=False)
            seconds[name].append(timed_seconds(learn, 1, args.device))
    som.compile_step = False
    print(f"\n## learn(): environment steps per second, a gradient step after each ({args.learn_steps} steps per timing, "
          "median of 3, in alternation)\n")  # fmt: skip
    print("| model | steps / s | vs SAC |\n|---|---|---|")
    sac_rate = args.learn_steps / statistics.median(seconds["SAC"])
    for name, times in seconds.items():
        rate = args.learn_steps / statistics.median(times)
        print(f"| {name} | {rate:.0f} | {rate / sac_rate:.2f} |")


def filled(model: SOM | SAC, steps: int) -> SOM | SAC:
    """Fill the replay buffer with ``steps`` random-action steps (no training)."""
    model.learning_starts = steps
    model.learn(steps)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--grad-steps", type=int, default=10, help="gradient steps per timed repeat")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--skip-sweep", action="store_true", help="skip part (d)")
    parser.add_argument("--learn-steps", type=int, default=1000, help="steps per learn() timing in part (f); 0 skips it")
    args = parser.parse_args()
    device, batch = args.device, args.batch_size
    som = filled(SOM("MlpMeanFlowPolicy", args.env, batch_size=batch, policy_kwargs=NET, device=device, seed=0), 1000)
    sac = filled(SAC("MlpPolicy", args.env, batch_size=batch, policy_kwargs=NET, device=device, seed=0), 1000)
    obs_one = som.observation_space.sample()
    obs_batch = np.stack([som.observation_space.sample() for _ in range(256)])
    print(f"# Speed: SOM vs SAC on {args.env}, device {device}, torch {th.__version__}, threads {th.get_num_threads()}")
    if device.startswith("cuda"):
        print(f"GPU: {th.cuda.get_device_name()}")
    print(f"nets 256x256, batch {batch}, medians of {args.repeats} repeats (SOM and SAC alternating in the first table)\n")

    print("| measurement | SOM (ms) | SAC (ms) | SOM / SAC |\n|---|---|---|---|")
    for label, obs, number in (("predict, 1 observation", obs_one, 200), ("predict, batch of 256", obs_batch, 50)):
        for deterministic in (False, True):
            t_som, t_sac, ratio = paired_median_seconds(
                lambda o=obs, d=deterministic: som.predict(o, deterministic=d),
                lambda o=obs, d=deterministic: sac.predict(o, deterministic=d),
                args.repeats,
                number,
                device,
            )
            name = f"{label}, {'deterministic' if deterministic else 'stochastic'}"
            print(f"| {name} | {t_som * 1e3:.3f} | {t_sac * 1e3:.3f} | {ratio:.2f} |")
    t_som, t_sac, ratio = paired_median_seconds(
        lambda: som.train(args.grad_steps, batch), lambda: sac.train(args.grad_steps, batch), args.repeats, 1, device
    )
    t_som, t_sac = t_som / args.grad_steps, t_sac / args.grad_steps
    name = f"gradient step (defaults: K = {som.n_score_samples})"
    print(f"| {name} | {t_som * 1e3:.2f} | {t_sac * 1e3:.2f} | {ratio:.2f} |")
    som.compile_step = True
    start = time.perf_counter()
    som.train(1, batch)  # compiles
    compile_seconds = time.perf_counter() - start
    t_som, t_sac, ratio = paired_median_seconds(
        lambda: som.train(args.grad_steps, batch), lambda: sac.train(args.grad_steps, batch), args.repeats, 1, device
    )
    som.compile_step = False
    t_som, t_sac = t_som / args.grad_steps, t_sac / args.grad_steps
    name = f"gradient step, compile_step=True (its first call compiles: {compile_seconds:.0f} s)"
    print(f"| {name} | {t_som * 1e3:.2f} | {t_sac * 1e3:.2f} | {ratio:.2f} |")

    print("\n## k-step sampling of the same SOM actor (batch of 256, stochastic)\n")
    print("| k | ms | vs k = 1 |\n|---|---|---|")
    obs_tensor = som.policy.obs_to_tensor(obs_batch)[0]
    with th.no_grad():
        features = som.actor.extract_features(obs_tensor, som.actor.features_extractor)
    noise = th.randn(256, som.actor.action_dim, device=som.device)
    base = None
    for k in (1, 2, 5, 10, 20):
        with th.no_grad():
            seconds = median_seconds(lambda k=k: som.actor.sample(features, noise, steps=k), args.repeats, 20, device)
        base = base or seconds
        print(f"| {k} | {seconds * 1e3:.3f} | {seconds / base:.1f} |")

    score_gflops(som, batch, args.repeats, device)
    if args.learn_steps:
        learn_rates(som, sac, args)
    if args.skip_sweep:
        return
    print("\n## Levers: SOM's gradient step with one setting changed (alternating with SAC's step)\n")
    print("| setting | SOM (ms) | SOM / SAC |\n|---|---|---|")
    for settings in LEVERS:
        label = ", ".join(f"{name}={value!r}" for name, value in settings.items()) or "defaults"
        print(f"| {label} | {step_cell(som, sac, args, **settings)} |")


if __name__ == "__main__":
    main()
