"""Cost of the MeanFlow target's JVP in SOM's actor update: ``torch.func.jvp`` against the layer-by-layer form.

Both compute ``u`` (with its graph) and ``du/dt`` along the flow for the default actor (256x256,
HalfCheetah-v5 dimensions, batch 256), then back-propagate the MeanFlow loss; timed in alternation,
medians of 11 pairs of 20 calls:

    python benchmarks/jvp_cost.py > benchmarks/results/jvp_cost_cpu.txt
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import torch as th

from sb3_som import SOM
from sb3_som.meanflow import adaptive_weighted_loss, meanflow_target, network_velocity_jvp


def milliseconds(fn: Callable[[], None], number: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e3


def main() -> None:
    som = SOM("MlpMeanFlowPolicy", "HalfCheetah-v5", policy_kwargs=dict(net_arch=[256, 256]), seed=0, device="cpu")
    batch, action_dim = 256, som.actor.action_dim
    features = th.randn(batch, som.actor.features_dim)
    a_t, velocity = th.randn(batch, action_dim), th.randn(batch, action_dim)
    t = th.rand(batch, 1)
    r = t * th.rand(batch, 1)
    u_fn, u_jvp = (
        som.actor.velocity_at(features),
        network_velocity_jvp(partial(som.actor.network_input, features), som.actor.velocity_net),
    )

    def generic() -> None:
        u, target = meanflow_target(u_fn, a_t, r, t, velocity)
        adaptive_weighted_loss(u, target, 0.5).backward()

    def layer_by_layer() -> None:
        u, target = meanflow_target(u_fn, a_t, r, t, velocity, u_jvp)
        adaptive_weighted_loss(u, target, 0.5).backward()

    for _ in range(3):
        generic()
        layer_by_layer()
    pairs = [(milliseconds(generic), milliseconds(layer_by_layer)) for _ in range(11)]
    print(f"torch {th.__version__}, threads {th.get_num_threads()}, batch {batch}, actor 256x256, action_dim {action_dim}")
    print(f"torch.func.jvp + backward: {statistics.median(p[0] for p in pairs):.2f} ms")
    print(f"layer by layer + backward: {statistics.median(p[1] for p in pairs):.2f} ms")
    print(f"ratio (median of pairs): {statistics.median(p[1] / p[0] for p in pairs):.2f}")


if __name__ == "__main__":
    main()
