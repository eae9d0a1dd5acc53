"""Shared fixtures: a real service on an ephemeral loopback port, clients, process checks.

Helpers that are not fixtures (polling, /proc, free ports, the service as a separate
process) live in tests/support: `from tests.support import ...`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.engine import Engine
from cc_executor.server import ExecutorService
from tests.support import FAKE_CLAUDE, live_members


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
async def text_client(service: ExecutorService) -> AsyncIterator[ExecutorClient]:
    """A client that takes output as text frames (UTF-8, else base64), as the dashboard."""
    async with ExecutorClient(service.url, service.token, binary_output=False) as c:
        yield c


@pytest.fixture
def fake_claude_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own fake-claude conversation store, and no nesting marker."""
    state = tmp_path / "fake-claude-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_STATE_DIR", str(state))
    monkeypatch.delenv("CLAUDECODE", raising=False)
    return state


@pytest.fixture
def assert_group_gone() -> Callable[[int], None]:
    def check(pgid: int) -> None:
        left = live_members(pgid)
        assert not left, f"processes left in group {pgid}: {left}"

    return check
