"""Argument checks that raise ``ValueError`` naming the argument.

Numbers of any numeric type are accepted (Python's, numpy's: anything registered as ``numbers.Integral`` or
``numbers.Real``), except ``bool``; each check returns the value as a plain Python ``int`` or ``float``, so
that settings are stored, saved and logged as Python numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None, why: str = "") -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``; ``why`` explains the maximum in the error."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}{why}")
    return int(value)


def check_positive(name: str, value: Any, maximum: float | None = None, why: str = "") -> float:
    """``value`` as a ``float`` in ``(0, maximum]``; ``why`` explains the maximum in the error."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}{why}")
    return float(value)


def check_auto_or_positive(name: str, value: Any, maximum: float | None = None, why: str = "") -> float | str:
    """``"auto"``, or ``value`` as a ``float`` in ``(0, maximum]`` (``check_positive``)."""
    if isinstance(value, str):
        if value == "auto":
            return "auto"
        raise ValueError(f"{name} must be 'auto' or a finite number > 0, got {value!r}")
    return check_positive(name, value, maximum, why)


def check_optional_schedule(name: str, value: Any) -> Any:
    """``None``, a callable (a schedule of the progress remaining) or a number > 0 as a ``float``."""
    if value is None or callable(value):
        return value
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be None, a finite number > 0 or a function of the progress remaining, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any, maximum: float = 1.0) -> float:
    """``value`` as a ``float`` in ``[0, maximum]`` (``maximum`` <= 1)."""
    if not _is_real(value) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be a number in [0, {maximum:g}], got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool`` (``True``/``False`` or numpy's ``bool_``; not 0 or 1)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_action_box(action_space: spaces.Box) -> None:
    """Refuse a Box whose bounds are not finite or that has ``low == high`` (or ``low > high``) in a dimension.

    Actions are produced in ``[-1, 1]^d`` and rescaled to ``[low, high]``, which needs finite bounds, a width
    ``high - low`` that is finite in the Box's dtype, and a non-empty interval in every dimension (SB3 divides by
    ``high - low``).
    """
    low, high = np.asarray(action_space.low, dtype=np.float64).ravel(), np.asarray(action_space.high, dtype=np.float64).ravel()
    with np.errstate(over="ignore"):
        widths = (np.asarray(action_space.high).ravel() - np.asarray(action_space.low).ravel()).astype(np.float64)
    for dim in range(low.size):
        if not (math.isfinite(low[dim]) and math.isfinite(high[dim])):
            raise ValueError(
                f"SOM needs finite action bounds; action dimension {dim} has low={low[dim]}, high={high[dim]}. "
                "Give the Box finite bounds (or rescale the actions with a wrapper)."
            )
        if math.isfinite(low[dim]) and math.isfinite(high[dim]) and not math.isfinite(widths[dim]):
            raise ValueError(
                f"SOM needs action bounds whose width high - low is finite in the Box's dtype ({action_space.dtype}); "
                f"action dimension {dim} has low={low[dim]}, high={high[dim]}, whose width overflows, so every "
                "rescaled action would be inf or NaN. Rescale the actions with a wrapper to a smaller box."
            )
        if not low[dim] < high[dim]:
            raise ValueError(
                f"SOM needs low < high in every action dimension; action dimension {dim} has low={low[dim]}, "
                f"high={high[dim]}. Remove a constant dimension from the action space (for instance with a wrapper)."
            )


# SAC's arguments that SOM does not take, with what a SAC user should use instead
SAC_ONLY_ARGUMENTS = {
    "ent_coef": "its inverse temperature is alpha (the target policy is exp(alpha * Q / q_scale); larger is greedier, "
    '"auto" is 10 * sqrt(action dimensions))',
    "target_entropy": "its target is the Boltzmann policy of the critic at inverse temperature alpha, not an entropy "
    "target: set alpha",
    "use_sde": "its policy is a MeanFlow network that explores by sampling its own noise, not a Gaussian: there is no gSDE",
    "sde_sample_freq": "its policy has no gSDE (use_sde)",
    "use_sde_at_warmup": "its policy has no gSDE (use_sde)",
}
SAC_ONLY_POLICY_ARGUMENTS = {
    "log_std_init": "the MeanFlow policy has no log standard deviation: its spread is learned from the critic's "
    "target (set alpha for a broader or narrower target)",
    "use_expln": "the MeanFlow policy has no log standard deviation",
    "clip_mean": "the MeanFlow policy has no Gaussian mean to clip: its actions are clipped to the box",
    "full_std": "the MeanFlow policy has no gSDE",
    "use_sde": "the MeanFlow policy has no gSDE",
}


def check_no_sac_only_arguments(kwargs: dict[str, Any], policy_kwargs: dict[str, Any] | None) -> None:
    """Refuse SAC's arguments that SOM does not take with a ``TypeError`` that says what to use instead."""
    for name, instead in SAC_ONLY_ARGUMENTS.items():
        if name in kwargs:
            raise TypeError(f"SOM has no argument {name!r} (a SAC argument): {instead}")
    for name, instead in SAC_ONLY_POLICY_ARGUMENTS.items():
        if name in (policy_kwargs or {}):
            raise TypeError(f"SOM's policy has no argument {name!r} (policy_kwargs of SAC): {instead}")
