"""A copy of a module's weights and its optimizers' states, to restore in place (pure torch, no SB3).

``train()`` reads its losses back once per call; a snapshot taken at the start of the call lets it undo every
gradient step of the call when one of them turns out non-finite, so no non-finite update ever reaches the weights
that are saved or acted with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch as th
from torch import nn

# rewards from this magnitude on are named as the cause of a non-finite loss: Q ~ r / (1 - gamma) and its squared
# TD error then approach float32's largest value (3.4e38)
LARGE_REWARD = 1e15


class TrainingSnapshot:
    """The parameters and buffers of ``module`` and the per-parameter states of ``optimizers``, copied now."""

    def __init__(self, module: nn.Module, optimizers: Sequence[th.optim.Optimizer]):
        self.tensors = [*module.parameters(), *module.buffers()]
        with th.no_grad():
            self.copies = [tensor.detach().clone() for tensor in self.tensors]
        self.optimizers = list(optimizers)
        self.optimizer_states = [
            {
                parameter: {key: value.clone() if isinstance(value, th.Tensor) else value for key, value in state.items()}
                for parameter, state in optimizer.state.items()
            }
            for optimizer in self.optimizers
        ]

    def restore(self) -> None:
        """Put every copied tensor back in place (the same ``Parameter`` objects) and each optimizer's state as it was
        (a parameter without state then, such as Adam's before its first step, is left without state)."""
        with th.no_grad():
            for tensor, copy in zip(self.tensors, self.copies, strict=True):
                tensor.copy_(copy)
        for optimizer, saved in zip(self.optimizers, self.optimizer_states, strict=True):
            states: dict[Any, Any] = optimizer.state
            states.clear()
            states.update(saved)


def non_finite_loss_error(losses: Sequence[str], gradient_steps: int, reward_peak: float) -> FloatingPointError:
    """The error for non-finite ``losses`` (their names) in a ``train()`` call whose updates were undone, naming the
    likely cause from ``reward_peak``, the largest |reward| the call sampled."""
    if not math.isfinite(reward_peak):
        cause = "The sampled rewards hold NaN or inf: check the environment's rewards."
    elif reward_peak >= LARGE_REWARD:
        cause = (
            f"The sampled rewards reach |r| = {reward_peak:.3g}: TD errors of that scale overflow float32 when squared. "
            "Scale the rewards down (a reward wrapper, or VecNormalize(norm_reward=True))."
        )
    else:
        cause = "Check the observations for NaN/inf, or lower the learning rate."
    return FloatingPointError(
        f"SOM: {' and '.join(losses)} not finite in this train() call of {gradient_steps} gradient step(s); "
        "training stopped, and the weights, target critic and optimizer states are those from before the call. " + cause
    )
