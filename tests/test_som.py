"""SOM as an SB3 algorithm: construction, acting, learning, saving, bad input."""

from __future__ import annotations

import math
import shutil
import warnings
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import set_random_seed

from sb3_som import SOM, MlpMeanFlowPolicy
from sb3_som.critic_values import action_profile, floored_q_scale, q_at_states
from sb3_som.meanflow import network_velocity_jvp, sample_actions
from sb3_som.policies import MeanFlowActor
from sb3_som.score import estimate_velocity
from sb3_som.settings import missing_compiler


class AsymmetricBoxEnv(gym.Env):
    """Tiny continuous task with asymmetric float64 action bounds; reward prefers the upper bound."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.action_space = spaces.Box(np.array([0.0, -5.0]), np.array([2.0, -1.0]), dtype=np.float64)
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._steps += 1
        reward = float(action[0] - abs(action[1] + 3.0))
        return self.observation_space.sample(), reward, False, self._steps >= 20, {}


def test_public_api_and_sac_like_attributes(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny)
    assert isinstance(model.policy, MlpMeanFlowPolicy)
    assert isinstance(model.actor, MeanFlowActor)
    assert model.critic is model.policy.critic and model.critic_target is model.policy.critic_target
    assert len(model.critic.q_networks) == 2
    model_from_env = SOM("MlpMeanFlowPolicy", gym.make("Pendulum-v1"), **tiny)
    assert model_from_env.action_space == model.action_space


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(n_score_samples=2), "n_score_samples must be an integer >= 3"),
        (dict(q_scale_floor="disagreement"), "q_scale_floor"),
        (dict(q_scale_floor="critic_disagreement", policy_kwargs=dict(n_critics=1)), "n_critics=1"),
        (dict(distillation_steps=0), "distillation_steps must be an integer >= 1"),
        (dict(policy_kwargs=dict(n_action_candidates=0)), "n_action_candidates"),
        (dict(policy_kwargs=dict(sampling_steps=0)), "sampling_steps"),
        (dict(tau=1.5), "tau"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SOM("MlpMeanFlowPolicy", "Pendulum-v1", **kwargs)


def test_discrete_action_space_is_refused_with_the_supported_space_named():
    with pytest.raises(AssertionError, match="Box"):
        SOM("MlpMeanFlowPolicy", "CartPole-v1")


def test_predict_is_inside_asymmetric_bounds_with_the_env_dtype(tiny):
    model = SOM("MlpMeanFlowPolicy", AsymmetricBoxEnv(), **tiny, seed=0)
    observations = np.random.default_rng(0).uniform(-1, 1, (500, 3)).astype(np.float32)
    for deterministic in (False, True):
        actions, _ = model.predict(observations, deterministic=deterministic)
        assert actions.shape == (500, 2)
        assert np.all(actions >= model.action_space.low) and np.all(actions <= model.action_space.high)
    single, _ = model.predict(observations[0])
    assert single.shape == (2,)
    assert single.dtype == model.action_space.dtype


def test_deterministic_predict_is_repeatable_and_stochastic_predict_is_not(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, seed=0)
    observations = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    first, _ = model.predict(observations, deterministic=True)
    second, _ = model.predict(observations, deterministic=True)
    np.testing.assert_array_equal(first, second)
    third, _ = model.predict(observations)
    fourth, _ = model.predict(observations)
    assert not np.allclose(third, fourth)


def test_predict_is_one_actor_call_and_no_critic_call_by_default(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny)
    calls = {"actor": 0, "flow": 0, "critic": 0}
    model.actor.one_step_net.register_forward_hook(lambda *_: calls.__setitem__("actor", calls["actor"] + 1))
    model.actor.velocity_net.register_forward_hook(lambda *_: calls.__setitem__("flow", calls["flow"] + 1))
    for q_net in model.critic.q_networks:
        q_net.register_forward_hook(lambda *_: calls.__setitem__("critic", calls["critic"] + 1))
    model.predict(np.zeros((10, 3), dtype=np.float32))
    assert calls == {"actor": 1, "flow": 0, "critic": 0}


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_the_actors_flow_sampler_computes_what_the_generic_sampler_computes(steps, tiny):
    model = SOM("MlpMeanFlowPolicy", "HalfCheetah-v5", **tiny, device="cpu")
    generator = th.Generator().manual_seed(steps)
    features = th.randn(32, model.actor.features_dim, generator=generator)
    noise = th.randn(32, model.actor.action_dim, generator=generator)
    with th.no_grad():
        expected = sample_actions(model.actor.velocity_at(features), noise, steps)
        assert th.allclose(model.actor.sample_flow(features, noise, steps), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="steps"):
        model.actor.sample_flow(features, noise, 0)


def test_k_step_sampling_and_best_of_n_stay_in_bounds_and_are_repeatable(tiny):
    model = SOM(
        "MlpMeanFlowPolicy",
        "Pendulum-v1",
        **{**tiny, "policy_kwargs": dict(net_arch=[16], sampling_steps=4, n_action_candidates=5)},
        device="cpu",
    )
    observations = np.random.default_rng(1).uniform(-1, 1, (16, 3)).astype(np.float32)
    first, _ = model.predict(observations, deterministic=True)
    second, _ = model.predict(observations, deterministic=True)
    np.testing.assert_array_equal(first, second)
    assert np.all(np.abs(first) <= 2.0)
    # Best-of-N keeps, per state, the candidate with the highest critic value
    with th.no_grad():
        obs = th.as_tensor(observations)
        features = model.actor.extract_features(obs, model.actor.features_extractor)
        noise = model.policy.candidate_noise.repeat(16, 1)
        candidates = model.actor.sample(features.repeat_interleave(5, 0), noise)
        q_values = th.cat(model.critic(obs.repeat_interleave(5, 0), candidates), dim=1).min(dim=1).values.view(16, 5)
        best = candidates.view(16, 5, 1)[th.arange(16), q_values.argmax(1)]
    np.testing.assert_allclose(first, model.policy.unscale_action(best.numpy()), rtol=1e-5)


def test_same_seed_gives_same_stochastic_actions_and_rewards(tiny):
    actions, rewards = [], []
    for _ in range(2):
        model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, seed=3)
        model.learn(120)
        obs = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
        actions.append(model.predict(obs)[0])
        rewards.append(model.replay_buffer.rewards[: model.replay_buffer.size()].copy())
    np.testing.assert_array_equal(actions[0], actions[1])
    np.testing.assert_array_equal(rewards[0], rewards[1])


def test_learn_logs_the_health_of_critic_and_flow_then_predicts(tmp_path, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, seed=0)
    model.learn(150)
    logged = model.logger.name_to_value
    logged_keys = ("critic_loss", "actor_loss", "meanflow_loss", "distillation_loss", "q_mean", "q_scale", "q_spread")
    for key in (*logged_keys, "effective_sample_size", "target_velocity_norm"):
        assert np.isfinite(logged[f"train/{key}"]), key
    assert 0.0 <= logged["train/face_fraction"] <= 1.0
    assert logged["train/q_scale"] >= max(logged["train/q_spread"], logged["train/q_disagreement"]) - 1e-6
    assert model.num_timesteps == 150
    action, _ = model.predict(model.env.reset())
    assert action.shape == (1, 1)


def test_a_learn_call_that_ends_before_learning_starts_warns_that_no_gradient_step_is_taken(tiny):
    assert SOM("MlpMeanFlowPolicy", "Pendulum-v1").learning_starts == 5000  # SAC's is 100
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, seed=0)  # learning_starts=30
    with pytest.warns(UserWarning, match="before learning_starts=30: no gradient step"):
        model.learn(20)
    assert model._n_updates == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(20, reset_num_timesteps=False)  # on to step 40: updates from step 31
    assert model._n_updates > 0


def test_save_load_gives_identical_deterministic_actions_and_keeps_som_arguments(tmp_path, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, alpha=4.0, q_scale_floor="td_error", seed=0)
    model.learn(100)
    observations = np.random.default_rng(0).uniform(-1, 1, (32, 3)).astype(np.float32)
    before, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "som")
    loaded = SOM.load(tmp_path / "som", env=make_vec_env("Pendulum-v1"))
    after, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(before, after)
    assert loaded.alpha == 4.0 and loaded.q_scale_floor == "td_error"
    loaded.learn(60)  # training resumes


@pytest.mark.parametrize(
    "compile_step",
    [False, pytest.param(True, marks=pytest.mark.skipif(missing_compiler() is not None, reason="no C++ compiler"))],
)
def test_non_finite_loss_stops_training_and_leaves_weights_unchanged(compile_step, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, compile_step=compile_step, seed=0)
    model.learn(60)
    model.replay_buffer.rewards[:] = np.nan
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    with pytest.raises(FloatingPointError, match="critic_loss"):
        model.train(gradient_steps=2, batch_size=32)
    after = model.policy.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)


def test_compile_step_without_a_compiler_is_refused_naming_what_is_missing(monkeypatch, tiny):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"compile_step=True needs a C\+\+ compiler .* for device 'cpu'"):
        SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, compile_step=True, device="cpu")
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu")
    with pytest.raises(ValueError, match="compile_step"):
        model.compile_step = "yes"


def test_settings_assigned_after_construction_take_effect_at_the_next_update(monkeypatch, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, seed=0)
    model.learn(60)
    seen = {}

    def spy(*args, **kwargs):
        seen.update(alpha=kwargs["alpha"], n_samples=kwargs["n_samples"])
        return estimate_velocity(*args, **kwargs)

    monkeypatch.setattr("sb3_som.objective.estimate_velocity", spy)
    model.alpha, model.n_score_samples = 0.5, 5
    model.train(gradient_steps=1, batch_size=16)
    assert seen == dict(alpha=0.5, n_samples=5)


@pytest.mark.parametrize(("env_id", "action_dim"), [("Pendulum-v1", 1), ("MultiGoalBandit-v0", 2)])
def test_alpha_auto_is_ten_times_the_square_root_of_the_action_dimension(tmp_path, env_id, action_dim, tiny):
    model = SOM("MlpMeanFlowPolicy", env_id, **tiny)
    assert model.alpha == "auto"
    assert model.target_alpha == model.flow_config.alpha == pytest.approx(10.0 * math.sqrt(action_dim))
    model.save(tmp_path / "som")
    assert SOM.load(tmp_path / "som").target_alpha == pytest.approx(10.0 * math.sqrt(action_dim))
    model.alpha = 3.0  # a number is the inverse temperature itself, whatever the dimension
    assert model.target_alpha == model.flow_config.alpha == 3.0
    with pytest.raises(ValueError, match="alpha must be 'auto' or a finite number > 0, got 'greedy'"):
        model.alpha = "greedy"


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_score_samples=3, distillation_steps=1),
        dict(q_scale_floor="critic_disagreement", policy_kwargs=dict(net_arch=[16], n_critics=3)),
        dict(q_scale_floor="td_error", policy_kwargs=dict(net_arch=[16], n_critics=1)),
    ],
)
def test_every_variant_trains_its_actor(overrides, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **{**tiny, **overrides}, seed=0)
    model.learn(60)
    before = [p.detach().clone() for p in model.actor.parameters()]
    model.learn(20, reset_num_timesteps=False)
    logged = model.logger.name_to_value
    assert np.isfinite(logged["train/actor_loss"]) and 1 <= logged["train/effective_sample_size"] <= model.n_score_samples
    assert all(not th.equal(a, b) for a, b in zip(before, model.actor.parameters(), strict=True))  # every layer moved
    assert np.isfinite(logged["train/distillation_loss"])


def test_one_step_acting_path_is_the_one_step_network_at_r_0_and_t_1(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0)
    features, noise = th.randn(64, 3), 2 * th.randn(64, 1)
    r, t = th.zeros(64, 1), th.ones(64, 1)
    with th.no_grad():
        fast = model.actor.sample(features, noise, steps=1)
        generic = (noise - model.actor.one_step_net(model.actor.network_input(features, noise, r, t))).clamp(-1.0, 1.0)
        again = model.actor.sample(features, noise, steps=1)
    th.testing.assert_close(fast, generic)
    th.testing.assert_close(again, fast)
    # the one-step time embedding is a buffer computed at construction, not part of what is saved
    assert "actor.one_step_embedding" in dict(model.policy.named_buffers())
    assert "actor.one_step_embedding" not in model.policy.state_dict()
    assert (fast.abs() == 1).any()  # some of the noise was large enough to be clipped


def test_q_scale_is_the_spread_across_actions_floored(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0)
    features = th.randn(40, 3)
    with th.no_grad():
        spread, _ = action_profile(model.critic, features, "first")
        assert spread.item() > 1e-4  # a random critic varies with the action
        assert floored_q_scale(spread, th.tensor(0.5 * spread.item())).item() == pytest.approx(spread.item())
        assert floored_q_scale(spread, th.tensor(100 * spread.item())).item() == pytest.approx(100 * spread.item())
        for q_net in model.critic.q_networks:  # Q no longer depends on the action (its last input)
            q_net[0].weight[:, -1] = 0.0
        flat, disagreement = action_profile(model.critic, features, "min")
        assert flat.item() < 1e-3 and disagreement.item() < 1e-5  # what is left is the float-rounding minimum
        assert floored_q_scale(flat, th.tensor(0.3)).item() == pytest.approx(0.3)


def test_q_at_states_is_each_q_network_on_the_concatenated_state_and_action(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0)
    features, actions = th.randn(5, 3), 2 * th.rand(5, 7, 1) - 1
    rows = th.cat([features.unsqueeze(1).expand(-1, 7, -1), actions], dim=-1).reshape(35, 4)
    each = th.stack([q_net(rows).view(5, 7) for q_net in model.critic.q_networks])  # (networks, 5, 7)
    with th.no_grad():
        assert th.allclose(q_at_states(model.critic, features, actions, "first"), each[0], atol=1e-5)
        assert th.allclose(q_at_states(model.critic, features, actions, "min"), each.min(dim=0).values, atol=1e-5)
        assert q_at_states(model.critic, features[:0], actions[:0], "min").shape == (0, 7)


class LinearQ(th.nn.Module):
    """Q(s, a) = slope * a + level * s_0 on (state, 1-D action) rows: a stand-in Q network with a known profile."""

    def __init__(self, slope: float, level: float):
        super().__init__()
        self.slope, self.level = slope, level

    def forward(self, rows: th.Tensor) -> th.Tensor:
        return self.slope * rows[:, -1:] + self.level * rows[:, :1]


@pytest.mark.parametrize("level", [0.0, 5.0])
def test_critic_disagreement_is_about_the_action_profile_and_not_the_value_level(level, tiny):
    """Q_1 = 2a and Q_2 = -2a (+ level * s_0, which only moves the state's value): the profiles differ by
    4 (a - mean a), so the disagreement is sqrt(8 E[(a - mean a)^2]) = sqrt(8 * 15/16 / 3) = 1.58 for 16 uniform
    actions per state, whatever the level; the spread of the first is 2 sd(a) = 1.15."""
    critic = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0).critic
    critic.q_networks = [LinearQ(2.0, 0.0), LinearQ(-2.0, level)]
    features = th.randn(32, 3)
    th.manual_seed(0)
    spread, disagreement = action_profile(critic, features, "first")
    assert disagreement.item() == pytest.approx(math.sqrt(8 * 15 / 16 / 3), rel=0.08)
    assert spread.item() == pytest.approx(2 / math.sqrt(3), rel=0.1)
    th.manual_seed(0)
    assert action_profile(critic, features, "min")[1].item() == pytest.approx(disagreement.item())
    critic.q_networks = [LinearQ(2.0, 0.0), LinearQ(2.0, level)]  # the same profile: no disagreement
    assert action_profile(critic, features, "first")[1].item() == pytest.approx(0.0, abs=1e-5)
    critic.q_networks = critic.q_networks[:1]
    assert math.isnan(action_profile(critic, features, "first")[1].item())


@pytest.mark.parametrize(
    ("floor", "n_critics", "in_use"),
    [
        ("td_error", 2, "td_error"),
        ("critic_disagreement", 2, "critic_disagreement"),
        ("auto", 2, "critic_disagreement"),
        ("auto", 1, "td_error"),
    ],
)
def test_train_floors_the_q_scale_with_the_chosen_floor(floor, n_critics, in_use, monkeypatch, tiny):
    model = SOM(
        "MlpMeanFlowPolicy",
        "Pendulum-v1",
        **{**tiny, "policy_kwargs": dict(net_arch=[16], n_critics=n_critics)},
        q_scale_floor=floor,
        device="cpu",
        seed=0,
    )
    assert model.q_scale_floor_in_use == in_use
    seen = []
    monkeypatch.setattr("sb3_som.objective.floored_q_scale", lambda spread, low: seen.append(low) or th.maximum(spread, low))
    disagreements = []

    def recorded_profile(*args):
        spread, disagreement = action_profile(*args)
        disagreements.append(disagreement)
        return spread, disagreement

    monkeypatch.setattr("sb3_som.objective.action_profile", recorded_profile)
    model.learn(80)
    assert seen and len(seen) == len(disagreements)
    used_disagreement = [low is disagreement for low, disagreement in zip(seen, disagreements, strict=True)]
    assert all(used_disagreement) if in_use == "critic_disagreement" else not any(used_disagreement)
    # with one Q network there is nothing to disagree, and the log says so
    assert np.isfinite(model.logger.name_to_value["train/q_disagreement"]) == (n_critics > 1)


class ConstantRewardCycle(gym.Env):
    """Four states visited in a cycle, reward 1 whatever the action: Q = 1 / (1 - gamma) everywhere."""

    observation_space = spaces.Discrete(4)
    action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = 0
        return self._state, {}

    def step(self, action):
        self._state = (self._state + 1) % 4
        return self._state, 1.0, False, False, {}


@pytest.mark.parametrize("handle_timeout_termination", [True, False])
def test_critic_bootstraps_through_time_limits_only_when_told(handle_timeout_termination):
    """With timeouts bootstrapped the critic reaches 1 / (1 - gamma) = 50 although episodes end after 8 steps.

    Q does not depend on the action here: the TD-error floor of the Q scale keeps the target policy from
    turning greedy on the critic's noise. At this learning rate the critic wanders about 1.5 around its fixed
    point, hence the tolerance. Without bootstrapping the value stays below sum_{k<8} 0.98^k = 7.5, plus noise.
    """
    env = gym.wrappers.TimeLimit(ConstantRewardCycle(), max_episode_steps=8)
    model = SOM(
        "MlpPolicy",
        env,
        gamma=0.98,
        tau=0.5,
        learning_rate=0.01,
        learning_starts=0,
        replay_buffer_kwargs=dict(handle_timeout_termination=handle_timeout_termination),
        policy_kwargs=dict(net_arch=[16], n_critics=1),
        seed=1,
        device="cpu",
    )
    model.learn(500)
    obs = model.policy.obs_to_tensor(0)[0].repeat(100)
    with th.no_grad():
        value = model.critic(obs, model.actor(obs))[0].mean().item()
    if handle_timeout_termination:
        assert abs(value - 50.0) < 3.0
    else:
        assert value < 10.0


def test_actor_jvp_equals_torch_func_jvp_of_the_average_velocity(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0)
    actor = model.actor
    features = th.randn(16, 3, requires_grad=True)
    a_t, v = th.randn(16, 1), th.randn(16, 1)
    t = 0.1 + 0.8 * th.rand(16, 1)
    r = t * th.rand(16, 1)
    u, du_dt = network_velocity_jvp(partial(actor.network_input_and_rate, features), actor.velocity_net)(a_t, r, t, v)
    expected_u, expected_du_dt = th.func.jvp(actor.velocity_at(features), (a_t, r, t), (v, th.zeros_like(r), th.ones_like(t)))
    th.testing.assert_close(u, expected_u)
    th.testing.assert_close(du_dt, expected_du_dt, rtol=1e-4, atol=1e-5)
    u.sum().backward()  # the output keeps the graph to the network and to the state features
    assert features.grad is not None and all(p.grad is not None for p in actor.velocity_net.parameters())


def test_actor_update_uses_the_first_half_of_the_batch_valued_by_the_target_critic(monkeypatch, tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **{**tiny, "batch_size": 10}, seed=0)
    model.learn(60)
    batch = model.replay_buffer.sample(10)
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *args, **kwargs: batch)
    seen = {}
    for name, module in (("actor", model.actor), ("critic", model.critic), ("critic_target", model.critic_target)):
        extract = module.extract_features
        monkeypatch.setattr(module, "extract_features", lambda obs, *rest, name=name, extract=extract: (
            seen.setdefault(name, []).append(len(obs)), extract(obs, *rest))[1])  # fmt: skip
    model.train(1, 10)
    # the actor's next actions for the TD target take the whole batch; its update, the first 5 states
    assert seen["actor"] == [10, 5]
    # the critic's TD update and the next states' values take the whole batch; the target critic values the
    # proposals of the actor's target on the first 5 states
    assert seen["critic"] == [10]
    assert seen["critic_target"] == [10, 5]


def test_identical_twin_critics_keep_the_q_scale_above_float_rounding(tiny):
    # Q networks that agree exactly have no disagreement to floor the scale with; Q differences of float32 rounding
    # must not then become logit differences of order 1
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device="cpu", seed=0)
    features = th.randn(32, 3)
    with th.no_grad():
        for q_net in model.critic.q_networks:
            q_net[0].weight[:, -1] = 0.0  # no action dependence
            q_net[-1].bias.fill_(1000.0)  # a large value level
        model.critic.q_networks[1].load_state_dict(model.critic.q_networks[0].state_dict())
        spread, disagreement = action_profile(model.critic, features, "first")
    assert disagreement.item() == 0.0
    assert spread.item() >= 1e-4 * 1000.0 * 0.99  # at least 1e-4 of |Q|: rounding (1.2e-7 |Q|) moves logits <= alpha 1e-3


COMPILE_DEVICES = [
    pytest.param(device, marks=pytest.mark.skipif(missing_compiler(device) is not None, reason=f"cannot compile for {device}"))
    for device in ["cpu"] + (["cuda"] if th.cuda.is_available() else [])
]


@pytest.fixture
def inductor_fallback_random():
    """Inductor draws its random numbers from the same generator and ops as eager (``config.patch`` restores the
    setting afterwards; a monkeypatched attribute of the config module does not come back for later tests)."""
    with th._inductor.config.patch(fallback_random=True):
        yield


@pytest.mark.slow  # compiling takes 30-80 s on a CPU
@pytest.mark.parametrize("device", COMPILE_DEVICES)
def test_compiled_gradient_step_computes_what_the_eager_step_computes(tmp_path, inductor_fallback_random, device, tiny):
    # both see the same noise; the reset drops graphs compiled earlier in this process without that setting, which
    # the new models would reuse
    th._dynamo.reset()
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **tiny, device=device, seed=0)
    model.learn(100)
    model.save(tmp_path / "start")
    trained = {}
    for compile_step in (False, True):
        copy = SOM.load(tmp_path / "start", env=model.env, device=device, compile_step=compile_step)
        copy.replay_buffer = model.replay_buffer
        copy.set_logger(model.logger)
        set_random_seed(1)
        copy.train(gradient_steps=3, batch_size=32)
        trained[compile_step] = copy, dict(copy.logger.name_to_value)
    (eager, eager_logs), (compiled, compiled_logs) = trained[False], trained[True]
    assert compiled._compiled_losses is not None and eager._compiled_losses is None
    eager_weights, compiled_weights = eager.policy.state_dict(), compiled.policy.state_dict()
    for name, value in eager_weights.items():
        th.testing.assert_close(compiled_weights[name], value, rtol=1e-5, atol=1e-6, msg=name)
    for key in ("train/critic_loss", "train/actor_loss", "train/q_scale"):
        assert compiled_logs[key] == pytest.approx(eager_logs[key], rel=1e-5), key
    # the fit's precision 1 / sigma_t^2 near t = 0 magnifies the fused kernels' rounding
    assert compiled_logs["train/target_velocity_norm"] == pytest.approx(eager_logs["train/target_velocity_norm"], rel=1e-3)
    # the compiled functions are not saved; the file loads and acts as the model it came from
    compiled.save(tmp_path / "compiled")
    loaded = SOM.load(tmp_path / "compiled", device=device)
    observation = model.observation_space.sample()
    assert loaded.compile_step is True
    # to float32 rounding: the same weights in another memory layout may take another summation order in a matmul
    np.testing.assert_allclose(
        loaded.predict(observation, deterministic=True)[0],
        compiled.predict(observation, deterministic=True)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_face_fraction_is_the_share_of_the_flow_sample_coordinates_on_the_box_faces(tiny):
    model = SOM("MlpMeanFlowPolicy", "Pendulum-v1", **{**tiny, "batch_size": 256}, learning_rate=0.0, seed=0)
    model.learn(60)
    last_layer = model.actor.velocity_net[-1]
    fractions = []
    for bias in (-10.0, 0.0):  # u = bias at every (r, t): the flow's k-step sample is e - bias, clipped to the box
        with th.no_grad():
            last_layer.weight.zero_()
            last_layer.bias.fill_(bias)
        model.train(gradient_steps=1, batch_size=256)
        fractions.append(model.logger.name_to_value["train/face_fraction"])
    assert fractions[0] == 1.0  # e + 10 lies beyond the face +1 for every draw
    # e itself: P(|e| > 0.98) = 0.327 for a standard normal; 128 states of the actor's half of the batch
    assert fractions[1] == pytest.approx(0.327, abs=0.13)
