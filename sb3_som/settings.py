"""SOM's own settings: one default each (:data:`DEFAULTS`), one check each, and one validator for the whole model."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import Schedule

from sb3_som.critic_values import Q_SCALE_FLOORS
from sb3_som.score import MIN_SCORE_SAMPLES
from sb3_som.validation import (
    check_auto_or_positive,
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_optional_schedule,
)


@dataclass(frozen=True)
class SOMSettings:
    """SOM's own constructor arguments with their defaults (``SOM.__init__`` takes its defaults from here)."""

    actor_learning_rate: float | Schedule | None = None
    alpha: float | str = "auto"
    n_score_samples: int = 16
    q_scale_floor: str = "auto"
    distillation_steps: int = 8
    target_update_interval: int = 1
    compile_step: bool = False


DEFAULTS = SOMSettings()

# alpha="auto" is AUTO_ALPHA * sqrt(d) for d action dimensions: the same greediness per action dimension whatever d
AUTO_ALPHA = 10.0

MAX_ALPHA = 1e4
ALPHA_BOUND_REASON = (
    " (alpha applies to Q in units of its spread: at 1e4 a proposal a hundredth of that spread below the best already"
    " weighs e^-100 against it, so a larger alpha adds no greediness the critic can resolve and only drives the logits"
    " alpha * Q / q_scale toward float32 overflow)"
)
# proposals per update (actor states * n_score_samples), each evaluated by the critic
MAX_SCORE_PROPOSALS = 2**22

# the check each setting gets whenever it is assigned (SOM's own, and SB3's that SOM checks as well); numbers
# come back as Python numbers
SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "actor_learning_rate": check_optional_schedule,
    "alpha": partial(check_auto_or_positive, maximum=MAX_ALPHA, why=ALPHA_BOUND_REASON),
    "n_score_samples": partial(check_int, minimum=MIN_SCORE_SAMPLES),
    "q_scale_floor": partial(check_choice, choices=Q_SCALE_FLOORS),
    "distillation_steps": partial(check_int, minimum=1),
    "target_update_interval": partial(check_int, minimum=1),
    "compile_step": check_bool,
    "batch_size": partial(check_int, minimum=1),
    "tau": check_fraction,
    "gamma": check_fraction,
}


def target_alpha(alpha: float | str, action_dim: int) -> float:
    """The target's inverse temperature: ``alpha``, or for ``"auto"`` ``AUTO_ALPHA * sqrt(action_dim)``."""
    return AUTO_ALPHA * math.sqrt(action_dim) if alpha == "auto" else float(alpha)


def q_scale_floor_in_use(q_scale_floor: str, n_critics: int) -> str:
    """What floors the Q scale: ``q_scale_floor``, or for "auto" "critic_disagreement" with two Q networks or more
    and "td_error" with one."""
    if q_scale_floor != "auto":
        return q_scale_floor
    return "critic_disagreement" if n_critics >= 2 else "td_error"


def missing_compiler(device: th.device | str = "cpu") -> str | None:
    """What ``torch.compile`` (its inductor backend) lacks on this machine to compile for ``device``, or None.

    On the CPU it builds C++ kernels ($CXX, g++, clang++ or c++); on a GPU, Triton kernels (the ``triton`` package).
    """
    if th.device(device).type == "cpu":
        compilers = [os.environ.get("CXX"), *map(shutil.which, ("g++", "clang++", "c++"))]
        return None if any(compilers) else "a C++ compiler ($CXX, g++, clang++ or c++)"
    return None if importlib.util.find_spec("triton") is not None else "the triton package"


def validate_settings(model: Any, n_critics: int, actor_states: int, row_width: int) -> None:
    """Check every setting of ``model`` (a SOM) as at construction, and those that relate several settings; raises
    ``ValueError`` naming the argument. ``actor_states`` is the actor update's batch, ``row_width`` the floats per
    critic row (action dimensions plus the critic's hidden units)."""
    for name in SETTING_CHECKS:
        setattr(model, name, getattr(model, name))  # the assignment checks it
    if model.q_scale_floor == "critic_disagreement" and n_critics < 2:
        raise ValueError(
            f'q_scale_floor="critic_disagreement" needs at least two Q networks, got n_critics={n_critics}: '
            'use q_scale_floor="td_error" (or "auto", which picks it with one Q network) or n_critics >= 2'
        )
    missing = missing_compiler(model.device) if model.compile_step else None
    if missing is not None:
        raise ValueError(
            f"compile_step=True needs {missing} on this machine for device {model.device.type!r} (torch.compile "
            "builds its kernels with it): install it, or use compile_step=False"
        )
    proposals = actor_states * model.n_score_samples
    if proposals > MAX_SCORE_PROPOSALS:
        gib = proposals * row_width * 4 / 2**30
        raise ValueError(
            f"n_score_samples={model.n_score_samples} with batch_size={model.batch_size} asks the critic for "
            f"{proposals:,} proposals per update, about {gib:,.3g} GiB of float32 proposals and critic activations; "
            f"the limit is {MAX_SCORE_PROPOSALS:,} (the actor's {actor_states} states times n_score_samples): use "
            f"n_score_samples <= {math.floor(MAX_SCORE_PROPOSALS / actor_states)} at this batch_size"
        )
