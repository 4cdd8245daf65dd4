"""Every input a user can give gets SAC's behaviour or a clear error: numbers, settings, observations, files, CLI."""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common import save_util

from sb3_som import SOM, MlpMeanFlowPolicy
from sb3_som.__main__ import main


@pytest.fixture(scope="module")
def saved_model(tiny_module: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "som.zip"
    SOM("MlpPolicy", "Pendulum-v1", **tiny_module, seed=0).save(path)
    return path


class NanObservationEnv(gym.Env):
    """Pendulum-shaped task whose observation turns NaN at step ``nan_step``; records the actions it receives."""

    def __init__(self, nan_step: int):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, (1,), dtype=np.float32)
        self.nan_step = nan_step
        self.steps = 0
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.steps += 1
        observation = np.full(3, np.nan if self.steps >= self.nan_step else 0.1, dtype=np.float32)
        return observation, 0.0, False, False, {}


class BoxEnv(gym.Env):
    """A one-step task with the given action bounds."""

    def __init__(self, low: list[float], high: list[float]):
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.action_space = spaces.Box(np.array(low, dtype=np.float32), np.array(high, dtype=np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


# numbers


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers(tmp_path):
    numpy_settings = dict(
        n_score_samples=np.int64(4),
        alpha=np.float32(2.0),
        batch_size=np.int64(16),
        gamma=np.float32(0.99),
        tau=np.float32(0.005),
        target_update_interval=np.int32(1),
        distillation_steps=np.int64(2),
    )
    model = SOM("MlpPolicy", "Pendulum-v1", learning_starts=30, policy_kwargs=dict(net_arch=[16]), **numpy_settings)
    for name, value in numpy_settings.items():
        stored = getattr(model, name)
        assert type(stored) is type(value.item()) and stored == value.item(), name
    model.learn(40)
    model.alpha = np.float64(3.0)
    assert type(model.alpha) is float
    model.save(tmp_path / "som")
    assert SOM.load(tmp_path / "som").alpha == 3.0


@pytest.mark.parametrize("name, value", [("n_score_samples", True), ("alpha", "1.0"), ("batch_size", np.float64(64.0))])
def test_bools_strings_and_floats_for_integer_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        SOM("MlpPolicy", "Pendulum-v1", **{name: value})


# settings after construction and at load


def test_settings_assigned_after_construction_are_checked_at_once(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    for name, value in [("alpha", -1.0), ("n_score_samples", 0), ("gamma", 1.5), ("q_scale_floor", "cosine")]:
        with pytest.raises(ValueError, match=name):
            setattr(model, name, value)
    with pytest.raises(ValueError, match="n_action_candidates"):
        model.policy.n_action_candidates = 0
    with pytest.raises(ValueError, match="sampling_steps"):
        model.policy.sampling_steps = 0
    assert (model.alpha, model.n_score_samples, model.policy.n_action_candidates, model.policy.sampling_steps) == (
        "auto",
        4,
        1,
        1,
    )


def test_settings_that_relate_to_each_other_are_checked_before_the_first_update(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    model.n_score_samples = 10**6  # the actor's 8 states x 10^6 proposals: checked with batch_size at learn
    with pytest.raises(ValueError, match="n_score_samples"):
        model.learn(60)
    assert model.num_timesteps == 0 and model._n_updates == 0


@pytest.mark.parametrize(
    "load_kwargs, name",
    [
        (dict(alpha=-1.0), "alpha"),
        (dict(n_score_samples=0), "n_score_samples"),
        (dict(custom_objects=dict(alpha=-1.0)), "alpha"),
        (dict(custom_objects=dict(n_score_samples=1)), "n_score_samples"),
        (dict(alpha=1e6), "alpha"),
        (dict(n_action_candidates=0), "n_action_candidates"),
        (dict(action_candidates_when="stochastic"), "action_candidates_when"),
    ],
)
def test_load_checks_settings_as_at_construction(saved_model, load_kwargs, name):
    with pytest.raises(ValueError, match=name):
        SOM.load(saved_model, **load_kwargs)


def test_load_sets_the_policy_inference_settings_and_save_keeps_them(saved_model, tmp_path):
    model = SOM.load(saved_model, n_action_candidates=4, sampling_steps=3, alpha=np.float32(2.0))
    assert (model.policy.n_action_candidates, model.actor.sampling_steps, model.alpha) == (4, 3, 2.0)
    observations = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=True)
    model.policy.action_candidates_when = "deterministic"
    model.save(tmp_path / "again")
    reloaded = SOM.load(tmp_path / "again")
    settings = (reloaded.policy.n_action_candidates, reloaded.policy.action_candidates_when, reloaded.policy.sampling_steps)
    assert settings == (4, "deterministic", 3)
    assert SOM.load(tmp_path / "again", action_candidates_when="always").policy.action_candidates_when == "always"
    np.testing.assert_array_equal(reloaded.predict(observations, deterministic=True)[0], actions)


def test_inference_settings_live_on_the_policy_only(tiny):
    tiny = {**tiny, "policy_kwargs": dict(net_arch=[16])}
    assert SOM("MlpPolicy", "Pendulum-v1", **tiny).policy.n_action_candidates == 1  # the policy's default
    from_kwargs = SOM("MlpPolicy", "Pendulum-v1", **{**tiny, "policy_kwargs": dict(net_arch=[16], sampling_steps=3)})
    assert from_kwargs.actor.sampling_steps == from_kwargs.policy.sampling_steps == 3
    for name in ("n_action_candidates", "action_candidates_when", "sampling_steps"):
        assert not hasattr(from_kwargs, name)  # no second copy on the model
        with pytest.raises(TypeError, match=name):
            SOM("MlpPolicy", "Pendulum-v1", **tiny, **{name: 1})


def test_best_of_n_for_deterministic_actions_leaves_exploration_to_the_policy(tiny):
    best_of_4 = dict(net_arch=[16], n_action_candidates=4, action_candidates_when="deterministic")
    model = SOM("MlpPolicy", "Pendulum-v1", **{**tiny, "policy_kwargs": best_of_4}, seed=0)
    observations = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32))
    with th.no_grad():
        th.manual_seed(1)
        explored = model.policy(observations)
        th.manual_seed(1)
        sampled = model.actor(observations)  # the policy's own sample, one actor call and no critic call
        np.testing.assert_array_equal(explored.numpy(), sampled.numpy())
        best = model.policy(observations, deterministic=True)
        np.testing.assert_array_equal(best.numpy(), model.policy._best_of_n(observations, deterministic=True).numpy())
        assert not th.equal(best, model.actor(observations, deterministic=True))  # Best-of-4 picks another action
    model.policy.action_candidates_when = "always"
    with th.no_grad():
        th.manual_seed(1)
        assert not th.equal(model.policy(observations), sampled)
    with pytest.raises(ValueError, match=r"action_candidates_when must be one of \('always', 'deterministic'\)"):
        model.policy.action_candidates_when = "exploring"


def test_best_of_n_changed_on_the_policy_predicts_a_batch(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, seed=0)
    observations = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    model.policy.n_action_candidates = 4
    first, _ = model.predict(observations, deterministic=True)
    second, _ = model.predict(observations, deterministic=True)
    assert first.shape == (64, 1)
    np.testing.assert_array_equal(first, second)
    model.policy.n_action_candidates = 1
    one_step, _ = model.predict(observations, deterministic=True)
    with th.no_grad():  # one actor call at e = 0, rescaled to the action box
        expected = model.policy.actor(th.as_tensor(observations), deterministic=True).numpy()
    np.testing.assert_allclose(one_step, model.policy.unscale_action(expected), rtol=1e-6)
    assert not np.array_equal(one_step, first)  # Best-of-4 kept another of its candidates at some states


# observations


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observations_are_refused_at_predict(tiny, bad):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.predict(np.array([bad, 0.0, 0.0], dtype=np.float32))
    model.policy.n_action_candidates = 3
    with pytest.raises(ValueError, match="NaN or inf"):
        model.predict(np.array([[0.0, bad, 0.0]], dtype=np.float32), deterministic=True)


def test_a_nan_observation_during_training_stops_before_an_action_reaches_the_env(tiny):
    env = NanObservationEnv(nan_step=40)
    model = SOM("MlpPolicy", env, **tiny, seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.learn(80)
    assert len(env.actions) == 40 and all(np.isfinite(action).all() for action in env.actions)


# upper bounds and the action box


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=1e30), r"alpha must be <= 10000.*overflow"),
        (dict(alpha=math.inf), "alpha"),
        (dict(policy_kwargs=dict(n_action_candidates=10**12)), r"n_action_candidates must be <= 1024"),
        (dict(n_score_samples=10**12), r"n_score_samples=1000000000000 with batch_size=256 .* GiB"),
        (dict(batch_size=2**20, n_score_samples=16), r"n_score_samples <= 8 at this batch_size"),
    ],
)
def test_sizes_and_scales_beyond_their_bounds_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SOM("MlpPolicy", "Pendulum-v1", **kwargs)


