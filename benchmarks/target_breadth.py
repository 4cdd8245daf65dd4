"""How broad a trained SOM model's target, estimated field and policy are, per action dimension (d <= 3).

From a checkpoint folder of ``benchmarks/learn.py`` (``model.zip`` and ``replay_buffer.pkl``), at ``--states``
states evenly spaced over one deterministic episode, the standard deviation of each action coordinate, averaged
over the dimensions and states, of:

- the target ``exp(alpha Q / q_scale)`` by quadrature on a grid of 41 points per dimension, Q from the critic
  that values the proposals, with the Q scale training uses (the Q spread across uniform actions, floored at
  the RMS TD error; both measured as ``train()`` measures them, averaged over 8 replay batches), and with each
  state's own Q spread instead (no floor);
- the actions the field carries noise to, integrated from t = 0.999 to 0 (``reference_targets.carry_along_field``,
  the integrator of the tests): the exact field (posterior means by quadrature on the grid: the integrator's own
  error; ``--quadrature-samples`` of the samples) and the field estimated with K proposals, K = the model's and larger;
- the one-step policy's stochastic actions.

The first is what training aims at, the second what the K-proposal estimate of it makes of it, the third what
the actor learned.

    python benchmarks/target_breadth.py CHECKPOINT_DIR --env Hopper-v5 > benchmarks/results/target_breadth_hopper.md
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import statistics

import gymnasium as gym
import numpy as np
import torch as th

from reference_targets import carry_along_field, field_times, posterior_mean_from_velocity
from sb3_som import SOM
from sb3_som.critic_values import proposal_q_function, q_at_states
from sb3_som.score import estimate_velocity

GRID_POINTS = 41


def training_q_scale(model: SOM, batches: int = 8) -> tuple[float, float, float, float]:
    """The Q spread, the RMS TD error, the Q networks' disagreement and the Q scale floored as the model's
    ``q_scale_floor`` says, as ``train()`` measures them, averaged over replay batches of the model's batch size."""
    valuing_critic = model.valuing_critic
    spreads, td_errors, disagreements, scales = [], [], [], []
    for _ in range(batches):
        replay_data = model.replay_buffer.sample(model.batch_size)  # type: ignore[union-attr]
        with th.no_grad():
            _, td_error_rms, _ = model._critic_loss(replay_data)
            features = valuing_critic.extract_features(replay_data.observations, valuing_critic.features_extractor)
            q_scale, spread, disagreement = model._q_scale(features, td_error_rms)
        spreads.append(spread.item())
        td_errors.append(td_error_rms.item())
        disagreements.append(disagreement.item())
        scales.append(q_scale.item())
    return tuple(statistics.mean(values) for values in (spreads, td_errors, disagreements, scales))


def episode_states(model: SOM, env_id: str, n_states: int, seed: int) -> th.Tensor:
    """``n_states`` observations evenly spaced over one deterministic episode: (n_states, obs_dim)."""
    env = gym.make(env_id)
    observation, _ = env.reset(seed=seed)
    observations, done = [], False
    while not done:
        observations.append(observation)
        action, _ = model.predict(observation, deterministic=True)
        observation, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    picked = np.linspace(0, len(observations) - 1, n_states).astype(int)
    return th.as_tensor(np.array(observations)[picked], dtype=th.float32)


