"""Cases where SOM must behave as SAC does (or fail at once, naming the cause): copies of compiled models, saving over
existing paths, empty batches, huge rewards and bounds, SAC's own arguments, warnings, files that run code."""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC

from sb3_som import SOM
from sb3_som.persistence import check_model_file
from sb3_som.policies import MeanFlowPolicy

SAC_TINY = dict(learning_starts=20, batch_size=16, policy_kwargs=dict(net_arch=[16]))


def test_a_deep_copy_of_a_compiled_model_compiles_its_own_losses_and_pickles(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, compile_step=True, device="cpu")
    critic_loss, actor_loss = model._loss_functions()  # the compiled functions (compiled at their first call)
    copied = copy.deepcopy(model)
    assert copied._compiled_losses is None  # not shared: its own are built at its first gradient step
    copied_losses = copied._loss_functions()
    assert copied_losses[0] is not critic_loss and copied_losses[1] is not actor_loss
    for function, owner in ((critic_loss, model), (copied_losses[0], copied)):
        assert function._torchdynamo_orig_callable.__self__ is owner  # each bound to its own model's weights
    restored = pickle.loads(pickle.dumps(model))
    assert restored._compiled_losses is None and restored.compile_step


@pytest.mark.slow
def test_a_deep_copy_of_a_compiled_model_trains_its_own_weights(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **tiny, compile_step=True, device="cpu").learn(40)
    copied = copy.deepcopy(model)
    original_actor = [p.detach().clone() for p in model.actor.parameters()]
    copied_actor = [p.detach().clone() for p in copied.actor.parameters()]
    copied.learn(30, reset_num_timesteps=False)
    assert all(th.equal(a, b) for a, b in zip(original_actor, model.actor.parameters(), strict=True))
    assert not all(th.equal(a, b) for a, b in zip(copied_actor, copied.actor.parameters(), strict=True))
    pickle.loads(pickle.dumps(copied)).learn(10, reset_num_timesteps=False)


