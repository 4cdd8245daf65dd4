"""rl-zoo3 for SOM: ``python -m sb3_som.zoo COMMAND --algo som [rl_zoo3 flags]`` (or the ``sb3-som-zoo`` script).

SOM joins the zoo's algorithm table and its Optuna sampler and converter tables at run time, then the zoo's
own script for COMMAND runs with the zoo's own flags. ``train --algo som`` reads the package's
``hyperparams/som.yml`` unless ``--conf-file`` says otherwise; every other algorithm reads the zoo's files.

Three of the zoo's scripts need more than the table entry, so they run through :func:`run_main_block`,
which runs a script's ``if __name__ == "__main__":`` block in its module with some of its names replaced:

- ``record_training`` starts ``python -m rl_zoo3.record_video`` for each checkpoint; here it starts
  ``sys.executable -m sb3_som.zoo record_video`` instead, so SOM is registered in that process too,
  and the ``ffmpeg`` that imageio-ffmpeg ships is put on ``PATH`` where there is none.
- ``push_to_hub`` imports ``generate_metadata`` from huggingface_sb3, which huggingface_sb3 3.x (the
  only line that rl-zoo3 2.9 accepts) has as ``_generate_metadata``: :func:`generate_metadata` fills the gap.
  The model card of a SOM agent names SOM and loads it with sb3-som (:func:`som_model_card`).
- ``load_from_hub`` treats a missing ``vec_normalize.pkl`` as "no normalization" only when the download raises
  requests' ``HTTPError``; huggingface_hub 1.x and later raise ``RemoteEntryNotFoundError`` for a file the Hub does
  not have, which counts as well here (a download that fails for another reason, such as no connection and no
  cached copy, still raises).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pprint import pformat
from types import SimpleNamespace
from typing import Any

import optuna
from rl_zoo3 import hyperparams_opt, utils
from rl_zoo3.hyperparams_opt import convert_offpolicy_params, sample_her_params
from stable_baselines3.common.type_aliases import GymEnv

from sb3_som.som import SOM

PROG = "sb3-som-zoo"
REPOSITORY = "https://github.com/sb3-som/sb3-som"
COMMANDS: dict[str, str] = {
    "train": "train an agent, or tune its hyperparameters with -optimize (rl_zoo3.train)",
    "enjoy": "run a trained agent (rl_zoo3.enjoy)",
    "record_video": "record a video of a trained agent (rl_zoo3.record_video)",
    "record_training": "record a video of every checkpoint of a run, joined into one (rl_zoo3.record_training)",
    "push_to_hub": "evaluate a trained agent and upload it with a model card to the Hugging Face Hub (rl_zoo3.push_to_hub)",
    "load_from_hub": "download an agent from the Hugging Face Hub into the log folder (rl_zoo3.load_from_hub)",
}


def usage() -> str:
    """The help text of ``sb3-som-zoo`` / ``python -m sb3_som.zoo``."""
    commands = "\n".join(f"  {name:<16} {text}" for name, text in COMMANDS.items())
    return (
        f"usage: {PROG} COMMAND --algo som --env ENV [rl_zoo3 flags]\n"
        "   or: python -m sb3_som.zoo COMMAND --algo som --env ENV [rl_zoo3 flags]\n\n"
        "rl-zoo3's scripts with SOM registered as --algo som (every other algorithm of the zoo works as well).\n\n"
        f"commands:\n{commands}\n\n"
        f"'{PROG} COMMAND --help' lists the flags of COMMAND (the zoo's own). train --algo som reads the package's\n"
        "hyperparams/som.yml unless --conf-file is given. Plots of the logs: python -m rl_zoo3.plots.plot_train\n"
        "and python -m rl_zoo3.plots.all_plots (the 'plots' extra)."
    )


def hyperparams_file() -> str:
    """Path of the shipped ``som.yml`` (found from an installed package and from any directory)."""
    return str(resources.files("sb3_som.hyperparams").joinpath("som.yml"))


class InferenceSOM(SOM):
    """SOM for enjoy, record_video and push_to_hub: loading allocates a one-transition replay buffer."""

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | pathlib.Path,
        env: GymEnv | None = None,
        device: str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SOM:
        kwargs.setdefault("buffer_size", 1)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)


def convert_som_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's raw parameters of :func:`sample_som_params` -> SOM keyword arguments."""
    sampled = dict(sampled_params)
    n_score_samples = 2 ** sampled.pop("n_score_samples_pow")
    hyperparams = convert_offpolicy_params(sampled)
    hyperparams["n_score_samples"] = n_score_samples
    return hyperparams