def weighted_std(weights: th.Tensor, points: th.Tensor) -> float:
    """Standard deviation per coordinate of the distribution ``weights`` (N,) on ``points`` (N, d), averaged."""
    mean = (weights[:, None] * points).sum(0)
    return ((weights[:, None] * (points - mean) ** 2).sum(0)).sqrt().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=pathlib.Path, help="a checkpoint folder of benchmarks/learn.py")
    parser.add_argument("--env", required=True)
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000, help="samples per state for the field and the policy")
    parser.add_argument("--proposals", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument(
        "--quadrature-samples", type=int, default=250, help="samples per state carried by the exact field (n x 41^d work)"
    )
    parser.add_argument("--seed", type=int, default=1_000_000)
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    model = SOM.load(args.checkpoint / "model.zip", device="cpu")
    model.load_replay_buffer(args.checkpoint / "replay_buffer.pkl")
    action_dim = model.actor.action_dim
    if action_dim > 3:
        raise SystemExit(f"the quadrature grid has {GRID_POINTS}^d points: d = {action_dim} is too many (at most 3)")
    spread, td_error_rms, disagreement, q_scale = training_q_scale(model)
    alpha, path, n = model.target_alpha, model.flow_path, args.samples
    valuing_critic = model.valuing_critic
    axis = th.linspace(-1, 1, GRID_POINTS).tolist()
    grid = th.tensor(list(itertools.product(axis, repeat=action_dim)), dtype=th.float32)  # (G, d)

    rows: dict[str, list[float]] = {}
    for observation in episode_states(model, args.env, args.states, args.seed):
        with th.no_grad():
            features = valuing_critic.extract_features(observation[None], valuing_critic.features_extractor)  # (1, f)
            q_grid = q_at_states(valuing_critic, features, grid[None], model.score_critic)[0]  # (G,)
            target_weights = th.softmax(alpha * q_grid / q_scale, dim=0)
            rows.setdefault("target, training's Q scale", []).append(weighted_std(target_weights, grid))
            own_scale = q_grid.std().item()
            rows.setdefault("target, this state's Q spread", []).append(
                weighted_std(th.softmax(alpha * q_grid / own_scale, dim=0), grid)
            )
            q_function = proposal_q_function(valuing_critic, features.expand(n, -1), model.score_critic)
            generator = th.Generator().manual_seed(0)
            a0 = grid[th.multinomial(target_weights, n, replacement=True, generator=generator)]
            a0 = (a0 + (th.rand(a0.shape, generator=generator) - 0.5) * (2 / (GRID_POINTS - 1))).clamp(-1, 1)
            t_start = th.full((n, 1), field_times()[0].item())
            a_start = path.noised(a0, t_start, th.randn(a0.shape, generator=generator))

            def quadrature_posterior_mean(a_t: th.Tensor, t: th.Tensor, target_weights=target_weights) -> th.Tensor:
                m, s = path.mean_coef(t), path.std(t)  # (n, 1)
                log_likelihood = -((a_t[:, None, :] - m[:, :, None] * grid[None]) ** 2).sum(-1) / (2 * s**2)  # (n, G)
                posterior = th.softmax(log_likelihood + target_weights.log()[None], dim=1)
                return posterior @ grid

            quadrature_start = a_start[: args.quadrature_samples]
            actions = carry_along_field(path, quadrature_start, quadrature_posterior_mean).clamp(-1, 1)
            rows.setdefault("field by quadrature (the integrator's own error)", []).append(actions.std(0).mean().item())
            for n_proposals in args.proposals:
                th.manual_seed(0)

                def posterior_mean(
                    a_t: th.Tensor, t: th.Tensor, n_proposals: int = n_proposals, q_function=q_function
                ) -> th.Tensor:
                    velocity = estimate_velocity(
                        path, a_t, t, q_function, alpha, n_proposals, model.flow_config.score_estimator,
                        q_scale=th.tensor(q_scale),
                    ).velocity  # fmt: skip
                    return posterior_mean_from_velocity(path, a_t, t, velocity)

                actions = carry_along_field(path, a_start, posterior_mean).clamp(-1, 1)
                rows.setdefault(f"field estimated with K = {n_proposals}", []).append(actions.std(0).mean().item())
            policy_actions = model.actor(observation.expand(n, -1))
            rows.setdefault("one-step policy (stochastic)", []).append(policy_actions.std(0).mean().item())

    print(f"# Breadth of target, field and policy: {args.env}\n")
    print(f"Checkpoint `{args.checkpoint}`; {args.states} states of one deterministic episode (reset seed {args.seed}); "
          f"alpha {alpha:.2f}; Q spread {spread:.3f}, RMS TD error {td_error_rms:.3f}, "
          f"Q networks' disagreement {disagreement:.3f}, Q scale {q_scale:.3f} (floor {model.q_scale_floor_in_use}) "
          f"(8 replay batches of {model.batch_size}); {n} samples per state, the first {args.quadrature_samples} of them "
          "for the field by quadrature. A uniform coordinate on [-1, 1] has "
          "standard deviation 0.577.\n")  # fmt: skip
    print("| distribution | std per action coordinate, mean over states | per state |\n|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.mean(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
