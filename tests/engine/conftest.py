"""Engine-level fixtures: engines with custom settings, spec building, output checks."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskSpec, command_env, process

SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)


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


def stop_pending(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            pend = [ln.split()[1] for ln in f if ln.startswith(("SigPnd:", "ShdPnd:"))]
    except OSError:
        return False
    return any(int(p, 16) & SIGSTOP_BIT for p in pend)


def really_stopped(pgid: int) -> bool:
    """Every live member is stopped (T), or blocked (D) with a SIGSTOP it cannot take yet:
    a parent in vfork() whose child stopped before its exec."""
    members = {p: st for p, st in process.group_members(pgid).items() if st not in "ZX"}
    return bool(members) and all(
        st in "Tt" or (st == "D" and stop_pending(p)) for p, st in members.items()
    )
