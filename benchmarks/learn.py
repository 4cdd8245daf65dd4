"""Learning curves of SOM against SB3's SAC, each with its rl-zoo3 hyperparameters.

``run`` trains one (algorithm, task, seed) and appends one JSON line per evaluation (deterministic return
over ``--eval-episodes`` episodes of a separate environment, every ``--eval-every`` steps) to ``--out``, so a
run that is stopped early keeps every evaluation it reached. ``report`` turns those lines into a
table of returns at the largest budget every run of a task reached, or at ``--budget`` with the runs that reached it
(a run whose evaluation lines up to the budget name more than one commit is marked, with its segments listed; the
policy's spread per action coordinate where the lines record it), and a PNG of the curves up to the budget (mean and
min-max band over seeds). ``--over-training ENV`` adds a table of that task's policies at each evaluation (spread,
the critic's Best-of-64 gap, SOM's Q scale and effective sample size).

Hyperparameters: SOM's from ``hyperparams/som.yml``; SAC's from rl-zoo3's ``hyperparams/sac.yml``, whose
MuJoCo entries are named ``-v4`` (the ``-v5`` task takes the ``-v4`` entry; tasks without an entry take
its ``default``). An entry's keys that are constructor arguments pass as they are (``policy_kwargs`` evaluated as
the zoo does); an entry with other zoo keys (``normalize``, ``n_envs``, wrappers) is refused. ``n_timesteps`` is
replaced by ``--timesteps``; ``--hyperparams KEY=VALUE ...`` replaces or adds constructor arguments (each line of
``--out`` then records them). A ``learning_rate`` written ``lin_X`` (in an entry or in ``--hyperparams``) is, as in
rl-zoo3, a learning rate falling linearly from X to 0 over the run.

Resumable runs: with ``--checkpoint-every N`` the run saves, every N steps, everything it needs to continue
exactly (model, replay buffer, RNG states, the training and evaluation environments mid-episode, SB3's
counters, the logger's pending values and the runner's own state) into ``--checkpoint-dir`` (default
``runs/checkpoints/ALGO_ENV_SEED``, ignored by git); running the same command again continues from the latest
checkpoint and appends to the same ``--out``. Evaluation lines of the run past that checkpoint (written by a
process killed after it) are removed from ``--out`` before it continues, and written again. ``--stop-at S``
ends the process at the first checkpoint at or after step S. ``--final-eval-episodes N`` adds, at the end of the
budget, one line (``final_episodes: N``) whose return is the mean over N episodes started from the same initial states
in every run, so final returns of algorithms and seeds compare without the spread that different starts add.

    python benchmarks/learn.py run --algo som --env Pendulum-v1 --seed 0 --timesteps 10000 --out runs.jsonl
    python benchmarks/learn.py run --algo som --env Hopper-v5 --seed 0 --timesteps 300000 --eval-every 10000 \\
        --checkpoint-every 10000 --out runs.jsonl          # the same command again resumes
    python benchmarks/learn.py report runs.jsonl --table table.md --png curves.png

``diagnose`` appends, per checkpoint, one line with the policy's spread, face share and the critic's Best-of-N gap
at the latest states of its replay buffer (what each evaluation line of a run holds as ``policy``) and, for SOM, the
spread of its target ``exp(alpha Q / q_scale)`` at the same states (``target_spread``: how broad the policy would be
if it sampled its target) and its returns under the one-step action and Best-of-16 (what a SOM run's last evaluation
line holds as ``acting``; ``report`` reads them from either):

    python benchmarks/learn.py diagnose runs/checkpoints/som_Hopper-v5_0/step_100000 --out diagnostics.jsonl
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import inspect
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch as th
import yaml
from gymnasium.utils import EzPickle
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_som import SOM
from sb3_som.critic_values import q_at_states
from sb3_som.objective import FACE_THRESHOLD, actor_batch_size, first_rows, target_q_scale

try:
    import mujoco
except ImportError:  # only the MuJoCo tasks need it
    mujoco = None

ALGOS = {"som": SOM, "sac": SAC}
# options a resumed run must share with the run it continues (--timesteps may grow, --device may change)
RESUME_OPTIONS = ("algo", "env", "seed", "hyperparams", "eval_every", "eval_episodes", "out")
CHECKPOINT_PREFIX = "step_"  # a complete checkpoint: CHECKPOINT_DIR/step_<num_timesteps>/
PARTIAL_PREFIX = ".partial-"  # a checkpoint being written (renamed to step_<n> when complete)
# episode i of the final evaluation starts from reset(seed=FINAL_EVAL_SEED + i): the same starts for every run
FINAL_EVAL_SEED = 1_000_000
# the policy's diagnostics at each evaluation: the latest states of the replay buffer, stochastic actions per state,
# and how many of them the critic's Best-of-N picks from
DIAGNOSTIC_STATES, DIAGNOSTIC_SAMPLES, DIAGNOSTIC_BEST_OF = 32, 256, 64
# the Best-of-N acting rule that a SOM run's last evaluation compares with the one-step action: candidates per state
ACTING_BEST_OF = 16
# the target's spread: Metropolis chains per state and steps per chain (the first third tunes the step), and the
# replay batches whose Q scales are averaged
TARGET_CHAINS, TARGET_STEPS, Q_SCALE_BATCHES = 8, 12_000, 8


def zoo_file(algo: str) -> str:
    """The path of ``algo``'s zoo file: SOM's ``som.yml``, or rl-zoo3's ``sac.yml``."""
    if algo == "som":
        return str(resources.files("sb3_som.hyperparams").joinpath("som.yml"))
    # located without importing rl_zoo3 (and its dependencies)
    return os.path.join(importlib.util.find_spec("rl_zoo3").submodule_search_locations[0], "hyperparams", "sac.yml")


def zoo_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """The zoo entry for ``env_id`` (see the module docstring for the fallbacks), as constructor kwargs."""
    with open(zoo_file(algo)) as file:
        entries = yaml.safe_load(file)
    key = env_id if env_id in entries else env_id.replace("-v5", "-v4")
    entry = dict(entries.get(key, entries["default"]))
    entry.pop("n_timesteps", None)
    # constructor arguments pass as they are; the zoo's own keys (normalize, n_envs, wrappers, ...) are not applied
    unknown = set(entry) - set(inspect.signature(ALGOS[algo]).parameters)
    if unknown:
        raise ValueError(f"{algo} entry {key!r} has keys this runner does not apply: {sorted(unknown)}")
    if "policy_kwargs" in entry:
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # the zoo's own convention: a Python expression
    return entry


def with_schedules(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """``hyperparams`` with a ``learning_rate`` written ``lin_X`` turned into rl-zoo3's linear schedule from X to 0."""
    learning_rate = hyperparams.get("learning_rate")
    if not isinstance(learning_rate, str):
        return hyperparams
    kind, _, initial = learning_rate.partition("_")
    if kind != "lin":
        raise ValueError(f"learning_rate {learning_rate!r}: the zoo's schedules are written lin_X")
    return {**hyperparams, "learning_rate": LinearSchedule(float(initial), 0.0, 1.0)}


def mujoco_states(envs: Sequence[gym.Env]) -> list[tuple[Any, np.random.Generator] | None]:
    """What pickling each env leaves out, to be pickled next to it: ``(MjData, np_random)`` of a MuJoCo env, else None.

    Pickling a gymnasium env stack keeps the wrappers' counters (TimeLimit's elapsed steps, Monitor's
    episode sums) and, for the classic-control tasks, the state and RNG of the task itself. MuJoCo tasks
    are ``EzPickle``: they pickle as their constructor arguments and unpickle as a fresh env, so their
    simulator data and RNG are saved here and put back by :func:`restore_mujoco_states`. Any other
    ``EzPickle`` task (Box2D's) would come back reset, so it is refused.
    """
    states: list[tuple[Any, np.random.Generator] | None] = []
    for env in envs:
        base = env.unwrapped
        if not isinstance(base, EzPickle):
            states.append(None)
        elif mujoco is not None and isinstance(getattr(base, "data", None), mujoco.MjData):
            states.append((base.data, base.np_random))
        else:
            raise ValueError(f"{base.spec.id if base.spec else type(base).__name__}: its mid-episode state cannot be saved "
                             "(it pickles as its constructor arguments and is not a MuJoCo env)")  # fmt: skip
    return states


def restore_mujoco_states(envs: Sequence[gym.Env], states: Sequence[tuple[Any, np.random.Generator] | None]) -> None:
    """Put the simulator data and RNG saved by :func:`mujoco_states` back into the unpickled (fresh) MuJoCo envs."""
    for env, state in zip(envs, states, strict=True):
        if state is not None:
            data, np_random = state
            mujoco.mj_copyData(env.unwrapped.data, env.unwrapped.model, data)
            env.unwrapped.np_random = np_random


def rng_states(model: BaseAlgorithm) -> dict[str, Any]:
    """The global RNG states (python, numpy, torch, CUDA when the model runs there) and the action space's."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state(),
              "action_space": model.action_space.np_random.bit_generator.state}  # fmt: skip
    if model.device.type == "cuda":
        states["cuda"] = th.cuda.get_rng_state_all()
    return states


def set_rng_states(model: BaseAlgorithm, states: dict[str, Any]) -> None:
    """Restore :func:`rng_states` (the CUDA states only where this run uses CUDA)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    th.set_rng_state(states["torch"])
    model.action_space.np_random.bit_generator.state = states["action_space"]
    if "cuda" in states and model.device.type == "cuda":
        th.cuda.set_rng_state_all(states["cuda"])


def fsync(path: str) -> None:
    """Flush a file or folder to disk, so that a rename after it cannot publish data still in memory."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def checkpoints(directory: str) -> dict[int, str]:
    """The complete checkpoints in ``directory``, by step."""
    if not os.path.isdir(directory):
        return {}
    return {int(name[len(CHECKPOINT_PREFIX) :]): os.path.join(directory, name)
            for name in os.listdir(directory) if name.startswith(CHECKPOINT_PREFIX)}  # fmt: skip


def replay_buffer_bytes(model: OffPolicyAlgorithm) -> int:
    """The bytes of the replay buffer's arrays, allocated for its whole capacity: what ``replay_buffer.pkl`` holds
    (a Humanoid-v5 buffer of 1,000,000 transitions: about 5.3 GiB, however few it has stored)."""
    total = 0
    for value in vars(model.replay_buffer).values():  # a Dict observation space's buffer holds dicts of arrays
        parts = value.values() if isinstance(value, dict) else [value]
        total += sum(part.nbytes for part in parts if isinstance(part, np.ndarray))
    return total


def save_checkpoint(directory: str, model: OffPolicyAlgorithm, state: dict[str, Any]) -> str:
    """Write ``model.zip``, ``replay_buffer.pkl`` and ``state.pkl`` (``state`` and the environments) atomically.

    The files are written into a temporary folder next to the checkpoints and flushed, then the folder is
    renamed to ``step_<num_timesteps>``, so a process killed at any point leaves either the previous
    checkpoint or the new one, never a partial one. Older checkpoints (and partial folders left by killed
    processes) are removed after the rename. Where the disk cannot hold the new replay buffer beside the previous
    checkpoint, it raises ``OSError`` naming both sizes before writing anything (a full disk would also leave no
    room for the error in a log on the same disk).
    """
    os.makedirs(directory, exist_ok=True)
    needed, free = replay_buffer_bytes(model), shutil.disk_usage(directory).free
    if needed > free:
        raise OSError(
            f"a checkpoint of this run needs about {needed / 2**30:.2f} GiB (its replay buffer) and {directory} has "
            f"{free / 2**30:.2f} GiB free: free space there or pass another --checkpoint-dir; the previous checkpoint "
            "is kept, and the run resumes from it with the same command"
        )
    partial = tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=directory)
    model.save(os.path.join(partial, "model.zip"))
    model.save_replay_buffer(os.path.join(partial, "replay_buffer.pkl"))
    assert isinstance(model.env, DummyVecEnv), "the runner's models train on SB3's DummyVecEnv"
    state = dict(state, rng=rng_states(model), train_env=model.env, train_env_mujoco=mujoco_states(model.env.envs))
    with open(os.path.join(partial, "state.pkl"), "wb") as file:
        cloudpickle.dump(state, file)
    for name in os.listdir(partial):
        fsync(os.path.join(partial, name))
    final = os.path.join(directory, f"{CHECKPOINT_PREFIX}{model.num_timesteps}")
    os.rename(partial, final)
    fsync(directory)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if path != final and (name.startswith(CHECKPOINT_PREFIX) or name.startswith(PARTIAL_PREFIX)):
            shutil.rmtree(path)
    return final


def load_checkpoint(path: str, device: str) -> tuple[OffPolicyAlgorithm, dict[str, Any]]:
    """The model of a checkpoint, ready for ``learn(reset_num_timesteps=False)``, and its saved ``state``.

    ``load`` restores SB3's attributes (``num_timesteps``, ``_episode_num``, ``_n_updates``, ``_last_obs``,
    ``_last_episode_starts``, ``_last_original_obs``, the episode-info buffers, the learning-rate progress) and
    the networks and optimizers; it then reseeds the global RNGs and the action space from the model's seed,
    so the RNG states are restored after it. The training env is attached without a reset.
    """
    with open(os.path.join(path, "state.pkl"), "rb") as file:
        state = cloudpickle.load(file)
    model = ALGOS[state["config"]["algo"]].load(os.path.join(path, "model.zip"), device=device)
    model.load_replay_buffer(os.path.join(path, "replay_buffer.pkl"))
    restore_mujoco_states(state["train_env"].envs, state["train_env_mujoco"])
    model.set_env(state["train_env"], force_reset=False)
    restore_mujoco_states([state["eval_env"]], state["eval_env_mujoco"])
    set_rng_states(model, state["rng"])
    return model, state


def drop_lines_after(out: str, run_id: str, timesteps: int) -> None:
    """Remove from ``out`` the lines of run ``run_id`` past ``timesteps`` (and a torn last line), atomically."""
    if not os.path.exists(out):
        return
    with open(out) as file:
        lines = file.readlines()
    kept = []
    for index, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1 and not line.endswith("\n"):
                continue  # a write cut short by the kill
            raise
        if not (row.get("run") == run_id and row["timesteps"] > timesteps):
            kept.append(line)
    if len(kept) == len(lines):
        return
    handle, temporary = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=os.path.dirname(os.path.abspath(out)))
    with os.fdopen(handle, "w") as file:
        file.writelines(kept)
    fsync(temporary)
    os.replace(temporary, out)


def sampled_actions(model: BaseAlgorithm, observations: np.ndarray, samples: int) -> np.ndarray:
    """Stochastic actions in the box, ``samples`` per observation: (S, samples, d)."""
    repeated = np.repeat(observations, samples, axis=0)
    actions, _ = model.predict(repeated, deterministic=False)
    return model.policy.scale_action(actions).reshape(len(observations), samples, -1)


def latest_observations(model: OffPolicyAlgorithm, n: int = DIAGNOSTIC_STATES) -> np.ndarray:
    """The latest ``n`` observations of the replay buffer (all it holds, if fewer), newest first: (S, o), the first
    environment's (Box observations)."""
    buffer = model.replay_buffer
    assert buffer is not None
    stored = buffer.buffer_size if buffer.full else buffer.pos
    latest = (buffer.pos - 1 - np.arange(min(n, stored))) % buffer.buffer_size
    return buffer.observations[latest, 0]


def policy_diagnostics(model: OffPolicyAlgorithm) -> dict[str, float]:
    """The policy at the latest ``DIAGNOSTIC_STATES`` states of the replay buffer (SOM or SAC, Box observations).

    ``spread``: the standard deviation per coordinate of ``DIAGNOSTIC_SAMPLES`` stochastic actions per state, in
    the box ``[-1, 1]^d`` (uniform: 0.577), averaged over states and coordinates; ``face_share``: the share of those
    coordinates beyond ``FACE_THRESHOLD``; ``best_of_n_gap``: the critic's value (the minimum over its Q networks)
    of the best of the first ``DIAGNOSTIC_BEST_OF`` samples less that of the deterministic action, averaged over
    states. Training's random streams are left as they were (the same run with or without the diagnostics).
    """
    observations = latest_observations(model)
    numpy_state = np.random.get_state()
    with th.random.fork_rng(devices=[]), th.no_grad():
        sampled = sampled_actions(model, observations, DIAGNOSTIC_SAMPLES)
        deterministic, _ = model.predict(observations, deterministic=True)
        deterministic = model.policy.scale_action(deterministic)[:, None]
        critic = model.critic
        features = critic.extract_features(model.policy.obs_to_tensor(observations)[0], critic.features_extractor)
        candidates = th.as_tensor(np.concatenate([deterministic, sampled[:, :DIAGNOSTIC_BEST_OF]], axis=1),
                                  dtype=th.float32, device=model.device)  # fmt: skip
        q_values = q_at_states(critic, features, candidates, "min")  # (S, 1 + DIAGNOSTIC_BEST_OF)
        gap = (q_values[:, 1:].max(dim=1).values - q_values[:, 0]).mean().item()
    np.random.set_state(numpy_state)
    return {
        "spread": float(sampled.std(axis=1).mean()),
        "face_share": float((np.abs(sampled) > FACE_THRESHOLD).mean()),
        "best_of_n_gap": gap,
    }


