"""One-step fidelity harness: train SOM's actor against a fixed Q and compare its samplers.

With a fixed ``Q`` there is no critic to learn, so what is measured is the flow alone: does the
one-step map ``a = e - u(e, 0, 1)`` sample the Boltzmann target as well as the same network's
k-step sampler does? Used by the tests and by the benchmarks.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_som.meanflow import network_velocity_jvp
from sb3_som.objective import FlowTargetConfig, actor_batch_size, actor_losses
from sb3_som.paths import LinearPath, NoisePath
from sb3_som.policies import MeanFlowActor, MeanFlowPolicy
from sb3_som.score import QFunction
from sb3_som.som import SOM

SOM_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(SOM.__init__).parameters.items()}
# states per actor update at SOM's defaults
DEFAULT_ACTOR_BATCH = actor_batch_size(SOM_DEFAULTS["batch_size"])


def default_flow_config(**overrides: Any) -> FlowTargetConfig:
    """The actor objective's settings at SOM's constructor defaults with ``overrides``
    applied."""
    fields = {field.name for field in dataclasses.fields(FlowTargetConfig)} & SOM_DEFAULTS.keys()
    return FlowTargetConfig(**{**{name: SOM_DEFAULTS[name] for name in fields}, **overrides})


def make_stateless_actor(action_dim: int, net_arch: list[int]) -> MeanFlowActor:
    """A MeanFlow actor for a single-state problem (a bandit): its observation is a constant 0; the other
    settings are the policy's defaults (``MeanFlowPolicy``'s signature)."""
    defaults = {name: p.default for name, p in inspect.signature(MeanFlowPolicy.__init__).parameters.items()}
    observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    action_space = spaces.Box(-1.0, 1.0, (action_dim,), dtype=np.float32)
    return MeanFlowActor(
        observation_space,
        action_space,
        net_arch=net_arch,
        features_extractor=th.nn.Flatten(),
        features_dim=1,
        activation_fn=defaults["activation_fn"],
        time_frequencies=defaults["time_frequencies"],
        sampling_steps=defaults["sampling_steps"],
    )


def train_on_fixed_target(
    actor: MeanFlowActor,
    q_function: QFunction,
    path: NoisePath,
    config: FlowTargetConfig,
    iterations: int,
    batch_size: int = DEFAULT_ACTOR_BATCH,
    learning_rate: float = 1e-3,
    decay_learning_rate: bool = True,
) -> list[float]:
    """Train a stateless actor on ``exp(alpha Q)`` (its flow's samples as ``a_0``, its one-step
    network distilled onto them).

    Q is used as given (``q_scale = 1``), so with ``alpha = 1`` the target is ``exp(Q)`` exactly. By
    default the learning rate decays linearly to zero, so that the network settles instead of jittering
    on the Monte-Carlo noise of its target. Returns the total loss per iteration.
    """
    optimizer = th.optim.Adam(actor.parameters(), lr=learning_rate)
    decay = (lambda i: 1.0 - i / iterations) if decay_learning_rate else (lambda i: 1.0)
    schedule = th.optim.lr_scheduler.LambdaLR(optimizer, decay)
    features = th.zeros(batch_size, 1)
    velocity = actor.velocity_at(features)
    velocity_jvp = network_velocity_jvp(partial(actor.network_input_and_rate, features), actor.velocity_net)
    history = []
    for _ in range(iterations):
        noise = th.randn(batch_size, actor.action_dim)
        one_step_velocity = actor.one_step_velocity(features, noise)
        losses = actor_losses(
            u_fn=velocity,
            noise=noise,
            one_step_velocity=one_step_velocity,
            path=path,
            q_function=q_function,
            config=config,
            q_scale=th.tensor(1.0),
            u_jvp=velocity_jvp,
        )
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
        schedule.step()
        history.append(losses.total.item())
    return history


@th.no_grad()
def sample_stateless(actor: MeanFlowActor, n: int, steps: int, generator: th.Generator) -> th.Tensor:
    """n actions (n, d) of a stateless actor with ``steps`` MeanFlow steps."""
    noise = th.randn(n, actor.action_dim, generator=generator)
    return actor.sample(th.zeros(n, 1), noise, steps=steps)


def fit_and_sample(
    q_function: QFunction,
    iterations: int,
    seed: int,
    n_samples: int,
    config: FlowTargetConfig | None = None,
    batch_size: int = DEFAULT_ACTOR_BATCH,
) -> tuple[th.Tensor, th.Tensor, th.Generator]:
    """Train a 256x256 stateless actor on ``exp(Q)`` (SOM's default flow settings, alpha = 1, linear path) with
    ``batch_size`` samples per update (default: the states of SOM's actor update at its defaults).

    Returns its one-step and 20-step samples (n_samples, 2) from the same noise, and the generator used,
    for drawing reference samples.
    """
    th.manual_seed(seed)
    actor = make_stateless_actor(2, [256, 256])
    train_on_fixed_target(actor, q_function, LinearPath(), config or default_flow_config(alpha=1.0), iterations, batch_size)
    generator = th.Generator().manual_seed(seed + 1)
    noise_state = generator.get_state()
    one_step = sample_stateless(actor, n_samples, 1, generator)
    generator.set_state(noise_state)
    return one_step, sample_stateless(actor, n_samples, 20, generator), generator


def energy_distance(x: th.Tensor, y: th.Tensor) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between samples (n, d) and (m, d)."""
    return (2 * th.cdist(x, y).mean() - th.cdist(x, x).mean() - th.cdist(y, y).mean()).item()
