"""Shared fixtures: a real service on an ephemeral loopback port, clients, process checks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.engine import Engine, process
from cc_executor.server import ExecutorService

FAKE_CLAUDE = Path(__file__).parent / "fake_claude" / "claude"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Settings isolated from the user's env: temp data dir, ephemeral port, short grace."""
    return Settings(
        data_dir=data_dir,
        port=0,
        kill_grace_seconds=1.0,
        claude_bin=str(FAKE_CLAUDE),
        log_format="text",
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    eng = Engine(settings)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[ExecutorService]:
    svc = ExecutorService(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def client(service: ExecutorService) -> AsyncIterator[ExecutorClient]:
    async with ExecutorClient(service.url, service.token) as c:
        yield c


@pytest.fixture
def fake_claude_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own fake-claude conversation store, and no nesting marker."""
    state = tmp_path / "fake-claude-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_STATE_DIR", str(state))
    monkeypatch.delenv("CLAUDECODE", raising=False)
    return state


def live_members(pgid: int) -> dict[int, str]:
    """Members of a process group that still exist and are not zombies."""
    return {pid: st for pid, st in process.group_members(pgid).items() if st not in "ZX"}


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition of the outside world (process table, files) until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.01)
    return pred()


async def eventually(
    probe: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], timeout: float = 20.0
) -> Any:
    """Ask again (e.g. the service's status) until `check(await probe())` holds, and return
    that answer; fail with the last answer when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s; last value {value}")
        await asyncio.sleep(0.02)


@pytest.fixture
def assert_group_gone() -> Callable[[int], None]:
    def check(pgid: int) -> None:
        left = live_members(pgid)
        assert not left, f"processes left in group {pgid}: {left}"

    return check


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return process.group_members(os.getpgid(pid)).get(pid, "Z") not in "ZX"
