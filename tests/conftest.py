"""Fixtures the test files share."""

from __future__ import annotations

import copy
from typing import Any

import pytest

# a SOM that trains in a fraction of a second: one hidden layer of 16, batches of 16, K = 4, 2 distillation steps;
# learning starts after 30 steps
TINY_SOM = dict(learning_starts=30, batch_size=16, n_score_samples=4, distillation_steps=2, policy_kwargs=dict(net_arch=[16]))


@pytest.fixture
def tiny() -> dict[str, Any]:
    """SOM keyword arguments for a tiny, fast model (a fresh copy: SB3 writes into ``policy_kwargs``)."""
    return copy.deepcopy(TINY_SOM)


@pytest.fixture(scope="module")
def tiny_module() -> dict[str, Any]:
    """:func:`tiny` for module-scoped fixtures."""
    return copy.deepcopy(TINY_SOM)
