"""The SOM actor objective: MeanFlow regression onto the critic's velocity field (pure torch, no SB3).

One call of :func:`actor_losses` is one actor update's loss:

1. noise the clean actions ``a_0`` into ``a_t`` at sampled times ``(r, t)``;
2. estimate the probability-flow velocity of ``exp(alpha Qn)`` at ``(a_t, t)`` from K critic rows
   per state, ``a_0`` among them (:func:`sb3_som.score.estimate_velocity`);
3. MeanFlow target ``v - (t - r) du/dt`` by one JVP, adaptive-weighted regression;
4. optionally, self-distillation of the one-step map ``u(e, 0, 1)`` onto the network's own
   k-step sample from the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from sb3_som.meanflow import AverageVelocity, AverageVelocityJVP, adaptive_weighted_loss, meanflow_target, sample_actions
from sb3_som.paths import NoisePath, sample_r_t
from sb3_som.score import QFunction, VelocityTarget, estimate_velocity


@dataclass(frozen=True)
class FlowTargetConfig:
    """The knobs of the actor objective (SOM's constructor arguments of the same names, which hold the defaults)."""

    alpha: float
    n_score_samples: int
    time_sampler: str
    mean_flow_fraction: float
    distillation_steps: int
    distillation_coef: float
    loss_weight_power: float


@dataclass
class ActorLosses:
    """Losses of one actor update (scalars with graph) and the velocity target behind them."""

    total: th.Tensor
    meanflow: th.Tensor
    distillation: th.Tensor | None
    target: VelocityTarget


def actor_losses(
    u_fn: AverageVelocity,
    a0: th.Tensor,
    noise: th.Tensor,
    one_step_velocity: th.Tensor,
    path: NoisePath,
    q_function: QFunction,
    config: FlowTargetConfig,
    q_scale: th.Tensor,
    u_jvp: AverageVelocityJVP | None = None,
) -> ActorLosses:
    """Loss of the MeanFlow actor ``u_fn(a_t, r, t)`` (state features already bound).

    :param a0: (B, d) clean actions to noise (the policy's own samples or the buffer's), detached
    :param noise: (B, d) standard normal noise, the student's input for self-distillation
    :param one_step_velocity: (B, d) the student ``u_fn(noise, 0, 1)`` with its graph (the caller's, who may also
        have drawn ``a0 = noise - one_step_velocity`` from it); used when self-distillation is on
    :param q_function: Q of proposals (B', K, d) at batch rows (B',) -> (B', K)
    :param q_scale: the Q spread that ``alpha`` is relative to, a scalar
    :param u_jvp: ``u_fn`` and its time derivative along the flow in one call (None: ``torch.func.jvp``)
    """
    batch_size = a0.shape[0]
    r, t = sample_r_t(batch_size, config.time_sampler, config.mean_flow_fraction, device=a0.device)
    a_t = path.noised(a0, t, th.randn_like(a0))
    target = estimate_velocity(
        path, a_t, t, q_function, alpha=config.alpha, n_samples=config.n_score_samples, q_scale=q_scale, anchor=a0
    )
    u, u_target = meanflow_target(u_fn, a_t, r, t, target.velocity, u_jvp)
    meanflow = adaptive_weighted_loss(u, u_target, power=config.loss_weight_power)
    if config.distillation_steps == 0:
        return ActorLosses(meanflow, meanflow, None, target)
    with th.no_grad():
        teacher = sample_actions(u_fn, noise, config.distillation_steps)
    distillation = adaptive_weighted_loss(one_step_velocity, noise - teacher, power=config.loss_weight_power)
    return ActorLosses(meanflow + config.distillation_coef * distillation, meanflow, distillation, target)
