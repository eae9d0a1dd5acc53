"""Engine-level fixtures: engines with custom settings, spec building, output checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskSpec, command_env


@pytest.fixture
async def make_engine(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """make_engine(**overrides) -> a started Engine on the test's data dir, closed at the end."""
    engines: list[Engine] = []

    async def make(**overrides: Any) -> Engine:
        eng = Engine(settings.model_copy(update=overrides))
        await eng.start()
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        await eng.close()


def shell_spec(script: str, **kw: Any) -> TaskSpec:
    return TaskSpec(command=script, argv=["/bin/sh", "-c", script], env=command_env(None), **kw)


@pytest.fixture
def sh() -> Callable[..., TaskSpec]:
    """sh(script, **TaskSpec fields) -> a spec running the script through /bin/sh."""
    return shell_spec
