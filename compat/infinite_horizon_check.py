"""SB3's test_gae::test_infinite_horizon setting, over seeds, for SOM and for SAC without its entropy bonus.

Prints the critic's value of the first state after 500 steps (true value 1 / (1 - 0.98) = 50) and, for SOM,
after 1000 steps, and the mean and spread of SOM's Q over 1000 of its own actions.
Needs the SB3 source tree that ``compat/run_sb3_suite.sh`` unpacks:

    python compat/infinite_horizon_check.py /path/to/stable_baselines3-2.9.2 > compat/infinite_horizon_check.txt
"""

import sys

import gymnasium as gym
import torch as th
from stable_baselines3 import SAC

from sb3_som import SOM

sys.path.insert(0, f"{sys.argv[1]}/tests")
from test_gae import InfiniteHorizonEnv


def trained(model_class: type, seed: int, steps: int):
    env = gym.wrappers.TimeLimit(InfiniteHorizonEnv(n_states=4), 8)
    extra = dict(ent_coef=0.0) if model_class is SAC else {}
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
    model.learn(steps)
    return model


def critic_value(model_class: type, seed: int, steps: int) -> float:
    """The test's own measure: Q at one action of the policy."""
    model = trained(model_class, seed, steps)
    obs = model.policy.obs_to_tensor(0)[0]
    return model.critic(obs, model.actor(obs))[0].item()


def critic_spread(seed: int) -> str:
    """SOM's Q over 1000 of its own actions at the first state: mean and spread."""
    model = trained(SOM, seed, 500)
    obs = model.policy.obs_to_tensor(0)[0].repeat(1000, 1)
    with th.no_grad():
        q_values = model.critic(obs, model.actor(obs))[0]
    return f"mean {q_values.mean():.2f}, std {q_values.std():.2f}"


for model_class, steps in ((SOM, 500), (SAC, 500), (SOM, 1000)):
    values = [round(critic_value(model_class, seed, steps), 2) for seed in range(4)]
    name = "SAC (ent_coef=0)" if model_class is SAC else "SOM"
    print(f"{name}, {steps} steps, seeds 0-3: {values}")
print("SOM, 500 steps, Q over 1000 policy actions, seeds 0-3:", "; ".join(critic_spread(seed) for seed in range(4)))
