"""Where SOM's policy acts against where its target ``exp(alpha Q / q_scale)`` lies, and what the score estimate
gives there.

From SOM checkpoints of ``learn.py`` (Box observations), at the latest 32 states of the replay buffer (the states of
``learn.policy_diagnostics``), one JSON line per checkpoint:

- ``policy_spread``, ``target_spread``: the standard deviation per coordinate of the policy's stochastic actions and
  of the target's samples (``learn.target_samples``, at the Q scale of the actor's update), in the box;
- ``target_face_share``: the share of the target's sampled coordinates beyond 0.98;
- ``mean_offset``: the root mean square per coordinate between the policy's mean action and the target's, per state;
  ``policy_mean_variation``, ``target_mean_variation``: how much each mean varies across the states (standard
  deviation across states, mean over coordinates);
- ``q_gain``: per Q network rule ("first", which the target uses, and "min"), the critic's value of the target's
  mean and of the best of 64 stochastic actions, less that of the deterministic action, in units of the Q scale;
- ``estimate``: the score estimate of the actor's update (the flow network's own samples as anchors, as in
  training), at times ``t`` and K proposals: the weights' effective sample size and the root mean square per
  coordinate between its ``E[a_0 | a_t]`` and the anchor, and the target's mean. At ``t = 0.98`` the noise's Gaussian
  factor (standard deviation 49 per coordinate) is nearly flat across the box, so ``E[a_0 | a_t]`` is close to the
  target's mean there.

    python benchmarks/target_location.py runs/ckpt/som_Humanoid-v5_0/step_100000 \\
        --out benchmarks/results/target_location_cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import torch as th

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learn import (
    DIAGNOSTIC_BEST_OF,
    DIAGNOSTIC_SAMPLES,
    Q_SCALE_BATCHES,
    latest_observations,
    load_checkpoint,
    sampled_actions,
    target_samples,
    training_q_scale,
)
from sb3_som import SOM
from sb3_som.critic_values import proposal_q_function, q_at_states
from sb3_som.meanflow import sample_actions
from sb3_som.objective import FACE_THRESHOLD, PATH
from sb3_som.paths import NoisePath
from sb3_som.score import estimate_velocity

TIMES = (0.1, 0.5, 0.9, 0.98)
# noised actions per state for the estimate's measurements
ESTIMATE_REPLICAS = 16


def posterior_mean(path: NoisePath, a_t: th.Tensor, t: th.Tensor, score: th.Tensor) -> th.Tensor:
    """``E[a_0 | a_t]`` (B, d) from the score of ``p_t`` at ``a_t`` (B, d), Tweedie's formula solved for the mean:
    ``score = (m_t E[a_0 | a_t] - a_t) / s_t^2``."""
    return (a_t + path.std(t).square() * score) / path.mean_coef(t)


@th.no_grad()
def estimate_errors(
    model: SOM, observations: np.ndarray, q_scale: th.Tensor, target_mean: th.Tensor, n_samples: int
) -> list[dict[str, float]]:
    """The score estimate with ``n_samples`` proposals at each of ``TIMES``: the weights' effective sample size and
    the RMS per coordinate of its ``E[a_0 | a_t]`` from the anchor and from ``target_mean`` (S, d)."""
    actor, critic = model.actor, model.critic_target
    states = model.policy.obs_to_tensor(observations)[0]
    actor_features = actor.extract_features(states, actor.features_extractor).repeat_interleave(ESTIMATE_REPLICAS, 0)
    critic_features = critic.extract_features(states, critic.features_extractor).repeat_interleave(ESTIMATE_REPLICAS, 0)
    target_mean = target_mean.repeat_interleave(ESTIMATE_REPLICAS, 0)
    noise = th.randn(actor_features.shape[0], actor.action_dim, device=model.device)
    anchor = sample_actions(actor.velocity_at(actor_features), noise, model.distillation_steps).clamp(-1.0, 1.0)
    q_function = proposal_q_function(critic, critic_features, "first")
    rows = []
    for time in TIMES:
        t = th.full((anchor.shape[0], 1), time, device=model.device)
        a_t = PATH.noised(anchor, t, th.randn_like(anchor))
        target = estimate_velocity(
            PATH, a_t, t, q_function, alpha=model.target_alpha, n_samples=n_samples, q_scale=q_scale, anchor=anchor
        )
        estimated_mean = posterior_mean(PATH, a_t, t, target.score)
        rows.append({
            "t": time,
            "n_score_samples": n_samples,
            "effective_sample_size": target.effective_sample_size.mean().item(),
            "to_anchor": (estimated_mean - anchor).square().mean().sqrt().item(),
            "to_target_mean": (estimated_mean - target_mean).square().mean().sqrt().item(),
        })  # fmt: skip
    return rows


@th.no_grad()
def measure(model: SOM, reference_samples: int) -> dict[str, Any]:
    """The measurements of the module's docstring at ``model``'s latest states."""
    observations = latest_observations(model)
    q_scale = training_q_scale(model, Q_SCALE_BATCHES)
    target = target_samples(model, q_scale)  # (S, n, d)
    policy = th.as_tensor(sampled_actions(model, observations, DIAGNOSTIC_SAMPLES), dtype=th.float32)  # (S, n, d)
    deterministic, _ = model.predict(observations, deterministic=True)
    deterministic = th.as_tensor(model.policy.scale_action(deterministic), dtype=th.float32)[:, None]
    target_mean, policy_mean = target.mean(dim=1), policy.mean(dim=1)
    critic = model.critic_target
    features = critic.extract_features(model.policy.obs_to_tensor(observations)[0], critic.features_extractor)
    q_gain = {}
    for which in ("first", "min"):
        at_deterministic = q_at_states(critic, features, deterministic, which)[:, 0]
        at_target_mean = q_at_states(critic, features, target_mean[:, None], which)[:, 0]
        best_sampled = q_at_states(critic, features, policy[:, :DIAGNOSTIC_BEST_OF], which).max(dim=1).values
        q_gain[which] = {
            "target_mean": ((at_target_mean - at_deterministic).mean() / q_scale).item(),
            f"best_of_{DIAGNOSTIC_BEST_OF}": ((best_sampled - at_deterministic).mean() / q_scale).item(),
        }
    estimate = []
    for n_samples in (model.n_score_samples, reference_samples):
        estimate += estimate_errors(model, observations, q_scale, target_mean, n_samples)
    return {
        "q_scale": q_scale.item(),
        "policy_spread": policy.std(dim=1).mean().item(),
        "target_spread": target.std(dim=1).mean().item(),
        "target_face_share": (target.abs() > FACE_THRESHOLD).float().mean().item(),
        "mean_offset": (policy_mean - target_mean).square().mean().sqrt().item(),
        "policy_mean_variation": policy_mean.std(dim=0).mean().item(),
        "target_mean_variation": target_mean.std(dim=0).mean().item(),
        "q_gain": q_gain,
        "estimate": estimate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="SOM checkpoint directories of benchmarks/learn.py")
    parser.add_argument("--reference-samples", type=int, default=256, help="a larger K for the estimate, beside the model's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    args = parser.parse_args()
    for path in args.checkpoints:
        model, state = load_checkpoint(path, "cpu")
        if not isinstance(model, SOM):
            parser.error(f"{path} holds a {type(model).__name__} model; target_location measures SOM's target")
        th.manual_seed(args.seed)
        np.random.seed(args.seed)
        config = state["config"]
        row = {"checkpoint": os.path.normpath(path), "env": config["env"], "seed": config["seed"],
               "run": state["runner"]["run"], "timesteps": model.num_timesteps}  # fmt: skip
        row.update(measure(model, args.reference_samples))
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