def test_a_degenerate_action_box_is_refused_naming_the_dimension():
    with pytest.raises(ValueError, match=r"action dimension 1 has low=1\.0, high=1\.0"):
        SOM("MlpPolicy", BoxEnv([0.0, 1.0], [1.0, 1.0]))


def test_an_unbounded_action_box_is_refused():
    with pytest.raises(AssertionError, match="finite lower and upper bound"):  # SB3's check, before the policy's
        SOM("MlpPolicy", BoxEnv([-np.inf, 0.0], [1.0, 1.0]))
    box = spaces.Box(np.array([-1.0, 0.0], dtype=np.float32), np.array([1.0, np.inf], dtype=np.float32))
    with pytest.raises(ValueError, match="finite action bounds; action dimension 1"):
        MlpMeanFlowPolicy(spaces.Box(-1.0, 1.0, (2,)), box, lambda _: 1e-3)


# files


def test_a_failed_save_leaves_the_previous_model_file_loadable(tiny, monkeypatch, tmp_path):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, seed=0)
    model.save(tmp_path / "som")
    good = (tmp_path / "som.zip").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(save_util.th, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "som")
    monkeypatch.undo()
    assert (tmp_path / "som.zip").read_bytes() == good
    assert [path.name for path in tmp_path.iterdir()] == ["som.zip"]
    SOM.load(tmp_path / "som")