def save_both(tiny: dict, tmp_path: Path, name: str, prepare) -> dict[str, object]:
    """Prepare ``name`` for SAC and for SOM alike (``prepare(path)``), save each model there: what each save did
    (saved, with its warnings, or the error), and the path's permission bits and whether it holds a model after."""
    outcomes = {}
    for algo, model in (
        ("sac", SAC("MlpPolicy", "Pendulum-v1", **SAC_TINY)),
        ("som", SOM("MlpPolicy", "Pendulum-v1", **tiny)),
    ):
        folder = tmp_path / algo
        folder.mkdir()
        path = folder / name
        prepare(path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.save(path)
            outcome: tuple = ("saved", sorted(str(w.message).replace(str(folder), "") for w in caught))
        except OSError as error:
            outcome = ("error", type(error).__name__)
        try:
            outcomes[algo] = (*outcome, path.stat().st_mode & 0o777, zipfile.is_zipfile(path))
        finally:
            for entry in folder.rglob("*"):
                entry.chmod(0o700 if entry.is_dir() else 0o600)
            folder.chmod(0o700)
    return outcomes


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_saving_over_a_file_keeps_its_mode_or_refuses_as_sb3_does(tiny, tmp_path, mode):
    def prepare(path: Path) -> None:
        path.write_bytes(b"old")
        path.chmod(mode)

    outcomes = save_both(tiny, tmp_path, "model.zip", prepare)
    assert outcomes["som"] == outcomes["sac"]


def test_saving_through_a_symbolic_link_updates_its_target_as_sb3_does(tiny, tmp_path):
    def prepare(path: Path) -> None:
        (path.parent / "run_7.zip").write_bytes(b"old")
        path.symlink_to("run_7.zip")

    outcomes = save_both(tiny, tmp_path, "latest.zip", prepare)
    assert outcomes["som"] == outcomes["sac"]
    for algo in ("sac", "som"):
        link = tmp_path / algo / "latest.zip"
        assert link.is_symlink() and zipfile.is_zipfile(tmp_path / algo / "run_7.zip"), algo


def test_saving_over_a_hard_link_keeps_the_link_as_sb3_does(tiny, tmp_path):
    def prepare(path: Path) -> None:
        (path.parent / "other.zip").write_bytes(b"old")
        os.link(path.parent / "other.zip", path)

    outcomes = save_both(tiny, tmp_path, "model.zip", prepare)
    assert outcomes["som"] == outcomes["sac"]
    for algo in ("sac", "som"):
        assert zipfile.is_zipfile(tmp_path / algo / "other.zip"), algo  # the other name sees the new model


def test_saving_to_a_path_that_is_a_folder_saves_beside_it_as_sb3_does(tiny, tmp_path):
    outcomes = save_both(tiny, tmp_path, "model.zip", lambda path: path.mkdir())
    assert outcomes["som"] == outcomes["sac"] and outcomes["som"][0] == "saved"
    assert zipfile.is_zipfile(tmp_path / "som" / "model.zip_2")


def test_saving_a_writable_file_in_a_folder_that_takes_no_new_file_works_as_sb3_does(tiny, tmp_path):
    def prepare(path: Path) -> None:
        path.write_bytes(b"old")
        path.parent.chmod(0o500)

    outcomes = save_both(tiny, tmp_path, "model.zip", prepare)
    assert outcomes["som"] == outcomes["sac"] and outcomes["som"][0] == "saved"
    assert zipfile.is_zipfile(tmp_path / "som" / "model.zip")


def test_best_of_n_on_an_empty_batch_returns_an_empty_batch_of_actions(tiny):
    model = SOM("MlpPolicy", "Pendulum-v1", **{**tiny, "policy_kwargs": dict(net_arch=[16], n_action_candidates=4)})
    for deterministic in (True, False):
        actions, _ = model.predict(np.zeros((0, 3), np.float32), deterministic=deterministic)
        assert actions.shape == (0, 1)


class HugeRewardPendulum(gym.Wrapper):
    """Pendulum-v1 whose rewards are scaled to about 1e20: finite, but their squared TD errors overflow float32."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, float(reward) * 1e19 - 1e20, terminated, truncated, info


def test_huge_finite_rewards_stop_training_with_an_error_naming_the_reward_scale(tiny):
    model = SOM("MlpPolicy", HugeRewardPendulum(gym.make("Pendulum-v1")), **tiny, seed=0)
    with pytest.raises(FloatingPointError, match=r"rewards reach \|r\| = \d\.\d+e\+20.*Scale the rewards down"):
        model.learn(200)


def test_action_bounds_whose_width_overflows_are_refused():
    class WideBox(gym.Env):
        observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        action_space = spaces.Box(np.finfo(np.float32).min, np.finfo(np.float32).max, (2,), dtype=np.float32)

    with pytest.raises(ValueError, match=r"width high - low is finite .* action dimension 0"):
        SOM("MlpPolicy", WideBox())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ent_coef="auto"), r"SOM has no argument 'ent_coef' \(a SAC argument\): its inverse temperature is alpha"),
        (dict(target_entropy=-1.0), r"'target_entropy'.*set alpha"),
        (dict(use_sde=True), r"'use_sde'.*no gSDE"),
        (dict(policy_kwargs=dict(log_std_init=-3)), r"SOM's policy has no argument 'log_std_init'.*set alpha"),
    ],
)
def test_sac_only_arguments_are_refused_naming_what_replaces_them(kwargs, message):
    SAC("MlpPolicy", "Pendulum-v1", **kwargs)  # SAC takes them
    with pytest.raises(TypeError, match=message):
        SOM("MlpPolicy", "Pendulum-v1", **kwargs)


def test_the_first_gradient_step_raises_no_warning_under_w_error():
    script = (
        "from sb3_som import SOM\n"
        "SOM('MlpPolicy', 'Pendulum-v1', learning_starts=20, batch_size=16, policy_kwargs=dict(net_arch=[16])).learn(40)\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


class RunsCode:
    """A pickle that, when loaded, creates the file it names (a stand-in for a file that runs arbitrary code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_file_check_runs_nothing_the_file_holds(tiny, tmp_path):
    path, marker = tmp_path / "model.zip", tmp_path / "ran"
    SOM("MlpPolicy", "Pendulum-v1", **tiny).save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(RunsCode(str(marker)))).decode()
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    check_model_file(path, MeanFlowPolicy)
    assert not marker.exists()
    assert "can run arbitrary code" in SOM.load.__doc__
