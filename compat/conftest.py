"""Runs SB3's own test-suite with SOM in SAC's place.

``stable_baselines3.SAC`` is SOM from here on, and only the cases that use it are collected: those
parametrised with it, and those whose name says "sac". With ``SB3_SUITE_LEARNING_STARTS=N`` in the environment it is
SOM with the default ``learning_starts=N`` (SAC's is 100), so that cases shorter than SOM's own 5,000 steps train too.
"""

import inspect
import os

import pytest
import stable_baselines3

from sb3_som import SOM

if "SB3_SUITE_LEARNING_STARTS" in os.environ:

    class SOMStartingAt(SOM):
        """SOM whose ``learning_starts`` defaults to ``$SB3_SUITE_LEARNING_STARTS``."""

        def __init__(self, *args, learning_starts: int = int(os.environ["SB3_SUITE_LEARNING_STARTS"]), **kwargs):
            super().__init__(*args, learning_starts=learning_starts, **kwargs)

    stable_baselines3.SAC = SOMStartingAt
else:
    stable_baselines3.SAC = SOM


def uses_som(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(value is stable_baselines3.SAC for value in callspec.params.values()):
        return True
    if callspec is None and "SAC" in inspect.getsource(item.function):
        return True
    return "sac" in item.name.lower()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = [item for item in items if uses_som(item)]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected
