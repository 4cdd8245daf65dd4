"""Speed of SOM against SB3's SAC, side by side in one process, same nets and batch.

Measures, as medians of ``--repeats`` repeats:
(a) predict latency for one observation and for a batch of 256;
(b) time per gradient step (``model.train(gradient_steps, batch_size)`` on a filled buffer);
(c) the same SOM actor sampled with k = 1, 2, 5, 10, 20 steps;
(d) SOM's gradient step as ``n_score_samples`` grows, per estimator.
Times are reported together with their ratio to SAC's, which is what transfers between machines.

    python benchmarks/speed.py --env HalfCheetah-v5 --device cpu > benchmarks/results/speed_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch as th
from stable_baselines3 import SAC

from sb3_som import SOM

NET = dict(net_arch=[256, 256])


def median_seconds(fn: Callable[[], object], repeats: int, number: int, device: str) -> float:
    """Median over ``repeats`` of the mean time of ``number`` calls of fn."""
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            th.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if device.startswith("cuda"):
            th.cuda.synchronize()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


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
    args = parser.parse_args()
    device, batch = args.device, args.batch_size
    som = filled(SOM("MlpMeanFlowPolicy", args.env, batch_size=batch, policy_kwargs=NET, device=device, seed=0), 1000)
    sac = filled(SAC("MlpPolicy", args.env, batch_size=batch, policy_kwargs=NET, device=device, seed=0), 1000)
    obs_one = som.observation_space.sample()
    obs_batch = np.stack([som.observation_space.sample() for _ in range(256)])
    print(f"# Speed: SOM vs SAC on {args.env}, device {device}, torch {th.__version__}, threads {th.get_num_threads()}")
    if device.startswith("cuda"):
        print(f"GPU: {th.cuda.get_device_name()}")
    print(f"nets 256x256, batch {batch}, medians of {args.repeats} repeats\n")

    print("| measurement | SOM (ms) | SAC (ms) | SOM / SAC |\n|---|---|---|---|")
    for label, obs, number in (("predict, 1 observation", obs_one, 200), ("predict, batch of 256", obs_batch, 50)):
        for deterministic in (False, True):
            t_som = median_seconds(
                lambda o=obs, d=deterministic: som.predict(o, deterministic=d), args.repeats, number, device
            )
            t_sac = median_seconds(
                lambda o=obs, d=deterministic: sac.predict(o, deterministic=d), args.repeats, number, device
            )
            name = f"{label}, {'deterministic' if deterministic else 'stochastic'}"
            print(f"| {name} | {t_som * 1e3:.3f} | {t_sac * 1e3:.3f} | {t_som / t_sac:.2f} |")
    t_som = median_seconds(lambda: som.train(args.grad_steps, batch), args.repeats, 1, device) / args.grad_steps
    t_sac = median_seconds(lambda: sac.train(args.grad_steps, batch), args.repeats, 1, device) / args.grad_steps
    name = f"gradient step (defaults, K = {som.n_score_samples})"
    print(f"| {name} | {t_som * 1e3:.2f} | {t_sac * 1e3:.2f} | {t_som / t_sac:.2f} |")

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

    if args.skip_sweep:
        return
    print("\n## SOM gradient step by n_score_samples and estimator (ms; ratio to SAC's step)\n")
    print("| K | gradient | posterior | hybrid |\n|---|---|---|---|")
    for k in (8, 16, 32, 64, 128):
        cells = []
        for estimator in ("gradient", "posterior", "hybrid"):
            som.n_score_samples, som.score_estimator = k, estimator
            som._setup_flow()
            seconds = median_seconds(lambda: som.train(args.grad_steps, batch), max(3, args.repeats // 2), 1, device)
            seconds /= args.grad_steps
            cells.append(f"{seconds * 1e3:.1f} ({seconds / t_sac:.1f}x)")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
