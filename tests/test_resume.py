"""``benchmarks/learn.py`` checkpoints and resumes a run exactly: stopped mid-episode and resumed, it gets what an
uninterrupted run gets, bit for bit (CPU, one process: the same operations in the same order on the same data)."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.monitor import Monitor

LEARN = Path(__file__).resolve().parents[1] / "benchmarks" / "learn.py"
TIMESTEPS, STOP_AT, EVAL_EVERY = 1000, 700, 250
# tiny networks and batches, updates from step 100, so the stop falls well after learning has started
TINY = {"policy": "MlpPolicy", "learning_starts": 100, "batch_size": 16, "buffer_size": 2000,
        "policy_kwargs": {"net_arch": [16, 16]}}  # fmt: skip


@pytest.fixture(scope="module")
def learn() -> ModuleType:
    spec = importlib.util.spec_from_file_location("learn", LEARN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(path: Path) -> list[tuple[Any, ...]]:
    """What an evaluation line measures (not where or how long it ran), in file order."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        (row["timesteps"], row["mean_return"], row["std_return"], row["train"], row["policy"], row.get("acting"))
        for row in rows
    ]


@pytest.mark.parametrize(
    ("algo", "env_id", "elapsed"),
    [
        ("som", "Pendulum-v1", 100),  # Pendulum's episodes are 200 steps: step 700 is 100 steps into the 4th
        ("sac", "Pendulum-v1", 100),
        pytest.param("som", "Hopper-v5", None, marks=pytest.mark.slow),  # episodes end when the hopper falls
        pytest.param("sac", "Hopper-v5", None, marks=pytest.mark.slow),
    ],
)
def test_resumed_run_matches_uninterrupted(
    learn: ModuleType, algo: str, env_id: str, elapsed: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if env_id.endswith("-v5"):
        pytest.importorskip("mujoco")
    monkeypatch.setattr(learn, "zoo_hyperparams", lambda *_: copy.deepcopy(TINY))  # SB3 adds keys to policy_kwargs
    monkeypatch.setattr(learn, "TARGET_STEPS", 300)  # the target's Metropolis chains: enough to run, not to converge
    common = ["run", "--algo", algo, "--env", env_id, "--seed", "3", "--timesteps", str(TIMESTEPS),
              "--eval-every", str(EVAL_EVERY), "--eval-episodes", "2"]  # fmt: skip
    whole = learn.run(learn.parse_args([*common, "--out", str(tmp_path / "whole.jsonl")]))

    checkpointed = [*common, "--out", str(tmp_path / "resumed.jsonl"), "--checkpoint-every", "300",
                    "--checkpoint-dir", str(tmp_path / "checkpoints")]  # fmt: skip
    stopped = learn.run(learn.parse_args([*checkpointed, "--stop-at", str(STOP_AT)]))
    assert stopped._n_updates > 0, "the stop must come after learning has started"
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [f"step_{STOP_AT}"], "one complete checkpoint, the latest"
    with open(tmp_path / "checkpoints" / f"step_{STOP_AT}" / "state.pkl", "rb") as file:
        state = cloudpickle.load(file)
    in_episode = state["train_env"].envs[0].get_wrapper_attr("_elapsed_steps")
    assert in_episode > 0 and in_episode == (elapsed or in_episode), "the stop is mid-episode"
    # the checkpoint's policy, diagnosed: the run's identity and what the runner measures on the loaded model
    checkpoint = str(tmp_path / "checkpoints" / f"step_{STOP_AT}")
    learn.diagnose(learn.parse_args(["diagnose", checkpoint, "--out", str(tmp_path / "diagnosis.jsonl")]))
    diagnosis = json.loads((tmp_path / "diagnosis.jsonl").read_text())
    model = learn.load_checkpoint(checkpoint, "cpu")[0]
    expected = learn.policy_diagnostics(model)
    if algo == "som":  # and its target's spread and its returns under the one-step action and Best-of-16
        expected["target_spread"] = learn.target_spread(model)
        expected["acting"] = learn.acting_returns(model, env_id, 2)
        assert 0.0 < expected["target_spread"] < 1.0
    run_id = json.loads((tmp_path / "resumed.jsonl").read_text().splitlines()[0])["run"]
    assert diagnosis == {"checkpoint": checkpoint, "algo": algo, "env": env_id, "seed": 3, "run": run_id,
                         "timesteps": STOP_AT, **expected}  # fmt: skip

    # a process killed after the checkpoint may have written evaluations past it: they must not survive
    lines = (tmp_path / "resumed.jsonl").read_text().splitlines()
    assert [json.loads(line)["timesteps"] for line in lines] == [250, 500]
    orphan = dict(json.loads(lines[-1]), timesteps=750, mean_return=1e9)
    with open(tmp_path / "resumed.jsonl", "a") as file:
        file.write(json.dumps(orphan) + "\n" + '{"torn": ')

    resumed = learn.run(learn.parse_args(checkpointed))
    assert curve(tmp_path / "resumed.jsonl") == curve(tmp_path / "whole.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "resumed.jsonl").read_text().splitlines()]
    assert [row["segment_start"] for row in rows] == [0, 0, STOP_AT, STOP_AT]
    assert len({row["run"] for row in rows}) == 1
    assert [("acting" in row) for row in rows] == [False, False, False, algo == "som"]  # SOM's, at the budget
    assert rows[2]["seconds"] >= rows[1]["seconds"], "wall time continues from the checkpoint's"

    assert (resumed.num_timesteps, resumed._n_updates, resumed._episode_num) == (whole.num_timesteps, whole._n_updates,
                                                                                 whole._episode_num)  # fmt: skip
    for (name, value), (_, expected) in zip(
        resumed.policy.state_dict().items(), whole.policy.state_dict().items(), strict=True
    ):
        assert th.equal(value, expected), name
    assert np.array_equal(resumed.replay_buffer.observations, whole.replay_buffer.observations)
    assert np.array_equal(resumed._last_obs, whole._last_obs)
    assert learn.run(learn.parse_args(checkpointed)) is None, "a finished run has nothing left to do"


def test_mujoco_env_state_survives_pickling(learn: ModuleType):
    """MuJoCo tasks pickle as their constructor arguments; the runner saves their simulator data and RNG next to them."""
    pytest.importorskip("mujoco")
    env = Monitor(gym.make("Hopper-v5"))
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-0.2, 0.2, (600, 3))
    for action in actions[:10]:
        env.step(action)
    assert env.get_wrapper_attr("_elapsed_steps") == 10, "the copy is made mid-episode"
    twin, states = cloudpickle.loads(cloudpickle.dumps((env, learn.mujoco_states([env]))))
    learn.restore_mujoco_states([twin], states)
    assert twin.get_wrapper_attr("_elapsed_steps") == 10
    for action in actions[10:]:  # through terminations and resets, which draw from the task's RNG
        for one in (env, twin):
            if one.get_wrapper_attr("needs_reset"):
                one.reset()
        assert all(np.array_equal(a, b) for a, b in zip(env.step(action)[:4], twin.step(action)[:4], strict=True))
    assert len(env.get_wrapper_attr("episode_returns")) > 1
    assert env.get_wrapper_attr("episode_returns") == twin.get_wrapper_attr("episode_returns")


def test_final_evaluation_starts_every_run_from_the_same_states(
    learn: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(learn, "zoo_hyperparams", lambda *_: copy.deepcopy(TINY))
    out = tmp_path / "runs.jsonl"
    model = learn.run(learn.parse_args(["run", "--algo", "sac", "--env", "Pendulum-v1", "--seed", "0", "--timesteps", "200",
                                        "--eval-every", "100", "--eval-episodes", "1", "--final-eval-episodes", "2",
                                        "--out", str(out)]))  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row.get("final_episodes") for row in rows] == [None, None, 2]
    again = learn.final_evaluation(model, "Pendulum-v1", 2)  # the same starts, the same deterministic policy
    assert rows[-1]["mean_return"] == pytest.approx(np.mean(again))
    starts = [gym.make("Pendulum-v1").reset(seed=learn.FINAL_EVAL_SEED + i)[0] for i in range(2)]
    assert not np.allclose(starts[0], starts[1])  # each episode its own start
    learn.report(learn.parse_args(["report", str(out), "--worst-after", "100"]))
    printed = capsys.readouterr().out
    assert "| Pendulum-v1 | 200 | 2 | - |" in printed
    area = np.trapezoid([rows[0]["mean_return"], rows[1]["mean_return"]], [100, 200]) / 100
    assert f"| Pendulum-v1 | SAC | {area:.0f} ± 0 ({area:.0f}) | {rows[1]['mean_return']:.0f} |" in printed


def test_hyperparams_override_the_zoo_entry_and_are_recorded(
    learn: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(learn, "zoo_hyperparams", lambda *_: copy.deepcopy(TINY))
    out = tmp_path / "runs.jsonl"
    args = learn.parse_args(["run", "--algo", "som", "--env", "Pendulum-v1", "--seed", "0", "--timesteps", "150",
                             "--eval-every", "150", "--eval-episodes", "1", "--out", str(out),
                             "--hyperparams", "alpha=30", "q_scale_floor=td_error"])  # fmt: skip
    assert args.hyperparams == {"alpha": 30, "q_scale_floor": "td_error"}  # a literal, or else the word as a string
    model = learn.run(args)
    assert (model.alpha, model.q_scale_floor, model.batch_size) == (30.0, "td_error", TINY["batch_size"])
    assert json.loads(out.read_text().splitlines()[0])["hyperparams"] == {"alpha": 30, "q_scale_floor": "td_error"}
    with pytest.raises(SystemExit):
        learn.parse_args(["run", "--algo", "som", "--env", "Pendulum-v1", "--seed", "0", "--timesteps", "1",
                          "--out", str(out), "--hyperparams", "alpha"])  # fmt: skip


def test_a_zoo_linear_learning_rate_falls_to_zero_over_the_run(learn: ModuleType):
    schedule = learn.with_schedules({"learning_rate": "lin_1e-3", "batch_size": 16})["learning_rate"]
    # SB3 calls it with the progress remaining: 1 at the start, 0 at the end of the run
    assert (schedule(1.0), schedule(0.25), schedule(0.0)) == pytest.approx((1e-3, 2.5e-4, 0.0))
    assert learn.with_schedules({"learning_rate": 3e-4}) == {"learning_rate": 3e-4}
    with pytest.raises(ValueError, match="lin_X"):
        learn.with_schedules({"learning_rate": "exp_1e-3"})
    # som.yml's LunarLanderContinuous-v3 entry writes its learning rate so; the runner builds the model with it
    entry = learn.with_schedules(learn.zoo_hyperparams("som", "LunarLanderContinuous-v3"))
    assert entry["learning_rate"](1.0) == pytest.approx(7.3e-4)


def test_every_zoo_entry_the_runner_reads_applies_in_full(learn: ModuleType):
    """Each entry of ``som.yml`` (SOM's own keys such as ``q_scale_floor`` or ``alpha`` included), and SAC's for the
    benchmarked tasks, gives constructor arguments only; an entry with a zoo-only key is refused, naming it."""
    import yaml

    from sb3_som import SOM

    with open(learn.zoo_file("som")) as file:
        som_tasks = list(yaml.safe_load(file))
    parameters = {"som": set(inspect.signature(SOM).parameters), "sac": set(inspect.signature(learn.SAC).parameters)}
    tasks = [("som", env_id) for env_id in som_tasks]
    tasks += [("sac", env_id) for env_id in ("Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Ant-v5", "Humanoid-v5")]
    for algo, env_id in tasks:
        entry = learn.zoo_hyperparams(algo, env_id)
        assert set(entry) <= parameters[algo], (algo, env_id)
    assert learn.zoo_hyperparams("som", "Pendulum-v1")["q_scale_floor"] == "td_error"
    with open(learn.zoo_file("sac")) as file:
        zoo_only = [env_id for env_id, entry in yaml.safe_load(file).items() if "normalize" in entry]
    with pytest.raises(ValueError, match="normalize"):
        learn.zoo_hyperparams("sac", zoo_only[0])


def test_report_marks_a_curve_whose_segments_ran_on_different_code(
    learn: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    def line(algo: str, seed: int, step: int, value: float, commit: str) -> str:
        row = {"algo": algo, "env": "Hopper-v5", "seed": seed, "timesteps": step, "mean_return": value, "commit": commit}
        return json.dumps(row)

    out = tmp_path / "runs.jsonl"
    lines = [line("som", 0, 1000, 10.0, "aaaaaaa"), line("som", 0, 2000, 20.0, "aaaaaaa"),
             line("som", 0, 3000, 30.0, "bbbbbbb"), line("som", 1, 1000, 11.0, "aaaaaaa"),
             line("som", 1, 2000, 21.0, "aaaaaaa"), line("som", 1, 3000, 31.0, "aaaaaaa")]  # fmt: skip
    out.write_text("\n".join(lines) + "\n")
    assert learn.code_segments([json.loads(text) for text in lines]) == {
        ("Hopper-v5", "som", 0): [(1000, 2000, "aaaaaaa"), (3000, 3000, "bbbbbbb")]
    }
    learn.report(learn.parse_args(["report", str(out)]))
    printed = capsys.readouterr().out
    assert "| Hopper-v5 | 3000 | 30 ± 0 (30*, 31) | - | 2, 0 |" in printed
    assert (
        "- Hopper-v5, SOM seed 0: aaaaaaa (evaluations at steps 1000-2000), bbbbbbb (evaluations at steps 3000-3000)"
        in printed
    )
    # lines written before runs recorded their commit form one segment
    unrecorded = [{key: value for key, value in json.loads(text).items() if key != "commit"} for text in lines]
    assert learn.code_segments(unrecorded) == {}


def test_report_at_a_budget_takes_the_runs_that_reached_it_up_to_it(
    learn: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    def line(algo: str, seed: int, step: int, value: float, commit: str = "aaaaaaa") -> dict:
        return {"algo": algo, "env": "Hopper-v5", "seed": seed, "timesteps": step, "mean_return": value, "commit": commit}

    # SOM seed 0 and SAC seed 0 carried to step 3000 (SOM's last segment on other code), seed 1 of each to 1000
    rows = [line("som", 0, 1000, 10.0), line("som", 0, 2000, 20.0), line("som", 0, 3000, 30.0, "bbbbbbb"),
            line("som", 1, 1000, 11.0), line("sac", 0, 1000, 5.0), line("sac", 0, 3000, 50.0),
            line("sac", 1, 1000, 7.0)]  # fmt: skip
    out = tmp_path / "runs.jsonl"
    out.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    learn.report(learn.parse_args(["report", str(out)]))
    printed = capsys.readouterr().out
    # the default budget: the largest step every run reached, where the later segment on other code does not count
    assert "| Hopper-v5 | 1000 | 10 ± 0 (10, 11) | 6 ± 1 (5, 7) | 2, 2 |" in printed
    assert "Marked *" not in printed
    assert "| Hopper-v5 | SAC | 6 ± 1 (5, 7) |" in printed  # the area over step 1000 alone
    learn.report(learn.parse_args(["report", str(out), "--budget", "3000"]))
    printed = capsys.readouterr().out
    assert "| Hopper-v5 | 3000 | 30 ± 0 (30*) | 50 ± 0 (50) | 1, 1 |" in printed
    assert "| Hopper-v5 | SAC | 28 ± 0 (28) |" in printed  # over steps 1000 and 3000, which both runs evaluated
    with pytest.raises(SystemExit, match=r"no run in .* has an evaluation at step 2500"):
        learn.report(learn.parse_args(["report", str(out), "--budget", "2500"]))
    # a run that stops short of the budget is not marked, whatever code its segments ran on
    short = [line("sac", 2, 1000, 6.0), line("sac", 2, 2000, 8.0, "ccccccc")]
    out.write_text("\n".join(json.dumps(row) for row in rows + short) + "\n")
    learn.report(learn.parse_args(["report", str(out), "--budget", "3000"]))
    printed = capsys.readouterr().out
    assert "- Hopper-v5, SOM seed 0: aaaaaaa" in printed and "SAC seed 2" not in printed
    # the policy over training: per step, the mean over the seeds whose lines record it
    policy = {"spread": 0.3, "face_share": 0.0, "best_of_n_gap": 1.0}
    rows[0] |= {"policy": policy, "train": {"q_scale": 2.0, "effective_sample_size": 6.0}}
    rows[3] |= {"policy": dict(policy, spread=0.5), "train": {"q_scale": 4.0, "effective_sample_size": 8.0}}
    rows[4] |= {"policy": dict(policy, spread=0.1)}
    out.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    learn.report(learn.parse_args(["report", str(out), "--over-training", "Hopper-v5"]))
    printed = capsys.readouterr().out
    assert "| 1000 | 0.40 (2) | 0.10 (1) | 1.00 (2) | 1.00 (1) | 3.00 (2) | 7.0 (2) |" in printed
    assert "| 1000 | 0.40 (2) | 0.10 (2)" not in printed and "\n| 3000 |" not in printed  # past the budget
    with pytest.raises(SystemExit, match="--over-training Ant-v5: no run of that task"):
        learn.report(learn.parse_args(["report", str(out), "--over-training", "Ant-v5"]))


def test_a_sac_run_given_policy_kwargs_resumes_with_the_same_command(learn: ModuleType, tmp_path: Path):
    # SAC writes use_sde into the policy_kwargs dict it gets; the runner compares the command's --hyperparams
    command = ["run", "--algo", "sac", "--env", "Pendulum-v1", "--seed", "0", "--timesteps", "200", "--eval-every", "100",
               "--eval-episodes", "1", "--hyperparams", "policy_kwargs={'net_arch': [16]}", "learning_starts=50",
               "batch_size=16", "--checkpoint-every", "100", "--checkpoint-dir", str(tmp_path / "checkpoints"),
               "--out", str(tmp_path / "runs.jsonl")]  # fmt: skip
    assert learn.run(learn.parse_args([*command, "--stop-at", "100"])).num_timesteps < 200
    assert learn.run(learn.parse_args(command)).num_timesteps >= 200  # resumed, not refused


def test_a_checkpoint_the_disk_cannot_hold_stops_the_run_naming_the_sizes_and_keeps_the_last_one(
    learn: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(learn, "zoo_hyperparams", lambda *_: copy.deepcopy(TINY))
    directory = tmp_path / "checkpoints"
    command = ["run", "--algo", "som", "--env", "Pendulum-v1", "--seed", "0", "--timesteps", "300", "--eval-every", "100",
               "--eval-episodes", "1", "--checkpoint-every", "100", "--checkpoint-dir", str(directory),
               "--out", str(tmp_path / "runs.jsonl")]  # fmt: skip
    learn.run(learn.parse_args([*command, "--stop-at", "100"]))
    (kept,) = learn.checkpoints(str(directory)).values()
    disk_usage = learn.shutil.disk_usage
    monkeypatch.setattr(learn.shutil, "disk_usage", lambda path: disk_usage(path)._replace(free=1000))
    with pytest.raises(OSError, match=r"needs about 0\.00 GiB \(its replay buffer\) and .* has 0\.00 GiB free"):
        learn.run(learn.parse_args(command))
    assert os.listdir(directory) == [os.path.basename(kept)]  # the previous checkpoint, nothing partial beside it
