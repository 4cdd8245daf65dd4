"""SOM works where SAC works: SB3's buffers, wrappers, policies options and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, IdentityEnvBox, SimpleMultiObsEnv
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.vec_env import VecNormalize

from sb3_som import SOM, CnnMeanFlowPolicy, MlpMeanFlowPolicy, MultiInputMeanFlowPolicy


@pytest.mark.parametrize(
    "alias, policy_class",
    [
        ("MlpMeanFlowPolicy", MlpMeanFlowPolicy),
        ("MlpPolicy", MlpMeanFlowPolicy),
        ("CnnPolicy", CnnMeanFlowPolicy),
        ("MultiInputPolicy", MultiInputMeanFlowPolicy),
    ],
)
def test_policy_aliases(alias, policy_class):
    assert SOM.policy_aliases[alias] is policy_class


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(net_arch=dict(pi=[8], qf=[16, 16])),
        dict(net_arch=[16], activation_fn=th.nn.Tanh, n_critics=3),
        dict(net_arch=[16], share_features_extractor=True),
        dict(net_arch=[16], features_extractor_class=FlattenExtractor, optimizer_class=th.optim.RMSprop),
        dict(net_arch=[16], optimizer_kwargs=dict(weight_decay=1e-4)),
    ],
)
def test_sac_policy_kwargs_are_accepted(policy_kwargs, tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **{**tiny, "policy_kwargs": policy_kwargs})
    model.learn(50)
    if "n_critics" in policy_kwargs:
        assert len(model.critic.q_networks) == 3
    if "optimizer_class" in policy_kwargs:
        assert isinstance(model.actor.optimizer, th.optim.RMSprop)


def test_dict_observations_and_her_replay_buffer(tiny):
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = SOM(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="future"),
        **tiny,
    )
    model.learn(80)
    action, _ = model.predict(env.reset()[0], deterministic=True)
    assert env.action_space.contains(action)


def test_multi_input_policy_on_a_dict_env(tiny):
    env = SimpleMultiObsEnv(random_start=False, discrete_actions=False)
    model = SOM("MultiInputPolicy", env, **tiny)
    model.learn(50)
    assert model._n_updates > 0  # the actor's update took the first rows of each dict observation


def test_cnn_policy_on_images(tiny):
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
    model = SOM(
        "CnnPolicy",
        env,
        buffer_size=200,
        **{**tiny, "policy_kwargs": dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=16))},
    )
    model.learn(50)
    action, _ = model.predict(env.observation_space.sample())
    assert env.action_space.contains(action)


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_steps=3), dict(optimize_memory_usage=True, replay_buffer_kwargs=dict(handle_timeout_termination=False))],
)
def test_n_step_returns_and_memory_efficient_buffer(kwargs, tiny):
    SOM("MlpPolicy", "Pendulum-v1", **tiny, **kwargs).learn(60)


def test_several_envs_vecnormalize_and_action_noise(tiny):
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2))
    noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    model = SOM("MlpPolicy", env, train_freq=2, gradient_steps=-1, action_noise=noise, **tiny)
    model.learn(80)
    assert model.num_timesteps >= 80


def test_replay_buffer_save_load_and_resumed_training(tmp_path, tiny):
    model = SOM("MlpPolicy", IdentityEnvBox(ep_length=10), **tiny, seed=0)
    model.learn(60)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = SOM.load(tmp_path / "model", env=IdentityEnvBox(ep_length=10))
    loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    assert loaded.num_timesteps == 60
    for key, value in model.actor.optimizer.state_dict()["state"].items():
        assert th.equal(value["exp_avg"], loaded.actor.optimizer.state_dict()["state"][key]["exp_avg"])
    loaded.learn(30, reset_num_timesteps=False)
    assert loaded.num_timesteps == 90


def test_policy_only_save_and_load(tmp_path, tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **{**tiny, "policy_kwargs": dict(net_arch=[16], sampling_steps=3)})
    model.policy.save(tmp_path / "policy.pth")
    policy = MlpMeanFlowPolicy.load(tmp_path / "policy.pth")
    observations = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(observations, deterministic=True)[0], policy.predict(observations, deterministic=True)[0]
    )
    assert policy.actor.sampling_steps == 3


def test_get_and_set_parameters(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    parameters = model.get_parameters()
    assert set(parameters) == {"policy", "actor.optimizer", "critic.optimizer"}
    other = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    other.set_parameters(parameters, exact_match=True)
    observations = np.zeros((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        model.predict(observations, deterministic=True)[0], other.predict(observations, deterministic=True)[0]
    )
    with pytest.raises(ValueError):
        other.set_parameters({"policy": parameters["policy"]}, exact_match=True)


def test_zero_learning_rate_leaves_every_weight_unchanged(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", learning_rate=lambda _: 0.0, tau=0.0, **tiny)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(60)
    assert all(th.equal(before[k], v) for k, v in model.policy.state_dict().items())


def test_the_actor_has_its_own_learning_rate_when_given_one(tmp_path, tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, actor_learning_rate=lambda p: 2e-3 * p, **tiny)
    model.learn(60)
    progress = model._current_progress_remaining
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * progress)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.logger.name_to_value["train/actor_learning_rate"] == pytest.approx(2e-3 * progress)
    model.save(tmp_path / "som")
    loaded = SOM.load(tmp_path / "som", env=model.get_env())
    assert loaded.actor_lr_schedule(0.25) == pytest.approx(5e-4)
    loaded.actor_learning_rate = None  # back to learning_rate's schedule
    loaded.learn(40, reset_num_timesteps=False)
    assert loaded.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="actor_learning_rate must be None, a finite number > 0"):
        loaded.actor_learning_rate = "lin_1e-3"


def test_predict_runs_in_eval_mode_and_training_switches_back(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    model.predict(np.zeros(3, dtype=np.float32))
    assert not model.policy.training and not model.actor.training
    model.learn(40)
    assert model.critic.training


def test_compiled_policy_predicts_like_the_original(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    observations = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32))
    compiled = th.compile(model.policy, backend="eager")
    with th.no_grad():
        np.testing.assert_allclose(
            compiled(observations, deterministic=True).numpy(),
            model.policy(observations, deterministic=True).numpy(),
            rtol=1e-6,
        )


def test_tensorboard_run_is_named_som(tmp_path, tiny):
    pytest.importorskip("tensorboard")
    model = SOM("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **tiny)
    model.learn(50)
    assert [p.name for p in tmp_path.iterdir()] == ["SOM_1"]


def test_model_saved_on_cuda_loads_and_predicts_on_cpu():
    # tests/data/som_cuda_pendulum.zip was trained and saved on an NVIDIA H200 (device="cuda"), with the
    # deterministic actions it gave there for four fixed observations.
    data = Path(__file__).parent / "data"
    model = SOM.load(data / "som_cuda_pendulum.zip", device="cpu")
    assert model.device.type == "cpu"
    observations = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(
        model.predict(observations, deterministic=True)[0], np.load(data / "som_cuda_actions.npy"), atol=1e-5
    )


def test_a_model_saved_with_a_single_actor_network_acts_as_it_did_and_trains_on(tmp_path):
    # tests/data/som_single_actor_network.zip was saved by the SOM whose one-step map was the flow network itself
    # (velocity_net at (r, t) = (0, 1); distillation_coef 0.5), with the deterministic actions it gave for four
    # observations: it loads with the one-step network a copy of that network and acts as it did
    data = Path(__file__).parent / "data"
    saved = json.loads((data / "som_single_actor_network.json").read_text())
    model = SOM.load(data / "som_single_actor_network.zip", env=gym.make("Pendulum-v1"))
    observations = np.array(saved["observations"], dtype=np.float32)
    np.testing.assert_allclose(model.predict(observations, deterministic=True)[0], saved["deterministic_actions"], atol=1e-6)
    actor = model.actor
    for flow, one_step in zip(actor.velocity_net.parameters(), actor.one_step_net.parameters(), strict=True):
        assert th.equal(flow, one_step) and flow.data_ptr() != one_step.data_ptr()
    state = actor.optimizer.state
    assert all(p in state for p in actor.velocity_net.parameters())  # the saved Adam moments
    assert not any(p in state for p in actor.one_step_net.parameters())  # a fresh start, as a new optimizer's
    assert not hasattr(model, "distillation_coef") and model.distillation_steps == 2
    before = [p.detach().clone() for p in actor.one_step_net.parameters()]
    model.learn(40, reset_num_timesteps=False)
    assert all(p in state for p in actor.one_step_net.parameters())
    assert not any(th.equal(a, b) for a, b in zip(before, actor.one_step_net.parameters(), strict=True))
    model.save(tmp_path / "model.zip")
    reloaded = SOM.load(tmp_path / "model.zip")
    for trained, loaded in zip(actor.one_step_net.parameters(), reloaded.actor.one_step_net.parameters(), strict=True):
        assert th.equal(trained, loaded)  # its own one-step network, not a copy of the flow's


def test_a_single_network_model_saved_without_distillation_loads_with_one_distillation_step(tmp_path):
    # the single network's distillation_steps=0 (its one-step map was the flow's own) has no value now; 1 (the
    # one-step network copies the flow's one-step map) is what it did. A value given to load is the user's own.
    data = Path(__file__).parent / "data"
    model = SOM.load(data / "som_single_actor_network.zip")
    vars(model)["distillation_steps"] = 0  # as that model saved it, past today's check
    model.save(tmp_path / "no_distillation.zip")
    assert SOM.load(tmp_path / "no_distillation.zip").distillation_steps == 1
    with pytest.raises(ValueError, match="distillation_steps"):
        SOM.load(tmp_path / "no_distillation.zip", distillation_steps=0)


class BatchNormExtractor(BaseFeaturesExtractor):
    """Flatten, then batch norm: its running statistics must follow SB3's train/eval conventions."""

    def __init__(self, observation_space, features_dim: int = 3):
        super().__init__(observation_space, features_dim)
        self.norm = th.nn.BatchNorm1d(features_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.norm(observations)


def test_batch_norm_statistics_are_copied_to_the_target_critic_and_frozen_in_predict(tiny):
    model = SOM(
        "MlpPolicy",
        "Pendulum-v1",
        **{**tiny, "policy_kwargs": dict(net_arch=[16], features_extractor_class=BatchNormExtractor)},
    )
    model.learn(80)
    critic_norm = model.critic.features_extractor.norm
    target_norm = model.critic_target.features_extractor.norm
    assert critic_norm.num_batches_tracked > 0
    assert th.equal(critic_norm.running_mean, target_norm.running_mean)
    assert th.equal(critic_norm.running_var, target_norm.running_var)
    actor_stats = model.actor.features_extractor.norm.running_mean.clone()
    model.predict(np.random.default_rng(0).uniform(-1, 1, (32, 3)).astype(np.float32))
    assert th.equal(actor_stats, model.actor.features_extractor.norm.running_mean)
