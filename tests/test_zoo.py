"""rl-zoo3 with ``--algo som``: every command, the Hub (faked), plots, tuning on shared storage, memory of enjoy."""

from __future__ import annotations

import glob
import importlib
import os
import pickle
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import yaml

pytest.importorskip("rl_zoo3")
optuna = pytest.importorskip("optuna")

import httpx2  # noqa: E402  (huggingface_hub's HTTP client)
import requests  # noqa: E402
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError  # noqa: E402
from rl_zoo3.hyperparams_opt import sample_sac_params  # noqa: E402

from sb3_som import SOM  # noqa: E402
from sb3_som import zoo as som_zoo  # noqa: E402
from sb3_som.zoo import hyperparams_file, main, sample_som_params, train_arguments  # noqa: E402

TINY = ["-params", "learning_starts:50", "batch_size:16", "n_score_samples:4", "policy_kwargs:dict(net_arch=[16])"]


def zoo(*args: str, cwd: Path, timeout: int = 600, **env_vars: str) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_som.zoo ...`` in a fresh process; fail with its output on error."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", **env_vars}  # headless rendering for record_video
    result = subprocess.run(
        [sys.executable, "-m", "sb3_som.zoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def saved_config(config_folder: Path) -> dict[str, Any]:
    """The hyperparameters that a zoo run saved (``config.yml``, an ordered dict in YAML)."""
    return dict(yaml.load((config_folder / "config.yml").read_text(), Loader=yaml.UnsafeLoader))


def test_hyperparams_file_is_shipped_and_lists_the_tasks():
    text = Path(hyperparams_file()).read_text()
    for env_id in ("default:", "Pendulum-v1:", "HalfCheetah-v5:", "Humanoid-v5:", "Reacher-v5:"):
        assert env_id in text


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v5"])
def test_train_then_enjoy(tmp_path, env_id):
    if env_id.endswith("-v5"):
        pytest.importorskip("mujoco")
    zoo("train", "--algo", "som", "--env", env_id, "-n", "120", "-f", str(tmp_path), "--eval-freq", "-1", *TINY, cwd=tmp_path)
    assert (tmp_path / "som" / f"{env_id}_1" / f"{env_id}.zip").exists()
    zoo("enjoy", "--algo", "som", "--env", env_id, "-f", str(tmp_path), "-n", "60", "--no-render", cwd=tmp_path)
    if env_id == "Pendulum-v1":
        zoo(
            "record_video",
            "--algo",
            "som",
            "--env",
            env_id,
            "-f",
            str(tmp_path),
            "-n",
            "20",
            "-o",
            str(tmp_path / "video"),
            cwd=tmp_path,
        )
        assert list((tmp_path / "video").glob("*.mp4"))
        # record_training starts record_video in a child process: with a PATH whose `python` (if any) is not this
        # interpreter and that has no ffmpeg, the child still has SOM registered and ffmpeg is found
        zoo("record_training", "--algo", "som", "--env", env_id, "-f", str(tmp_path), "-n", "20", cwd=tmp_path,
            PATH="/usr/bin:/bin")  # fmt: skip
        assert (tmp_path / "som" / f"{env_id}_1" / "videos" / "training.mp4").stat().st_size > 0


def test_help_lists_every_command():
    script = Path(sys.executable).parent / "sb3-som-zoo"  # the console script
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "enjoy", "record_video", "record_training", "push_to_hub", "load_from_hub"):
        assert f"  {command} " in result.stdout
    unknown = subprocess.run([sys.executable, "-m", "sb3_som.zoo", "plot"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "unknown command 'plot'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "som_yml"),
    [
        (["--algo", "som", "--env", "Pendulum-v1"], True),
        (["--env", "Pendulum-v1", "--algo=som", "-n", "10"], True),
        (["--algo", "sac", "--env", "MountainCarContinuous-v0"], False),
        (["--algo", "td3", "--env", "Pendulum-v1"], False),
        (["--env", "Pendulum-v1"], False),  # the zoo's default algorithm, ppo
        (["--algo", "som", "--env", "Pendulum-v1", "-conf", "mine.yml"], False),
    ],
)
def test_som_yml_is_the_default_conf_file_for_som_only(args, som_yml):
    result = train_arguments(args)
    assert result[: len(args)] == args
    assert (result[len(args) :] == ["--conf-file", hyperparams_file()]) == som_yml
    if not som_yml:
        assert result == args


def test_sac_through_the_entry_point_gets_the_zoos_own_entry(tmp_path):
    zoo("train", "--algo", "sac", "--env", "MountainCarContinuous-v0", "-n", "64", "-f", str(tmp_path), "--eval-freq", "-1",
        "-params", "batch_size:16", "gradient_steps:1", cwd=tmp_path)  # fmt: skip
    config = saved_config(tmp_path / "sac" / "MountainCarContinuous-v0_1" / "MountainCarContinuous-v0")
    assert config["use_sde"] is True and config["ent_coef"] == 0.1  # rl-zoo3's sac.yml entry; som.yml has neither key


@pytest.mark.parametrize("env_id", ["MultiGoalBandit-v0", "TwoMoonsBandit-v0"])
def test_bandits_are_registered_gymnasium_envs(env_id):
    for make_id in (env_id, f"sb3_som:{env_id}"):
        env = gym.make(make_id)
        obs, _ = env.reset(seed=0)
        _, reward, terminated, _, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and 0.0 <= reward <= 1.0 and terminated
    assert f"{env_id}:" in Path(hyperparams_file()).read_text()


@pytest.fixture(scope="module")
def bandit_logs(tmp_path_factory) -> Path:
    """zoo logs of a short SOM run on the registered multi-goal bandit, with evaluations (for the plots)."""
    folder = tmp_path_factory.mktemp("bandit")
    zoo("train", "--algo", "som", "--env", "MultiGoalBandit-v0", "--gym-packages", "sb3_som", "-n", "400", "-f", str(folder),
        "--eval-freq", "100", "--eval-episodes", "5", *TINY, cwd=folder)  # fmt: skip
    run = folder / "som" / "MultiGoalBandit-v0_1"
    assert (run / "MultiGoalBandit-v0.zip").exists() and (run / "evaluations.npz").exists()
    assert saved_config(run / "MultiGoalBandit-v0")["alpha"] == 0.5  # som.yml's bandit entry
    return folder


def run_plot_script(module: str, args: list[str], monkeypatch) -> list[Any]:
    """Run rl_zoo3.plots.MODULE in this process; returns the figures that it would have shown."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown: list[Any] = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.extend(plt.figure(n) for n in plt.get_fignums()))
    monkeypatch.setattr(sys, "argv", [module, *args])
    import runpy

    runpy.run_module(module, run_name="__main__")
    return shown


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # rl_zoo3.plots imports them
def test_zoo_plots_of_som_logs(bandit_logs, monkeypatch, tmp_path):
    pytest.importorskip("seaborn")
    figures = run_plot_script("rl_zoo3.plots.plot_train", ["-a", "som", "-e", "MultiGoalBandit-v0", "-f", str(bandit_logs)],
                              monkeypatch)  # fmt: skip
    assert any(len(axes.lines) > 0 for figure in figures for axes in figure.axes)  # the training reward curve
    output = tmp_path / "all_plots"
    run_plot_script("rl_zoo3.plots.all_plots", ["-a", "som", "-e", "MultiGoalBandit-v0", "-f", str(bandit_logs), "-o",
                                                str(output), "--no-display"], monkeypatch)  # fmt: skip
    with open(f"{output}.pkl", "rb") as file:
        results = pickle.load(file)
    curves = results["MultiGoalBandit-v0"]
    assert len(curves) == 1 and "SOM" in next(iter(curves))
    assert len(next(iter(curves.values()))["timesteps"]) == 4  # the four evaluations of the run


class FakeHfApi:
    """The Hugging Face Hub client as rl_zoo3.push_to_hub uses it, with every upload kept in ``uploads``."""

    uploads: ClassVar[dict[str, Path]] = {}

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        return f"https://huggingface.co/{repo_id}"

    def snapshot_download(self, repo_id: str, local_dir: Path) -> None:
        Path(local_dir).mkdir(parents=True, exist_ok=True)

    def upload_folder(self, repo_id: str, folder_path: Path, commit_message: str) -> None:
        self.uploads[repo_id] = Path(folder_path)


def test_push_to_hub_then_load_from_hub_then_enjoy(bandit_logs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # push_to_hub stages the repository under ./hub
    som_zoo.provide_generate_metadata()  # rl_zoo3.push_to_hub imports it from huggingface_sb3
    monkeypatch.setattr(importlib.import_module("rl_zoo3.push_to_hub"), "HfApi", FakeHfApi)
    monkeypatch.setattr(sys, "argv", ["sb3-som-zoo"])
    main(["push_to_hub", "--algo", "som", "--env", "MultiGoalBandit-v0", "-f", str(bandit_logs), "-orga", "someone",
          "--no-render"])  # fmt: skip
    repo = FakeHfApi.uploads["someone/som-MultiGoalBandit-v0"]
    card = (repo / "README.md").read_text()
    assert "# **SOM** Agent playing **MultiGoalBandit-v0**" in card and "InferenceSOM" not in card
    assert "python -m sb3_som.zoo enjoy --algo som --env MultiGoalBandit-v0" in card and "rl_zoo3.enjoy" not in card
    assert "from sb3_som import SOM" in card
    assert "sb3-som" in card.split("---")[1] and "mean_reward" in card  # the metadata header: tags and the result
    SOM.load(repo / "som-MultiGoalBandit-v0.zip").predict(np.zeros((1, 1), dtype=np.float32))

    def fake_load_from_hub(repo_id: str, filename: str) -> str:
        path = FakeHfApi.uploads[repo_id] / filename
        if not path.exists():  # as huggingface_hub 1.x and later report a file that the repository lacks
            response = httpx2.Response(404, request=httpx2.Request("GET", f"https://huggingface.co/{repo_id}/{filename}"))
            raise RemoteEntryNotFoundError(f"{repo_id} has no {filename}", response=response)
        return str(path)

    monkeypatch.setattr("huggingface_sb3.load_from_hub", fake_load_from_hub)
    downloaded = tmp_path / "downloaded"
    main(["load_from_hub", "--algo", "som", "--env", "MultiGoalBandit-v0", "-orga", "someone", "-f", str(downloaded)])
    assert (downloaded / "som" / "MultiGoalBandit-v0_1" / "MultiGoalBandit-v0.zip").exists()
    # the zoo script's own HTTPError is back: the replacement holds only while the command runs
    assert importlib.import_module("rl_zoo3.load_from_hub").HTTPError is requests.exceptions.HTTPError

    def offline_load_from_hub(repo_id: str, filename: str) -> str:
        if filename == "vec_normalize.pkl":  # no connection and no cached copy: not "the repository has none"
            raise LocalEntryNotFoundError("cannot reach the Hub and the file is not in the local cache")
        return fake_load_from_hub(repo_id, filename)

    monkeypatch.setattr("huggingface_sb3.load_from_hub", offline_load_from_hub)
    monkeypatch.setattr(importlib.import_module("rl_zoo3.load_from_hub"), "load_from_hub", offline_load_from_hub)
    with pytest.raises(LocalEntryNotFoundError):
        main(["load_from_hub", "--algo", "som", "--env", "MultiGoalBandit-v0", "-orga", "someone", "-f",
              str(tmp_path / "offline")])  # fmt: skip
    assert not (tmp_path / "offline" / "som" / "MultiGoalBandit-v0_1" / "MultiGoalBandit-v0.zip").exists()
    main(["enjoy", "--algo", "som", "--env", "MultiGoalBandit-v0", "-f", str(downloaded), "-n", "20", "--no-render"])


def test_push_to_hub_model_card_of_other_algorithms_is_the_zoos(monkeypatch):
    som_zoo.provide_generate_metadata()
    card, metadata = importlib.import_module("rl_zoo3.push_to_hub").generate_model_card(
        "sac", "SAC", "someone", "Pendulum-v1", -150.0, 10.0, {}, {}
    )
    assert "python -m rl_zoo3.enjoy --algo sac" in card and metadata["tags"][0] == "Pendulum-v1"


@pytest.mark.parametrize("her", [False, True])
def test_optuna_sampler_records_sacs_user_attributes_and_samples_her(her):
    her_kwargs = {"n_sampled_goal": 4, "goal_selection_strategy": "future"}
    additional_args = {"using_her_replay_buffer": her, "her_kwargs": her_kwargs}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    som_trial, sac_trial = study.ask(), study.ask()
    hyperparams = sample_som_params(som_trial, 2, 1, dict(additional_args))
    sample_sac_params(sac_trial, 2, 1, dict(additional_args))
    assert set(sac_trial.user_attrs) <= set(som_trial.user_attrs)
    assert som_trial.user_attrs["gamma"] == pytest.approx(hyperparams["gamma"])
    assert som_trial.user_attrs["batch_size"] == hyperparams["batch_size"]
    assert som_trial.user_attrs["n_score_samples"] == hyperparams["n_score_samples"]
    her_params = {"n_sampled_goal", "goal_selection_strategy"}
    assert (her_params <= set(som_trial.params)) == her and (her_params <= set(sac_trial.params)) == her
    if her:
        buffer_kwargs = hyperparams["replay_buffer_kwargs"]
        assert buffer_kwargs["n_sampled_goal"] == som_trial.params["n_sampled_goal"]
        assert buffer_kwargs["goal_selection_strategy"] == som_trial.params["goal_selection_strategy"]
        assert her_kwargs["n_sampled_goal"] == 4  # the yml's kwargs are copied, not changed
        from stable_baselines3 import HerReplayBuffer
        from stable_baselines3.common.envs import BitFlippingEnv

        hyperparams.update(batch_size=16, n_score_samples=4, learning_starts=40)
        hyperparams["policy_kwargs"]["net_arch"] = [16]
        model = SOM("MultiInputPolicy", BitFlippingEnv(n_bits=4, continuous=True), replay_buffer_class=HerReplayBuffer,
                    **hyperparams)  # fmt: skip
        model.learn(80)


def optimize(storage: str, study: str, log_dir: Path) -> subprocess.Popen:
    args = ["train", "--algo", "som", "--env", "Pendulum-v1", "-n", "100", "-optimize", "--n-trials", "1"]
    args += ["--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1"]
    args += ["--storage", storage, "--study-name", study, "-f", str(log_dir), *TINY]
    return subprocess.Popen(
        [sys.executable, "-m", "sb3_som.zoo", *args], cwd=log_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_two_workers(storage: str, tmp_path: Path) -> None:
    # create the study (and the storage's tables) once, as README's tuning section says, then start the workers
    optuna.create_study(study_name="som_shared", storage=storage, direction="maximize")
    workers = [optimize(storage, "som_shared", tmp_path / f"worker{i}") for i in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), "\n".join(out[-3000:] for out in outputs)
    study = optuna.load_study(study_name="som_shared", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2  # one trial from each worker landed in the shared study
    assert {"alpha", "n_score_samples_pow", "learning_rate"} <= set(complete[0].params)


def test_two_workers_share_one_sqlite_study(tmp_path):
    for i in range(2):
        (tmp_path / f"worker{i}").mkdir()
    run_two_workers(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


def find_postgres_binaries() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture
def postgres_url(tmp_path):
    """A PostgreSQL server of Debian's packages on a free loopback port, for this test only."""
    pytest.importorskip("psycopg")
    binaries = find_postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (Debian's 'postgresql' package; .ci/run installs it)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    # pytest's tmp_path is private to root, so the server's directory lives in /tmp itself
    data = Path(tempfile.mkdtemp(prefix="sb3-som-pg-"))
    if run_as:
        shutil.chown(data, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run(
        [*run_as, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "som"], check=True, capture_output=True
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    pg_ctl = [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log")]
    started = subprocess.run([*pg_ctl, "-o", options, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"the PostgreSQL server did not start: {started.stdout} {started.stderr}")
    try:
        yield f"postgresql://som@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "stop", "-m", "fast"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    for i in range(2):
        (tmp_path / f"worker{i}").mkdir()
    run_two_workers(postgres_url, tmp_path)


def test_enjoy_loads_a_humanoid_model_without_its_replay_buffer(tmp_path):
    pytest.importorskip("mujoco")
    model = SOM("MlpPolicy", "Humanoid-v5", buffer_size=1_000_000)  # a full-size training buffer
    log_dir = tmp_path / "som" / "Humanoid-v5_1"
    log_dir.mkdir(parents=True)
    model.save(log_dir / "Humanoid-v5")
    del model
    # every replay buffer the enjoy process creates is recorded (numpy allocates lazily, so memory use
    # would not show a 1e6-transition buffer that is never written)
    code = (
        "import sys; from stable_baselines3.common import buffers; sizes = []; init = buffers.ReplayBuffer.__init__; "
        "buffers.ReplayBuffer.__init__ = lambda self, size, *a, **k: (sizes.append(size), init(self, size, *a, **k))[1]; "
        f"sys.argv = ['sb3_som.zoo', 'enjoy', '--algo', 'som', '--env', 'Humanoid-v5', '-f', {str(tmp_path)!r}, "
        "'-n', '20', '--no-render']; "
        "from sb3_som.zoo import main; main(); "
        "print('BUFFER_SIZES', sizes)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BUFFER_SIZES [1]" in result.stdout, result.stdout[-2000:]
