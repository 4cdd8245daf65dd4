"""rl-zoo3 with ``--algo som``: train, enjoy, tuning on shared storage, memory of enjoy."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")
optuna = pytest.importorskip("optuna")

from sb3_som import SOM  # noqa: E402
from sb3_som.zoo import hyperparams_file  # noqa: E402

TINY = ["-params", "learning_starts:50", "batch_size:16", "n_score_samples:4", "policy_kwargs:dict(net_arch=[16])"]


def zoo(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_som.zoo ...`` in a fresh process; fail with its output on error."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}  # headless rendering for record_video
    result = subprocess.run(
        [sys.executable, "-m", "sb3_som.zoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


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