def sample_som_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Optuna search space for SOM: SAC's off-policy knobs plus the temperature and K.

    As rl-zoo3's SAC sampler does, it records ``gamma`` and ``batch_size`` as user attributes of the trial
    (here also ``n_score_samples``) and, with a ``HerReplayBuffer``, samples HER's ``n_sampled_goal`` and
    ``goal_selection_strategy`` into ``replay_buffer_kwargs``.
    """
    sampled: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 9),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        "train_freq": trial.suggest_int("train_freq", 1, 10),
        "tau": trial.suggest_float("tau", 1e-3, 0.08, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium", "big"]),
        "alpha": trial.suggest_float("alpha", 1.0, 100.0, log=True),
        "n_score_samples_pow": trial.suggest_int("n_score_samples_pow", 3, 6),
    }
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    trial.set_user_attr("batch_size", 2 ** sampled["batch_size_pow"])
    trial.set_user_attr("n_score_samples", 2 ** sampled["n_score_samples_pow"])
    if additional_args["using_her_replay_buffer"]:
        sampled = sample_her_params(trial, sampled, additional_args["her_kwargs"])
    return convert_som_params(sampled)


def register(inference: bool = False) -> None:
    """Add SOM to rl-zoo3's algorithm, sampler and converter tables (in memory only)."""
    utils.ALGOS["som"] = InferenceSOM if inference else SOM
    hyperparams_opt.HYPERPARAMS_SAMPLER["som"] = sample_som_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["som"] = convert_som_params


def train_arguments(args: list[str]) -> list[str]:
    """rl_zoo3.train's arguments: ``--conf-file`` defaults to the shipped som.yml for ``--algo som`` only."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")  # rl_zoo3.train's default
    parser.add_argument("-conf", "--conf-file")
    known, _ = parser.parse_known_args(args)
    if known.algo == "som" and known.conf_file is None:
        return [*args, "--conf-file", hyperparams_file()]
    return args


def run_main_block(module_name: str, **replacements: Any) -> None:
    """Run the ``if __name__ == "__main__":`` block of a module in that module, with some of its names replaced.

    The module is imported (so its functions see the replacements as their globals), then only the body of
    its main block runs, with the module's file name and line numbers in tracebacks; the replaced names get their
    own values back afterwards.
    """
    module = importlib.import_module(module_name)
    missing = object()
    originals = {name: vars(module).get(name, missing) for name in replacements}
    vars(module).update(replacements)
    try:
        _run_main_block(module, module_name)
    finally:
        for name, value in originals.items():
            if value is missing:
                vars(module).pop(name, None)
            else:
                vars(module)[name] = value


def _run_main_block(module: Any, module_name: str) -> None:
    """Run the body of ``module``'s ``if __name__ == "__main__":`` block in the module's namespace."""
    tree = ast.parse(inspect.getsource(module))
    guard = "__name__ == '__main__'"
    main_blocks = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == guard]
    if len(main_blocks) != 1:
        raise RuntimeError(f"{module_name} has {len(main_blocks)} 'if __name__ == \"__main__\":' blocks, expected one")
    body = ast.Module(body=main_blocks[0].body, type_ignores=[])
    exec(compile(body, inspect.getfile(module), "exec"), vars(module))


def call_through_this_entry_point(command: list[str], **kwargs: Any) -> int:
    """``subprocess.call`` for rl_zoo3.record_training, whose ``python -m rl_zoo3.record_video ...`` runs as
    ``sys.executable -m sb3_som.zoo record_video ...``: this interpreter and this entry point, so SOM is registered.
    """
    if command[1:3] == ["-m", "rl_zoo3.record_video"]:
        command = [sys.executable, "-m", "sb3_som.zoo", "record_video", *command[3:]]
    return subprocess.call(command, **kwargs)


@contextlib.contextmanager
def ffmpeg_on_path() -> Iterator[None]:
    """Where ``PATH`` has no ``ffmpeg``, put imageio-ffmpeg's binary (a dependency of moviepy) there as ``ffmpeg``."""
    if shutil.which("ffmpeg") is not None:
        yield
        return
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise SystemExit("record_training needs ffmpeg on PATH, or imageio-ffmpeg (pip install 'sb3-som[zoo]')") from error
    old_path = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="sb3-som-ffmpeg-") as folder:
        os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), os.path.join(folder, "ffmpeg"))
        os.environ["PATH"] = folder + os.pathsep + old_path
        try:
            yield
        finally:
            os.environ["PATH"] = old_path


def generate_metadata(model_name: str, env_id: str, mean_reward: float, std_reward: float) -> dict[str, Any]:
    """huggingface_sb3's ``generate_metadata`` (model card metadata as a dict), which rl_zoo3 2.9 imports.

    huggingface_sb3 3.x has it only as ``_generate_metadata``, returning a ``ModelCardData``.
    """
    from huggingface_sb3.push_to_hub import _generate_metadata

    return _generate_metadata(model_name, env_id, mean_reward, std_reward).to_dict()