def boltzmann_samples(log_density: Callable[[th.Tensor], th.Tensor], start: th.Tensor, steps: int) -> th.Tensor:
    """Samples of the density ``exp(log_density)`` on the box ``[-1, 1]^d``, per state: (S, n, d).

    Random-walk Metropolis: ``start`` (S, C, d) holds C chains per state inside the box, ``log_density`` maps actions
    (S, C, d) to (S, C); moves out of the box are rejected. During the first third of the ``steps`` each state's
    step size is tuned toward a quarter of the moves accepted; every fourth point of the rest is a sample.
    """
    chains = start.clone()
    log_p = log_density(chains)
    step = th.full((chains.shape[0], 1, 1), 0.05, device=chains.device)
    tuning, kept = steps // 3, []
    for index in range(steps):
        proposal = chains + step * th.randn_like(chains)
        inside = (proposal.abs() <= 1).all(dim=-1)
        log_p_proposal = log_density(proposal.clamp(-1.0, 1.0))
        accept = inside & (th.rand_like(log_p).log() < log_p_proposal - log_p)
        chains = th.where(accept.unsqueeze(-1), proposal, chains)
        log_p = th.where(accept, log_p_proposal, log_p)
        if index < tuning:
            step = step * th.exp(0.05 * (accept.float().mean(dim=1) - 0.25)).view(-1, 1, 1)
        elif index % 4 == 0:
            kept.append(chains)
    return th.cat(kept, dim=1)  # (S, C * kept, d)


@th.no_grad()
def training_q_scale(model: SOM, batches: int, states: Callable[[ReplayBufferSamples], th.Tensor] | None = None) -> th.Tensor:
    """The Q scale as SOM's actor update measures it (``objective.target_q_scale`` on the update's states of a replay
    batch, the TD error of the same batch for the "td_error" floor), averaged over ``batches`` batches: a scalar.
    ``states`` maps a replay batch to the observations the update takes instead of the batch's own (None: its own)."""
    scales = []
    for _ in range(batches):
        replay = model.replay_buffer.sample(model.batch_size)  # type: ignore[union-attr]
        _, td_error_rms, _ = model._critic_loss(replay)
        critic = model.critic_target
        observations = replay.observations if states is None else states(replay)
        states_in_update = first_rows(observations, actor_batch_size(model.batch_size))
        features = critic.extract_features(states_in_update, critic.features_extractor)
        scales.append(target_q_scale(critic, features, model.q_scale_floor_in_use, td_error_rms)[0])
    return th.stack(scales).mean()


def target_samples(model: SOM, q_scale: th.Tensor | None = None) -> th.Tensor:
    """Samples of SOM's target ``exp(alpha Q / q_scale)`` at the latest ``DIAGNOSTIC_STATES`` states of the replay
    buffer, in the box: (S, n, d). Q is the target critic's first network and the Q scale ``q_scale`` (None:
    :func:`training_q_scale`, as in the actor's update); :func:`boltzmann_samples` samples the target, its chains
    started at the policy's stochastic actions. Training's random streams are left as they were."""
    observations = latest_observations(model)
    numpy_state = np.random.get_state()
    with th.random.fork_rng(devices=[]), th.no_grad():
        if q_scale is None:
            q_scale = training_q_scale(model, Q_SCALE_BATCHES)
        beta = model.target_alpha / q_scale
        critic = model.critic_target
        features = critic.extract_features(model.policy.obs_to_tensor(observations)[0], critic.features_extractor)
        start = th.as_tensor(sampled_actions(model, observations, TARGET_CHAINS), dtype=th.float32, device=model.device)
        samples = boltzmann_samples(
            lambda actions: beta * q_at_states(critic, features, actions, "first"), start.clamp(-0.999, 0.999), TARGET_STEPS
        )
    np.random.set_state(numpy_state)
    return samples


def target_spread(model: SOM, q_scale: th.Tensor | None = None) -> float:
    """The spread of SOM's target at the latest ``DIAGNOSTIC_STATES`` states (:func:`target_samples`), comparable to
    :func:`policy_diagnostics`' ``spread``: the standard deviation per coordinate in the box, averaged over states and
    coordinates."""
    return target_samples(model, q_scale).std(dim=1).mean().item()


def acting_returns(model: SOM, env_id: str, episodes: int) -> dict[str, float]:
    """SOM's mean return under two acting rules, ``episodes`` episodes each from the final evaluation's initial states
    (:func:`final_evaluation`): ``one_step`` (the deterministic one-step action, one network call) and
    ``best_of_16`` (the critic's pick among ``ACTING_BEST_OF`` sampled actions). The policy's own acting settings and
    training's random streams are left as they were."""
    policy = model.policy
    previous = policy.n_action_candidates
    numpy_state = np.random.get_state()
    returns = {}
    with th.random.fork_rng(devices=[]):
        try:
            for name, candidates in (("one_step", 1), (f"best_of_{ACTING_BEST_OF}", ACTING_BEST_OF)):
                policy.n_action_candidates = candidates
                returns[name] = float(np.mean(final_evaluation(model, env_id, episodes)))
        finally:
            policy.n_action_candidates = previous
    np.random.set_state(numpy_state)
    return returns


