"""The SOM actor objective: MeanFlow regression onto the critic's velocity field.

One call of :func:`actor_losses` (pure torch) is one actor update's loss:

1. draw the clean actions ``a_0`` with the flow network's k-step sampler and noise them into ``a_t`` at sampled
   times ``(r, t)``;
2. estimate the probability-flow velocity of ``exp(alpha Qn)`` at ``(a_t, t)`` from K critic rows
   per state, ``a_0`` among them (:func:`sb3_som.score.estimate_velocity`);
3. MeanFlow target ``v - (t - r) du/dt`` by one JVP, adaptive-weighted regression of the flow network;
4. distillation of the one-step network ``u(e, 0, 1)`` onto the flow network's k-step sample from the same noise.

:func:`actor_objective` assembles it for SOM's actor and critic (the two networks, the valuing critic and the Q
scale) and returns the loss with its logs by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch as th
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_som.critic_values import action_profile, floored_q_scale, proposal_q_function
from sb3_som.meanflow import (
    AverageVelocity,
    AverageVelocityJVP,
    FlowSampler,
    adaptive_weighted_loss,
    meanflow_target,
    network_velocity_jvp,
    sample_actions,
)
from sb3_som.paths import LinearPath, NoisePath, sample_r_t
from sb3_som.policies import MeanFlowActor
from sb3_som.score import QFunction, VelocityTarget, estimate_velocity

# share of each batch trained with r != t (the rest learns the instantaneous velocity)
MEAN_FLOW_FRACTION = 0.75
# power p of MeanFlow's adaptive loss weight 1 / (||delta||^2 + c)^p
LOSS_WEIGHT_POWER = 0.5
# share of the critic's batch whose first states the actor's update uses
ACTOR_BATCH_FRACTION = 0.5
# an action coordinate beyond this (in the normalised box [-1, 1]) counts as on a face, for the face_fraction log
FACE_THRESHOLD = 0.98
# the path from actions (t = 0) to noise (t = 1)
PATH = LinearPath()


@dataclass(frozen=True)
class FlowTargetConfig:
    """The knobs of the actor objective (SOM's constructor arguments of the same names, which hold the defaults)."""

    alpha: float
    n_score_samples: int
    distillation_steps: int


@dataclass
class ActorLosses:
    """Losses of one actor update (scalars with graph), the clean actions (B, d) and the velocity target behind them."""

    total: th.Tensor
    meanflow: th.Tensor
    distillation: th.Tensor
    a0: th.Tensor
    target: VelocityTarget


def actor_losses(
    u_fn: AverageVelocity,
    noise: th.Tensor,
    one_step_velocity: th.Tensor,
    path: NoisePath,
    q_function: QFunction,
    config: FlowTargetConfig,
    q_scale: th.Tensor,
    u_jvp: AverageVelocityJVP | None = None,
    sampler: FlowSampler | None = None,
) -> ActorLosses:
    """Loss of the MeanFlow actor: the flow ``u_fn(a_t, r, t)`` (state features already bound) and its one-step map.

    ``u_fn``'s ``distillation_steps``-step sample from ``noise`` (no gradient) is both the flow's clean actions
    ``a_0`` (in the box) and the one-step map's target: the flow loss trains ``u_fn`` at the actions it samples itself,
    and the distillation loss trains the one-step map onto them. The two losses share no parameters when the
    one-step map is a network of its own (:class:`MeanFlowActor`'s ``one_step_net``), so their sum trains each
    network on its own loss, and the one-step map never steers the flow.

    :param noise: (B, d) standard normal noise, the input of the flow's sampler and of the one-step map
    :param one_step_velocity: (B, d) the one-step map ``u(noise, 0, 1)`` with its graph
    :param q_function: Q of proposals (B', K, d) at batch rows (B',) -> (B', K)
    :param q_scale: the Q spread that ``alpha`` is relative to, a scalar
    :param u_jvp: ``u_fn`` and its time derivative along the flow in one call (None: ``torch.func.jvp``)
    :param sampler: ``u_fn``'s k-step sampler (None: :func:`sample_actions` of ``u_fn``)
    """
    with th.no_grad():
        if sampler is None:
            sample = sample_actions(u_fn, noise, config.distillation_steps)
        else:
            sample = sampler(noise, config.distillation_steps)
    a0 = sample.clamp(-1.0, 1.0)
    batch_size = a0.shape[0]
    r, t = sample_r_t(batch_size, MEAN_FLOW_FRACTION, device=a0.device)
    a_t = path.noised(a0, t, th.randn_like(a0))
    target = estimate_velocity(
        path, a_t, t, q_function, alpha=config.alpha, n_samples=config.n_score_samples, q_scale=q_scale, anchor=a0
    )
    u, u_target = meanflow_target(u_fn, a_t, r, t, target.velocity, u_jvp)
    meanflow = adaptive_weighted_loss(u, u_target, power=LOSS_WEIGHT_POWER)
    distillation = adaptive_weighted_loss(one_step_velocity, noise - sample, power=LOSS_WEIGHT_POWER)
    return ActorLosses(meanflow + distillation, meanflow, distillation, a0, target)


def actor_batch_size(batch_size: int) -> int:
    """States of a batch of ``batch_size`` that the actor's update uses: the first ``ceil(ACTOR_BATCH_FRACTION * B)``."""
    return math.ceil(ACTOR_BATCH_FRACTION * batch_size)


def target_q_scale(
    critic: ContinuousCritic, critic_features: th.Tensor, q_scale_floor: str, td_error_rms: th.Tensor
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """The Q scale that ``alpha`` is relative to, with its parts: (scale, spread, disagreement), scalars.

    The spread of the first Q network across uniform actions at the first states of critic features (B, f)
    (``critic_values.action_profile``), never below ``q_scale_floor``'s floor: "critic_disagreement", the Q
    networks' disagreement about the action profile; "td_error", ``td_error_rms``, the critic's RMS TD error.
    """
    spread, disagreement = action_profile(critic, critic_features, "first")
    floor = disagreement if q_scale_floor == "critic_disagreement" else td_error_rms
    return floored_q_scale(spread, floor), spread, disagreement


def first_rows(observations: PyTorchObs, n: int) -> PyTorchObs:
    """The first ``n`` rows of a batch of observations (a tensor, or a dict of tensors for Dict spaces)."""
    if isinstance(observations, dict):
        return {key: value[:n] for key, value in observations.items()}
    return observations[:n]


def actor_objective(
    actor: MeanFlowActor,
    critic: ContinuousCritic,
    observations: PyTorchObs,
    config: FlowTargetConfig,
    q_scale_floor: str,
    td_error_rms: th.Tensor,
) -> tuple[th.Tensor, dict[str, th.Tensor]]:
    """One actor update's loss (scalar, with graph) and its logs by name (detached scalars).

    At the first :func:`actor_batch_size` states of the batch, the flow network's samples are ``a_0`` and the one-step
    network is distilled onto them (:func:`actor_losses`); ``critic`` (the target critic) values the proposals
    through its first Q network and measures the Q scale: the spread of Q across uniform actions, never below
    ``q_scale_floor``'s floor ("critic_disagreement": the Q networks' disagreement about the action profile;
    "td_error": ``td_error_rms``, the critic's RMS TD error).
    """
    states = first_rows(observations, actor_batch_size(_batch_size(observations)))
    actor_features = actor.extract_features(states, actor.features_extractor)
    noise = th.randn(actor_features.shape[0], actor.action_dim, device=actor_features.device)
    one_step_velocity = actor.one_step_velocity(actor_features, noise)  # the distillation's student, with its graph
    with th.no_grad():
        critic_features = critic.extract_features(states, critic.features_extractor)
        q_scale, spread, disagreement = target_q_scale(critic, critic_features, q_scale_floor, td_error_rms)
    losses = actor_losses(
        u_fn=actor.velocity_at(actor_features),
        noise=noise,
        one_step_velocity=one_step_velocity,
        path=PATH,
        q_function=proposal_q_function(critic, critic_features, "first"),
        config=config,
        q_scale=q_scale,
        u_jvp=network_velocity_jvp(partial(actor.network_input_and_rate, actor_features), actor.velocity_net),
        sampler=partial(actor.sample_flow, actor_features),
    )
    logs = {
        "actor_loss": losses.total.detach(),
        "meanflow_loss": losses.meanflow.detach(),
        "q_scale": q_scale,
        "q_spread": spread,
        "q_disagreement": disagreement,
        "target_velocity_norm": losses.target.velocity.norm(dim=-1).mean(),
        "effective_sample_size": losses.target.effective_sample_size.mean(),
        "face_fraction": (losses.a0.abs() > FACE_THRESHOLD).float().mean(),
        "distillation_loss": losses.distillation.detach(),
    }
    return losses.total, logs


def _batch_size(observations: PyTorchObs) -> int:
    first = next(iter(observations.values())) if isinstance(observations, dict) else observations
    return first.shape[0]
