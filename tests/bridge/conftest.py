"""The MCP bridge over real stdio: `python -m mcp_bridge` driven by the official MCP client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult

from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.support import FAKE_CLAUDE, ServiceProcess, eventually

ROOT = Path(__file__).resolve().parents[2]
CALL_TIMEOUT = 60.0


@pytest.fixture
def bridge_env(settings: Settings, fake_claude_state: Path) -> dict[str, str]:
    """What every bridge gets: this test's data dir, the fake claude, a short kill grace."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(settings.data_dir.parent),
        "CC_EXECUTOR_DATA_DIR": str(settings.data_dir),
        "CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE),
        "CC_EXECUTOR_KILL_GRACE_SECONDS": "1",
        "CC_EXECUTOR_BRIDGE_LOG_LEVEL": "INFO",
        "FAKE_CLAUDE_STATE_DIR": str(fake_claude_state),
    }


@contextlib.asynccontextmanager
async def open_bridge(env: dict[str, str], log: Path, mode: str = "auto") -> AsyncIterator[Client]:
    """A bridge subprocess on stdio, its stderr in `log` (printed when a test fails).

    `mode="legacy"` speaks the initialize-handshake protocol (what Claude Code uses today);
    "auto" lets the SDK negotiate the newest.
    """
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_bridge"], env=env, cwd=str(ROOT)
    )
    with open(log, "a") as errlog:  # noqa: ASYNC230 (once per bridge, before it starts)
        async with Client(stdio_client(params, errlog=errlog), cache=None, mode=mode) as client:
            yield client


@pytest.fixture
def bridge_log(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "bridge.log"
    yield log
    if log.exists():
        print(f"--- bridge stderr ({log}) ---\n{log.read_text()[-8000:]}")


@pytest.fixture
def service_env(service: ExecutorService, bridge_env: dict[str, str]) -> dict[str, str]:
    return {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": service.url,
        "CC_EXECUTOR_TOKEN": service.token,
    }


@pytest.fixture
async def service_process(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    """The service as deployed: `python -m cc_executor.server`, a process of its own."""
    svc = ServiceProcess(tmp_path / "service-data", tmp_path / "service.log")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop_async()


@pytest.fixture
def process_env(service_process: ServiceProcess, bridge_env: dict[str, str]) -> dict[str, str]:
    """What a bridge in front of `service_process` gets."""
    return {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": service_process.url,
        "CC_EXECUTOR_TOKEN": service_process.token,
    }


@contextlib.asynccontextmanager
async def bridge_in_task(
    env: dict[str, str], log: Path, mode: str = "auto"
) -> AsyncIterator[Client]:
    """`open_bridge` entered and left in one task of its own.

    The SDK client lives in anyio task groups, which must be exited by the task that
    entered them; pytest-asyncio runs a fixture's setup and teardown in different tasks.
    """
    ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def hold() -> None:
        try:
            async with open_bridge(env, log, mode) as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    holder = asyncio.ensure_future(hold())
    try:
        yield await ready
    finally:
        stop.set()
        await holder


@pytest.fixture
async def bridge(service_env: dict[str, str], bridge_log: Path) -> AsyncIterator[Client]:
    """A bridge in auto mode, in front of the real service of the `service` fixture."""
    async with bridge_in_task(service_env, bridge_log) as client:
        yield client


async def call(client: Client, tool: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    r = await asyncio.wait_for(client.call_tool(tool, args, **kw), CALL_TIMEOUT)
    assert not r.is_error, f"{tool} failed: {r.content}"
    assert r.structured_content is not None
    return r.structured_content


async def call_error(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; its error text."""
    r: CallToolResult = await asyncio.wait_for(client.call_tool(tool, args), CALL_TIMEOUT)
    assert r.is_error, f"{tool} unexpectedly succeeded: {r.structured_content}"
    text = r.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


poll = eventually  # ask the bridge again until its answer satisfies the check


def page_bytes(page: dict[str, Any]) -> bytes:
    data: str = page["data"]
    if page.get("encoding") == "base64":
        return base64.b64decode(data)
    return data.encode("utf-8")


async def read_all(
    client: Client, task_id: str, stream: str = "stdout", limit: int = 65536
) -> bytes:
    """Every byte of a stream, paged through get_execution_output."""
    out = b""
    offset = 0
    while True:
        page = await call(
            client,
            "get_execution_output",
            {"task_id": task_id, "offset": offset, "limit": limit, "stream": stream},
        )
        out += page_bytes(page)
        assert page["next_offset"] == offset + page["size"]
        offset = page["next_offset"]
        if page["size"] == 0 or offset >= page["total"]:
            return out


def final(status: dict[str, Any]) -> bool:
    return status.get("status") in {"completed", "failed", "cancelled", "timed_out", "lost"}


__all__ = [
    "CALL_TIMEOUT",
    "bridge_in_task",
    "call",
    "call_error",
    "final",
    "open_bridge",
    "page_bytes",
    "poll",
    "read_all",
]