class Curve(BaseCallback):
    """Evaluates the deterministic policy every ``--eval-every`` steps, appends a JSON line per evaluation, saves checkpoints.

    Each line also carries the latest ``train/`` diagnostics the algorithm logged (``train`` field), the policy's
    spread, face share and Best-of-N gap at the latest states (``policy`` field, :func:`policy_diagnostics`), the wall
    time of the run so far (``seconds``, continued across resumes) and of the last interval per 10,000 steps
    (``seconds_per_10k``; evaluation and checkpoint writing included). A SOM run's evaluation at ``--timesteps`` also
    holds its returns under the one-step action and Best-of-16 (``acting`` field, :func:`acting_returns`).

    Checkpoints are taken at the start of a rollout, where the previous step is complete (transition stored,
    gradient steps done): the first one at or after each multiple of ``--checkpoint-every``, and the first one at or
    after ``--stop-at``, after which the run stops. ``runner`` is the runner's own state, saved with each checkpoint;
    ``logger_values`` are the logger's pending values of the checkpoint a run resumes from.
    """

    def __init__(self, record: dict[str, Any], eval_env: gym.Env, args: argparse.Namespace, runner: dict[str, Any],
                 logger_values: dict[str, dict[str, Any]] | None = None):  # fmt: skip
        super().__init__()
        self.record, self.eval_env, self.args, self.runner = record, eval_env, args, runner
        self.start = time.perf_counter() - runner["seconds"]
        self.logger_values = logger_values
        self.stopping = False

    def _on_training_start(self) -> None:
        if self.logger_values is not None:  # what the interrupted segment had recorded but not yet dumped
            for name, values in self.logger_values.items():
                getattr(self.logger, name).update(values)

    def _on_step(self) -> bool:
        if self.stopping:
            return False
        self.runner["diagnostics"].update(
            {
                key[len("train/") :]: float(value)
                for key, value in self.logger.name_to_value.items()
                if key.startswith("train/")
            }
        )
        if self.num_timesteps % self.args.eval_every == 0:
            returns, _ = evaluate_policy(self.model, self.eval_env, self.args.eval_episodes, return_episode_rewards=True)
            seconds = time.perf_counter() - self.start
            last_step, last_seconds = self.runner["last_line"]
            row = dict(self.record, timesteps=self.num_timesteps, mean_return=float(np.mean(returns)),
                       std_return=float(np.std(returns)), seconds=round(seconds, 1),
                       seconds_per_10k=round((seconds - last_seconds) * 10_000 / (self.num_timesteps - last_step), 1),
                       train=dict(self.runner["diagnostics"]), policy=policy_diagnostics(self.model))  # fmt: skip
            if isinstance(self.model, SOM) and self.num_timesteps >= self.args.timesteps:
                row["acting"] = acting_returns(self.model, self.args.env, self.args.eval_episodes)
            with open(self.args.out, "a") as file:
                file.write(json.dumps(row) + "\n")
            self.runner["last_line"] = (self.num_timesteps, seconds)
        return True

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        if steps == self.runner["segment_start"]:
            return
        if self.args.stop_at is not None and steps >= self.args.stop_at:
            self.stopping = True
        every = self.args.checkpoint_every
        if self.stopping or (every and steps // every > self.runner["last_checkpoint"] // every):
            self.save()

    def save(self) -> None:
        """Save a checkpoint of the run as it stands (call it between steps)."""
        assert isinstance(self.model, OffPolicyAlgorithm)
        self.runner["seconds"] = time.perf_counter() - self.start
        self.runner["last_checkpoint"] = self.model.num_timesteps
        logger = self.logger
        state = dict(config={name: getattr(self.args, name) for name in RESUME_OPTIONS}, runner=self.runner,
                     eval_env=self.eval_env, eval_env_mujoco=mujoco_states([self.eval_env]),
                     logger={name: dict(getattr(logger, name))
                             for name in ("name_to_value", "name_to_count", "name_to_excluded")})  # fmt: skip
        save_checkpoint(self.args.checkpoint_dir, self.model, state)


def final_evaluation(model: BaseAlgorithm, env_id: str, episodes: int, deterministic: bool = True) -> list[float]:
    """Returns of ``episodes`` episodes, episode i from ``reset(seed=FINAL_EVAL_SEED + i)`` of a fresh env, acting
    deterministically (the default) or by sampling the policy.

    Every run (any algorithm, any seed) meets the same initial states, so final returns compare without the
    spread that different starts add (on Pendulum-v1 a start alone moves one episode's return by hundreds).
    """
    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=FINAL_EVAL_SEED + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(observation, deterministic=deterministic)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def current_commit() -> str:
    """The checkout's commit, with ``+`` when its tracked files differ from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=os.path.dirname(here)).returncode != 0
    return commit + ("+" if dirty else "")


def run(args: argparse.Namespace) -> OffPolicyAlgorithm | None:
    """Train, evaluate and checkpoint one run, from scratch or from the latest checkpoint in ``--checkpoint-dir``.

    Returns the model as training left it, or None when the run had nothing left to do.
    """
    args.out = os.path.abspath(args.out)
    saved = checkpoints(args.checkpoint_dir) if args.checkpoint_every else {}
    if args.stop_at is not None and saved and max(saved) >= args.stop_at:
        print(f"the run is at step {max(saved)}, --stop-at is {args.stop_at}: nothing to do")
        return None
    logger_values = None
    if saved:
        model, state = load_checkpoint(saved[max(saved)], args.device)
        changed = [name for name in RESUME_OPTIONS if state["config"][name] != getattr(args, name)]
        if changed:
            theirs = ", ".join(f"--{name.replace('_', '-')} {state['config'][name]}" for name in changed)
            raise SystemExit(f"{args.checkpoint_dir} holds a run made with {theirs}: use those or another --checkpoint-dir")
        eval_env, runner, logger_values = state["eval_env"], state["runner"], state["logger"]
        runner["segment_start"] = model.num_timesteps
        drop_lines_after(args.out, runner["run"], model.num_timesteps)
        print(f"resuming {args.out} from step {model.num_timesteps} ({saved[max(saved)]})")
    else:
        # a copy: SB3 writes into the policy_kwargs dict it is given (SAC adds use_sde), and args.hyperparams is
        # what a resumed run is compared with
        hyperparams = with_schedules({**zoo_hyperparams(args.algo, args.env), **copy.deepcopy(args.hyperparams)})
        model = ALGOS[args.algo](env=args.env, seed=args.seed, device=args.device, **hyperparams)
        eval_env = Monitor(gym.make(args.env))
        eval_env.reset(seed=10_000 + args.seed)
        runner = dict(run=uuid.uuid4().hex[:12], segment_start=0, last_checkpoint=0, seconds=0.0, last_line=(0, 0.0),
                      diagnostics={})  # fmt: skip
    if model.num_timesteps >= args.timesteps:
        print(f"the run is at step {model.num_timesteps}, --timesteps is {args.timesteps}: nothing to do")
        return None
    record = dict(algo=args.algo, env=args.env, seed=args.seed, hyperparams=args.hyperparams, device=args.device,
                  commit=current_commit(),
                  machine=f"{platform.node()} ({os.cpu_count()} cpus)", threads=th.get_num_threads(), run=runner["run"],
                  segment_start=runner["segment_start"])  # fmt: skip
    curve = Curve(record, eval_env, args, runner, logger_values)
    # the learning-rate progress runs over --timesteps in both cases: learn() adds num_timesteps to what it is given
    model.learn(args.timesteps - model.num_timesteps, callback=curve, reset_num_timesteps=not saved)
    if args.checkpoint_every and not curve.stopping and runner["last_checkpoint"] < model.num_timesteps:
        curve.save()  # the end of the budget: a later command with a larger --timesteps continues from here
    if args.final_eval_episodes and not curve.stopping:
        returns = final_evaluation(model, args.env, args.final_eval_episodes)
        row = dict(record, timesteps=model.num_timesteps, final_episodes=args.final_eval_episodes,
                   mean_return=float(np.mean(returns)), std_return=float(np.std(returns)))  # fmt: skip
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")
    return model


def curve_summary(curves: dict[str, dict[str, dict[int, dict[int, float]]]], worst_after: int | None) -> str:
    """Per task and algorithm: the area under each seed's curve and, with ``worst_after``, its lowest evaluation after it.

    The area is the mean evaluation return over the steps every run of the task evaluated, up to the common
    budget (the trapezoid rule over those steps, divided by their span): a curve that learns earlier has a larger one.
    """
    header = "| task | algorithm | area under the curve, mean ± std (per seed) |"
    if worst_after is not None:
        header += f" lowest evaluation after step {worst_after} (per seed) |"
    lines = ["", header, "|---" * header.count(" |") + "|"]
    for env_id, by_algo in curves.items():
        budget = min(max(points) for seeds in by_algo.values() for points in seeds.values())
        steps = sorted(set.intersection(*(set(points) for seeds in by_algo.values() for points in seeds.values())))
        steps = [step for step in steps if step <= budget]
        for algo, seeds in sorted(by_algo.items()):
            areas, worst = [], []
            for seed in sorted(seeds):
                values = [seeds[seed][step] for step in steps]
                areas.append(float(np.trapezoid(values, steps) / (steps[-1] - steps[0])) if len(steps) > 1 else values[0])
                if worst_after is not None:
                    later = [value for step, value in seeds[seed].items() if worst_after < step <= budget]
                    worst.append(f"{min(later):.0f}" if later else "-")
            area = f"{np.mean(areas):.0f} ± {np.std(areas):.0f} ({', '.join(f'{a:.0f}' for a in areas)})"
            lines.append(
                f"| {env_id} | {algo.upper()} | {area} |" + (f" {', '.join(worst)} |" if worst_after is not None else "")
            )
    return "\n".join(lines) + "\n"


def over_training(
    curves: dict[str, dict[str, dict[int, dict[int, float]]]],
    policies: dict[tuple[str, str, int, int], dict[str, float]],
    env_id: str,
) -> str:
    """A table of one task's policies over training, per evaluation step up to the budget: the spread per action
    coordinate and the critic's Best-of-64 gap (SOM and SAC), and SOM's Q scale and effective sample size, each the
    mean over the seeds whose lines record it (how many)."""
    if env_id not in curves:
        raise SystemExit(f"--over-training {env_id}: no run of that task in the files")
    by_algo = curves[env_id]
    steps = sorted({step for seeds in by_algo.values() for points in seeds.values() for step in points})

    def cell(algo: str, step: int, name: str, digits: int) -> str:
        seeds = by_algo.get(algo, {})
        values = [entry[name] for seed in seeds if name in (entry := policies.get((env_id, algo, seed, step), {}))]
        return f"{np.mean(values):.{digits}f} ({len(values)})" if values else "-"

    lines = [
        "",
        f"{env_id} over training, at the latest {DIAGNOSTIC_STATES} states of the replay buffer at each evaluation:",
        "",
        f"| steps | spread, SOM | spread, SAC | Best-of-{DIAGNOSTIC_BEST_OF} gap, SOM | Best-of-{DIAGNOSTIC_BEST_OF} gap, SAC "
        "| Q scale, SOM | effective samples of the score estimate, SOM |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        cells = [cell("som", step, "spread", 2), cell("sac", step, "spread", 2), cell("som", step, "best_of_n_gap", 2),
                 cell("sac", step, "best_of_n_gap", 2), cell("som", step, "q_scale", 2),
                 cell("som", step, "effective_sample_size", 1)]  # fmt: skip
        if any(text != "-" for text in cells):
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def code_segments(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], list[tuple[int, int, str]]]:
    """Per (task, algorithm, seed) whose evaluation lines name more than one commit: its segments on one commit each,
    as (first step, last step, commit) in step order."""
    steps_by_run: dict[tuple[str, str, int], list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        if "final_episodes" not in row and "checkpoint" not in row:  # evaluation lines only
            steps_by_run[row["env"], row["algo"], row["seed"]].append((row["timesteps"], row.get("commit", "")))
    segments_by_run = {}
    for run_key, points in steps_by_run.items():
        segments: list[tuple[int, int, str]] = []
        for step, commit in sorted(points):
            if segments and segments[-1][2] == commit:
                segments[-1] = (segments[-1][0], step, commit)
            else:
                segments.append((step, step, commit))
        if len({commit for _, _, commit in segments}) > 1:
            segments_by_run[run_key] = segments
    return segments_by_run


def report(args: argparse.Namespace) -> None:
    rows = []
    for path in args.files:
        with open(path) as file:
            rows += [json.loads(line) for line in file if line.strip()]
    curves: dict[str, dict[str, dict[int, dict[int, float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    # (task, algorithm, seed, steps): the policy at the latest states (``policy``) and the latest training logs
    policies: dict[tuple[str, str, int, int], dict[str, float]] = {}
    final_runs: dict[tuple[str, int, int], dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    acting: dict[tuple[str, int], dict[str, float]] = {}  # (run, steps): SOM's returns by acting rule
    run_ids: dict[tuple[str, str, int, int], str] = {}  # (task, algorithm, seed, steps): the run's id
    for row in rows:
        if "checkpoint" in row:  # a diagnose line: its acting returns count where the run's own line has none
            if "acting" in row:
                acting.setdefault((row["run"], row["timesteps"]), row["acting"])
            continue
        if "acting" in row:
            acting[row["run"], row["timesteps"]] = row["acting"]
        if "final_episodes" in row:
            final_runs[row["env"], row["timesteps"], row["final_episodes"]][row["algo"]].append(
                (row["seed"], row["mean_return"])
            )
        else:
            curves[row["env"]][row["algo"]][row["seed"]][row["timesteps"]] = row["mean_return"]
            run_ids[row["env"], row["algo"], row["seed"], row["timesteps"]] = row.get("run", "")
            if row.get("policy"):
                policies[row["env"], row["algo"], row["seed"], row["timesteps"]] = {**row.get("train", {}), **row["policy"]}
    # each task at one budget: --budget, with the runs that reached it, or the largest step that all its runs reached;
    # every curve is read up to the budget
    budgets: dict[str, int] = {}
    for env_id, by_algo in list(curves.items()):
        if args.budget is not None:
            by_algo = {algo: reached for algo, seeds in by_algo.items()
                       if (reached := {seed: points for seed, points in seeds.items() if args.budget in points})}  # fmt: skip
        if not by_algo:
            del curves[env_id]
            continue
        budget = args.budget or min(max(points) for seeds in by_algo.values() for points in seeds.values())
        curves[env_id] = {algo: {seed: {step: value for step, value in points.items() if step <= budget}
                                 for seed, points in seeds.items()} for algo, seeds in by_algo.items()}  # fmt: skip
        budgets[env_id] = budget
    if not curves:
        raise SystemExit(f"no run in {', '.join(args.files)} has an evaluation at step {args.budget}")
    compared = [row for row in rows if row.get("seed") in curves.get(row.get("env", ""), {}).get(row.get("algo", ""), {})]
    mixed = code_segments([row for row in compared if row["timesteps"] <= budgets[row["env"]]])
    lines = [
        f"| task | budget (steps) | SOM | SAC | seeds (SOM, SAC) | policy spread (SOM, SAC) "
        f"| SOM one-step / Best-of-{ACTING_BEST_OF} |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, by_algo in curves.items():
        budget = budgets[env_id]
        cells, spread_cells = [], []
        for algo in ("som", "sac"):
            at_budget = [(seed, points[budget]) for seed, points in sorted(by_algo.get(algo, {}).items()) if budget in points]
            finals = [value for _, value in at_budget]
            per_seed = ", ".join(f"{value:.0f}" + ("*" if (env_id, algo, seed) in mixed else "") for seed, value in at_budget)
            cells.append(f"{np.mean(finals):.0f} ± {np.std(finals):.0f} ({per_seed})" if finals else "-")
            spread = [policies[key]["spread"] for seed, _ in at_budget if (key := (env_id, algo, seed, budget)) in policies]
            spread_cells.append(f"{np.mean(spread):.2f} ({len(spread)})" if spread else "-")
        seeds = ", ".join(str(len(by_algo.get(algo, {}))) for algo in ("som", "sac"))
        som_runs = [run_ids.get((env_id, "som", seed, budget)) for seed in sorted(by_algo.get("som", {}))]
        rules = [acting[key] for run_id in som_runs if (key := (run_id, budget)) in acting]
        rule_cell = "-"
        if rules:
            means = [np.mean([returns[rule] for returns in rules]) for rule in ("one_step", f"best_of_{ACTING_BEST_OF}")]
            rule_cell = f"{means[0]:.0f} / {means[1]:.0f} ({len(rules)})"
        lines.append(f"| {env_id} | {budget} | {cells[0]} | {cells[1]} | {seeds} | {', '.join(spread_cells)} | {rule_cell} |")
    table = "\n".join(lines) + (
        "\n\nCells: mean ± std over seeds of the deterministic evaluation return (per-seed values); policy spread:"
        " the standard deviation per action coordinate of the stochastic actions in [-1, 1] at the latest states of"
        " the replay buffer (uniform: 0.58), mean over the seeds whose lines record it (how many), `-` where none"
        f" does. SOM one-step / Best-of-{ACTING_BEST_OF}: the mean return of the deterministic one-step action and of"
        f" the critic's best of {ACTING_BEST_OF} sampled actions, each over the run's evaluation episodes from the final"
        " evaluation's initial"
        " states, mean over the seeds whose lines record it (how many).\n"
    )
    if mixed:
        table += "\nMarked *: runs whose segments ran on different code:\n"
        for (env_id, algo, seed), segments in sorted(mixed.items()):
            spans = ", ".join(f"{commit} (evaluations at steps {first}-{last})" for first, last, commit in segments)
            table += f"- {env_id}, {algo.upper()} seed {seed}: {spans}\n"
    table += curve_summary(curves, args.worst_after)
    for env_id in args.over_training:
        table += over_training(curves, policies, env_id)
    if final_runs:
        lines = ["| task | steps | episodes | SOM | SAC |", "|---|---|---|---|---|"]
        for (env_id, steps, episodes), by_algo in sorted(final_runs.items()):
            cells = []
            for algo in ("som", "sac"):
                values = [value for _, value in sorted(by_algo.get(algo, []))]  # in seed order
                per_seed = ", ".join(f"{value:.0f}" for value in values)
                cells.append(f"{np.mean(values):.0f} ± {np.std(values):.0f} ({per_seed})" if values else "-")
            lines.append(f"| {env_id} | {steps} | {episodes} | {cells[0]} | {cells[1]} |")
        note = ("\nFinal evaluation (--final-eval-episodes): every run from the same initial states; mean ± std over\n"
                "seeds of each run's mean deterministic return (per-seed values).\n\n")  # fmt: skip
        table += note + "\n".join(lines) + "\n"
    print(table)
    if args.table:
        with open(args.table, "w") as file:
            file.write(table)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6), squeeze=False)
        for ax, (env_id, by_algo) in zip(axes[0], curves.items(), strict=True):
            for algo, color in (("som", "tab:blue"), ("sac", "tab:orange")):
                seeds = by_algo.get(algo, {})
                if not seeds:
                    continue
                steps = sorted(set.intersection(*(set(points) for points in seeds.values())))
                values = np.array([[points[step] for step in steps] for points in seeds.values()])
                ax.plot(steps, values.mean(0), color=color, label=f"{algo.upper()} ({len(seeds)} seeds)")
                ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2)
            ax.set_title(env_id)
            ax.set_xlabel("environment steps")
            ax.set_ylabel("evaluation return")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


def parse_override(parser: argparse.ArgumentParser, item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--hyperparams`` as (key, value), VALUE a Python literal (a bare word stays a string)."""
    key, separator, text = item.partition("=")
    if not separator or not key.isidentifier():
        parser.error(f"--hyperparams takes KEY=VALUE items, got {item!r}")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return key, text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (``argv``: its arguments, ``sys.argv[1:]`` when None), checked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="train one algorithm on one task with one seed")
    one.add_argument("--algo", choices=sorted(ALGOS), required=True)
    one.add_argument("--env", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--timesteps", type=int, required=True)
    one.add_argument(
        "--hyperparams",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="constructor arguments over the zoo entry's (VALUE a Python literal), recorded in every line of --out",
    )
    one.add_argument("--eval-every", type=int, default=1000)
    one.add_argument("--eval-episodes", type=int, default=10)
    one.add_argument(
        "--final-eval-episodes",
        type=int,
        default=0,
        help="at the end of the budget, evaluate this many episodes from the same initial states as every run",
    )
    one.add_argument("--device", default="cpu")
    one.add_argument("--out", required=True, help="JSON-lines file the evaluations are appended to")
    one.add_argument("--checkpoint-every", type=int, help="save a checkpoint every N steps and resume from the latest one")
    one.add_argument("--checkpoint-dir", help="where this run's checkpoints live (default runs/checkpoints/ALGO_ENV_SEED)")
    one.add_argument("--stop-at", type=int, help="stop at the first checkpoint at or after step S (needs --checkpoint-every)")
    summary = commands.add_parser("report", help="table and curves from run outputs")
    summary.add_argument("files", nargs="+")
    summary.add_argument("--table")
    summary.add_argument("--png")
    summary.add_argument("--worst-after", type=int, help="also give each run's lowest evaluation after this step")
    summary.add_argument(
        "--over-training",
        nargs="+",
        default=[],
        metavar="ENV",
        help="also tabulate these tasks' policies per evaluation (spread, Best-of-N gap, Q scale, effective samples)",
    )
    summary.add_argument(
        "--budget",
        type=int,
        help="compare each task at this step, with the runs that reached it (default: the largest "
        "step every run of the task reached)",
    )
    diagnosis = commands.add_parser("diagnose", help="the policy at checkpoints: spread, face share, Best-of-N gap")
    diagnosis.add_argument("checkpoints", nargs="+", help="checkpoint directories (CHECKPOINT_DIR/step_N)")
    diagnosis.add_argument("--out", required=True, help="JSON-lines file the lines are appended to")
    args = parser.parse_args(argv)
    if args.command == "diagnose":
        missing = [path for path in args.checkpoints if not os.path.isfile(os.path.join(path, "state.pkl"))]
        if missing:
            parser.error(f"not a complete checkpoint (no state.pkl): {', '.join(missing)}")
        return args
    if args.command == "report":
        return args
    args.hyperparams = dict(parse_override(parser, item) for item in args.hyperparams)
    if args.final_eval_episodes < 0:
        parser.error("--final-eval-episodes must be >= 0")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        parser.error("--checkpoint-every must be >= 1")
    if (args.checkpoint_dir is not None or args.stop_at is not None) and args.checkpoint_every is None:
        parser.error("--checkpoint-dir and --stop-at need --checkpoint-every")
    if args.checkpoint_every and args.checkpoint_dir is None:
        args.checkpoint_dir = os.path.join("runs", "checkpoints", f"{args.algo}_{args.env}_{args.seed}")
    return args


def diagnose(args: argparse.Namespace) -> None:
    """One line per checkpoint: its run's algorithm, task, seed, id and step, :func:`policy_diagnostics` and, for SOM,
    :func:`target_spread` and :func:`acting_returns` over the run's ``--eval-episodes`` (``acting`` field, which
    ``report`` reads)."""
    for path in args.checkpoints:
        model, state = load_checkpoint(path, "cpu")
        config = state["config"]
        row = {"checkpoint": os.path.normpath(path), "algo": config["algo"], "env": config["env"], "seed": config["seed"],
               "run": state["runner"]["run"], "timesteps": model.num_timesteps, **policy_diagnostics(model)}  # fmt: skip
        if isinstance(model, SOM):
            row["target_spread"] = target_spread(model)
            row["acting"] = acting_returns(model, config["env"], config["eval_episodes"])
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")


def main() -> None:
    args = parse_args()
    {"run": run, "report": report, "diagnose": diagnose}[args.command](args)


if __name__ == "__main__":
    main()
