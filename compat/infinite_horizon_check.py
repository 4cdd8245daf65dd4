"""SB3's test_gae::test_infinite_horizon setting, over seeds: SOM, SOM without the TD-error floor of its
Q scale, SOM with its actor frozen, and SAC.

Prints the critic's value of the first state after 500 steps (true value 1 / (1 - 0.98) = 50 at every
state, every action), then, for SOM, what its critic and its behaviour look like: Q per state, the
share of its behaviour actions at the edge of the action box, and the TD residual on replay samples.
Needs the SB3 source tree that ``compat/run_sb3_suite.sh`` unpacks:

    python compat/infinite_horizon_check.py /path/to/stable_baselines3-2.9.2 > compat/infinite_horizon_check.txt
"""

import sys

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC

import sb3_som.som as som_module
from sb3_som import SOM, critic_values

sys.path.insert(0, f"{sys.argv[1]}/tests")
from test_gae import InfiniteHorizonEnv

SEEDS = range(6)


def trained(model_class: type, seed: int, steps: int = 500, frozen_actor: bool = False, floor: bool = True, **extra):
    env = gym.wrappers.TimeLimit(InfiniteHorizonEnv(n_states=4), 8)
    model = model_class(
        "MlpPolicy",
        env,
        gamma=0.98,
        seed=seed,
        policy_kwargs=dict(net_arch=[16], n_critics=1),
        replay_buffer_kwargs=dict(handle_timeout_termination=True),
        tau=0.5,
        learning_rate=0.01,
        learning_starts=0,
        **extra,
    )
    if frozen_actor:  # the actor keeps its initial weights; the critic trains as usual
        model.actor.optimizer.step = lambda *args, **kwargs: None
    # the Q scale is the spread across actions alone without the floor (sb3_som.som's own rule otherwise)
    som_module.floored_q_scale = critic_values.floored_q_scale if floor else (lambda spread, floor: spread)
    model.learn(steps)
    return model


def first_state_value(model) -> float:
    """The test's own measure: Q at one action of the policy in the first state."""
    obs = model.policy.obs_to_tensor(0)[0]
    with th.no_grad():
        return round(model.critic(obs, model.actor(obs))[0].item(), 2)


def diagnosis(model: SOM) -> str:
    """Q per state over 1000 policy actions, behaviour actions at the box edge, the TD residual (mean, RMS)
    and the spread of Q across uniform actions that the Q scale compares with that RMS."""
    with th.no_grad():
        per_state = []
        for state in range(4):
            obs = th.full((1000,), state, dtype=th.long)
            per_state.append(f"{model.critic(obs, model.actor(obs))[0].mean():.2f}")
        data = model.replay_buffer.sample(256)
        next_q = model.critic_target(data.next_observations, model.actor(data.next_observations))[0]
        residual = data.rewards + (1 - data.dones) * model.gamma * next_q - model.critic(data.observations, data.actions)[0]
        features = model.critic.extract_features(data.observations, model.critic.features_extractor)
        spread, _ = critic_values.action_profile(model.critic, features, model.score_critic)
    actions = model.replay_buffer.actions[: model.replay_buffer.pos, 0]
    edge = (np.abs(actions) > 0.999).mean()
    return (
        f"Q per state {per_state}, behaviour actions at the box edge {edge:.0%}, TD residual mean {residual.mean():+.3f}"
        f" RMS {residual.pow(2).mean().sqrt():.2f}, Q spread across actions {spread:.2f}"
    )


rows = (
    ("SOM", SOM, {}),
    ("SOM without the TD-error floor of the Q scale", SOM, dict(floor=False)),
    ("SOM, actor frozen at its initial weights", SOM, dict(frozen_actor=True)),
    ("SAC (ent_coef=0)", SAC, dict(ent_coef=0.0)),
    ("SAC (ent_coef=0), actor frozen", SAC, dict(ent_coef=0.0, frozen_actor=True)),
)
for name, model_class, extra in rows:
    print(f"{name}, 500 steps, seeds 0-5: {[first_state_value(trained(model_class, seed, **extra)) for seed in SEEDS]}")
print(f"SOM, 1000 steps, seeds 0-5: {[first_state_value(trained(SOM, seed, steps=1000)) for seed in SEEDS]}")
for seed in SEEDS:
    print(f"SOM seed {seed}, 500 steps: {diagnosis(trained(SOM, seed))}")