def test_a_failed_replay_buffer_save_leaves_the_previous_file_loadable(tiny, monkeypatch, tmp_path):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, buffer_size=100, seed=0)
    model.learn(20)
    model.save_replay_buffer(tmp_path / "buffer")

    def crash(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(save_util.pickle, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save_replay_buffer(tmp_path / "buffer")
    monkeypatch.undo()
    assert [path.name for path in tmp_path.iterdir()] == ["buffer.pkl"]
    model.load_replay_buffer(tmp_path / "buffer")
    assert model.replay_buffer.size() == 20


def test_loading_another_algorithms_file_names_that_algorithm(tmp_path):
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, policy_kwargs=dict(net_arch=[8])).save(tmp_path / "sac")
    with pytest.raises(ValueError, match=r"sac.zip holds a SAC model .* use SAC.load"):
        SOM.load(tmp_path / "sac")


def _rewrite_zip(source: Path, target: Path, change) -> None:
    """Copy the zip ``source`` to ``target`` with ``change(name, data) -> bytes | None`` (None drops the member)."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as copy:
        for name in archive.namelist():
            data = change(name, archive.read(name))
            if data is not None:
                copy.writestr(name, data)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", "not a zip archive"),
        ("cut in half", r"not a complete saved model .* \['data', 'policy.pth'\] missing"),
        ("flipped bytes", "fails its CRC check"),
        ("no policy", r"\['policy.pth'\] missing"),
        ("truncated member", r"\['policy.pth'\] truncated"),
        ("empty member", r"\['critic.optimizer.pth'\] truncated"),
        ("data not json", "'data' member is not JSON"),
    ],
)
def test_truncated_or_damaged_files_are_refused_naming_the_file(saved_model, tmp_path, damage, message):
    content = saved_model.read_bytes()
    damaged = tmp_path / "damaged.zip"
    if damage == "truncated":
        damaged.write_bytes(content[:100])
    elif damage == "cut in half":  # zipfile then finds the directory of the torch file inside
        damaged.write_bytes(content[: len(content) // 2])
    elif damage == "flipped bytes":
        with zipfile.ZipFile(saved_model) as archive:
            offset = archive.getinfo("policy.pth").header_offset + 200
        damaged.write_bytes(content[:offset] + bytes(255 - b for b in content[offset : offset + 16]) + content[offset + 16 :])
    else:
        change = {
            "no policy": lambda name, data: None if name == "policy.pth" else data,
            "truncated member": lambda name, data: data[: len(data) // 2] if name == "policy.pth" else data,
            "empty member": lambda name, data: b"" if name == "critic.optimizer.pth" else data,
            "data not json": lambda name, data: data[:-10] if name == "data" else data,
        }[damage]
        _rewrite_zip(saved_model, damaged, change)
    with pytest.raises(ValueError, match=message) as error:
        SOM.load(damaged)
    assert "damaged.zip" in str(error.value)


def test_a_non_finite_loss_undoes_every_gradient_step_of_the_train_call(tiny, monkeypatch):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, seed=0)
    model.learn(60)
    weights = {name: value.clone() for name, value in model.policy.state_dict().items()}
    optimizer_states = [
        {
            index: {key: value.clone() for key, value in state.items()}
            for index, state in optimizer.state_dict()["state"].items()
        }
        for optimizer in (model.actor.optimizer, model.critic.optimizer)
    ]
    n_updates = model._n_updates
    calls = []
    actor_loss = model._actor_loss

    def actor_loss_infinite_at_the_third_step(replay_data, td_error_rms):
        loss, logs = actor_loss(replay_data, td_error_rms)
        calls.append(len(calls))
        return (loss * float("inf") if len(calls) == 3 else loss), logs

    monkeypatch.setattr(model, "_actor_loss", actor_loss_infinite_at_the_third_step)
    with pytest.raises(FloatingPointError, match=r"actor_loss not finite in this train\(\) call of 4 gradient step\(s\)"):
        model.train(gradient_steps=4, batch_size=16)
    assert len(calls) == 4, "the steps after the non-finite one ran, and are undone with it"
    after = model.policy.state_dict()
    assert all(th.equal(weights[name], after[name]) for name in weights), "actor, critic and target critic restored"
    for optimizer, saved in zip((model.actor.optimizer, model.critic.optimizer), optimizer_states, strict=True):
        state = optimizer.state_dict()["state"]
        assert state.keys() == saved.keys()
        assert all(th.equal(state[i][key], saved[i][key]) for i in saved for key in saved[i])
    assert model._n_updates == n_updates
    monkeypatch.undo()
    model.train(gradient_steps=0, batch_size=16)  # no step: nothing to check, nothing changes
    assert model._n_updates == n_updates
    model.train(gradient_steps=2, batch_size=16)  # training goes on from the restored state
    assert all(th.isfinite(value).all() for value in model.policy.state_dict().values())


# command line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--timesteps", "-5"], "argument --timesteps: must be an integer >= 1, got -5"),
        (["--eval-episodes", "0"], "argument --eval-episodes: must be an integer >= 1, got 0"),
        (["--env", "CartPole-v1"], "--env CartPole-v1: SOM needs a continuous (Box) action space"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("python -m sb3_som: error:")


def test_cli_evaluates_on_a_monitored_env_without_warnings(capsys, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["--timesteps", "20", "--eval-episodes", "1", "--no-progress-bar", "--save", str(tmp_path / "quick")])
    assert "over 1 episodes" in capsys.readouterr().out
    assert (tmp_path / "quick.zip").exists()
    assert not [warning for warning in caught if "Monitor" in str(warning.message)]


def test_cli_help_shows_every_default_and_the_saved_name_follows_the_env(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal's width
    for default in ("(default: Pendulum-v1)", "(default: 10000)", "(default: 0)", "(default: 10)", "(default: som_ENV"):
        assert default in help_text, default
    assert help_text.count("--no-progress-bar") == 2 and "train without the progress bar" in help_text
    monkeypatch.chdir(tmp_path)
    main(["--env", "MountainCarContinuous-v0", "--timesteps", "20", "--eval-episodes", "1", "--no-progress-bar"])
    assert (tmp_path / "som_mountaincarcontinuous_v0.zip").exists()
