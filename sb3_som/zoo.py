"""rl-zoo3 for SOM: ``python -m sb3_som.zoo {train,enjoy,record_video} --algo som [rl_zoo3 flags]``.

SOM joins the zoo's algorithm table and its Optuna sampler and converter tables at run time, then the
zoo's own code runs. ``--conf-file`` defaults to the package's ``hyperparams/som.yml``.
"""

from __future__ import annotations

import runpy
import sys
from importlib import resources
from typing import Any

import optuna
from rl_zoo3 import hyperparams_opt, utils
from rl_zoo3.hyperparams_opt import convert_offpolicy_params

from sb3_som.som import SOM

COMMANDS = ("train", "enjoy", "record_video")


def hyperparams_file() -> str:
    """Path of the shipped ``som.yml`` (found from an installed package and from any directory)."""
    return str(resources.files("sb3_som.hyperparams").joinpath("som.yml"))


class InferenceSOM(SOM):
    """SOM for enjoy/record_video: loading allocates a one-transition replay buffer, not the training one."""

    @classmethod
    def load(cls, path, env=None, device="auto", custom_objects=None, print_system_info=False, force_reset=True, **kwargs):  # type: ignore[override]
        kwargs.setdefault("buffer_size", 1)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)


def convert_som_params(sampled: dict[str, Any]) -> dict[str, Any]:
    """Optuna's raw parameters of :func:`sample_som_params` -> SOM keyword arguments."""
    sampled = dict(sampled)
    n_score_samples = 2 ** sampled.pop("n_score_samples_pow")
    hyperparams = convert_offpolicy_params(sampled)
    hyperparams["n_score_samples"] = n_score_samples
    return hyperparams


def sample_som_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Optuna search space for SOM: SAC's off-policy knobs plus the temperature, K and the flow's knobs."""
    sampled = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 9),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        "train_freq": trial.suggest_int("train_freq", 1, 10),
        "tau": trial.suggest_float("tau", 1e-3, 0.08, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium", "big"]),
        "alpha": trial.suggest_float("alpha", 1.0, 100.0, log=True),
        "n_score_samples_pow": trial.suggest_int("n_score_samples_pow", 3, 6),
        "distillation_coef": trial.suggest_float("distillation_coef", 0.3, 3.0, log=True),
        "loss_weight_power": trial.suggest_categorical("loss_weight_power", [0.0, 0.5, 1.0]),
    }
    return convert_som_params(sampled)


def register(inference: bool = False) -> None:
    """Add SOM to rl-zoo3's algorithm, sampler and converter tables (in memory only)."""
    utils.ALGOS["som"] = InferenceSOM if inference else SOM
    hyperparams_opt.HYPERPARAMS_SAMPLER["som"] = sample_som_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["som"] = convert_som_params


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m sb3_som.zoo {{{','.join(COMMANDS)}}} --algo som --env ENV [rl_zoo3 flags]")
    command, rest = argv[0], argv[1:]
    register(inference=command != "train")
    if command == "train" and not any(arg in ("-conf", "--conf-file") for arg in rest):
        rest += ["--conf-file", hyperparams_file()]
    sys.argv = [f"rl_zoo3.{command}", *rest]
    runpy.run_module(f"rl_zoo3.{command}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