def provide_generate_metadata() -> None:
    """Make ``from huggingface_sb3.push_to_hub import generate_metadata`` work (rl_zoo3.push_to_hub does it)."""
    try:
        hub = importlib.import_module("huggingface_sb3.push_to_hub")  # the package's push_to_hub is a function
    except ImportError as error:
        raise SystemExit(f"push_to_hub needs huggingface_sb3 (pip install 'sb3-som[zoo]'): {error}") from error
    if hasattr(hub, "generate_metadata"):
        return
    if not hasattr(hub, "_generate_metadata"):
        raise SystemExit(
            "push_to_hub: rl_zoo3.push_to_hub imports generate_metadata from huggingface_sb3.push_to_hub, and this "
            "huggingface_sb3 has neither generate_metadata nor _generate_metadata; install sb3-team-hf-integration 3.x"
        )
    vars(hub)["generate_metadata"] = generate_metadata


def som_model_card(
    organization: str,
    env_id: str,
    mean_reward: float,
    std_reward: float,
    hyperparams: dict[str, Any],
    env_kwargs: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """Model card and metadata of a SOM agent on the Hub: it names SOM and loads the agent with sb3-som."""
    from huggingface_sb3 import EnvironmentName, ModelName

    metadata = generate_metadata("SOM", env_id, mean_reward, std_reward)
    metadata["tags"] = [*metadata.get("tags", []), "sb3-som"]
    model_name = ModelName("som", EnvironmentName(env_id))
    card = f"""
# **SOM** Agent playing **{env_id}**
This is a trained model of a **SOM** (Score-Based One-step MeanFlow Policy Optimization) agent playing **{env_id}**
using [sb3-som]({REPOSITORY}), a [Stable-Baselines3](https://github.com/DLR-RM/stable-baselines3) plugin,
and the [RL Zoo](https://github.com/DLR-RM/rl-baselines3-zoo).

## Usage (with sb3-som and the RL Zoo)

```bash
pip install "sb3-som[zoo]"
# Download the model into the logs/ folder (the model is a pickle: huggingface_sb3 asks you to trust it), then run it
TRUST_REMOTE_CODE=True python -m sb3_som.zoo load_from_hub --algo som --env {env_id} -orga {organization} -f logs/
python -m sb3_som.zoo enjoy --algo som --env {env_id} -f logs/
```

## Usage (in Python)

```python
from huggingface_sb3 import load_from_hub
from sb3_som import SOM

checkpoint = load_from_hub("{organization}/{model_name}", "{model_name.filename}")  # with TRUST_REMOTE_CODE=True set
model = SOM.load(checkpoint, buffer_size=1)  # a one-transition replay buffer is enough to act
action, _ = model.predict(obs, deterministic=True)
```

## Training (with sb3-som and the RL Zoo)

```bash
python -m sb3_som.zoo train --algo som --env {env_id} -f logs/
# Upload the model and generate a video (when possible)
python -m sb3_som.zoo push_to_hub --algo som --env {env_id} -f logs/ -orga {organization}
```

## Hyperparameters
```python
{pformat(hyperparams)}
```
"""
    if env_kwargs:
        card += f"""
# Environment Arguments
```python
{pformat(env_kwargs)}
```
"""
    return card, metadata


def run_push_to_hub() -> None:
    """rl_zoo3.push_to_hub with huggingface_sb3 3.x, and SOM's own model card for ``--algo som``."""
    provide_generate_metadata()
    upstream = importlib.import_module("rl_zoo3.push_to_hub")
    zoo_model_card: Callable[..., tuple[str, dict[str, Any]]] = upstream.generate_model_card

    def generate_model_card(algo_name: str, algo_class_name: str, *args: Any) -> tuple[str, dict[str, Any]]:
        if algo_name == "som":
            return som_model_card(*args)
        return zoo_model_card(algo_name, algo_class_name, *args)

    run_main_block("rl_zoo3.push_to_hub", generate_model_card=generate_model_card)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m sb3_som.zoo`` and ``sb3-som-zoo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        problem = "no command given" if not argv else f"unknown command {argv[0]!r}"
        raise SystemExit(f"{PROG}: error: {problem}")
    command, rest = argv[0], argv[1:]
    register(inference=command != "train")
    if command == "train":
        rest = train_arguments(rest)
    module_name = f"rl_zoo3.{command}"
    if command == "record_training":
        sys.argv = [f"{PROG} {command}", *rest]
        with ffmpeg_on_path():
            run_main_block(module_name, subprocess=SimpleNamespace(call=call_through_this_entry_point))
    elif command == "push_to_hub":
        sys.argv = [f"{PROG} {command}", *rest]
        run_push_to_hub()
    elif command == "load_from_hub":
        from huggingface_hub.errors import RemoteEntryNotFoundError
        from requests.exceptions import HTTPError

        sys.argv = [f"{PROG} {command}", *rest]
        run_main_block(module_name, HTTPError=(HTTPError, RemoteEntryNotFoundError))
    else:
        sys.argv = [module_name, *rest]
        runpy.run_module(module_name, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
