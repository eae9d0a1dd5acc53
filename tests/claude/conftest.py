"""Helpers for Claude tasks run through the real service (fake `claude` as claude_bin)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient, TaskHandle
from cc_executor.config import Settings
from cc_executor.protocol import Notification
from cc_executor.server import ExecutorService

RUN_TIMEOUT = 30.0


@dataclass
class ClaudeRun:
    """One finished Claude task: its execute reply, every notification, its record."""

    handle: TaskHandle
    events: list[dict[str, Any]]
    record: dict[str, Any]

    @property
    def task_id(self) -> str:
        return self.handle.task_id

    @property
    def done(self) -> dict[str, Any]:
        """The process.completed params."""
        return next(e["params"] for e in self.events if e["method"] == Notification.COMPLETED)

    def claude_events(self, etype: str | None = None) -> list[dict[str, Any]]:
        """The compact `event` of each claude.event, optionally of one type only."""
        out = [
            e["params"]["event"] for e in self.events if e["method"] == Notification.CLAUDE_EVENT
        ]
        return [e for e in out if etype is None or e["type"] == etype]

    def answer_json(self) -> Any:
        """The fake's FAKE_ECHO_ARGV / FAKE_ECHO_OPTIONS answer, decoded."""
        return json.loads(self.record["result"])


async def collect(client: ExecutorClient, handle: TaskHandle) -> ClaudeRun:
    """Read a started task's notifications to process.completed, then fetch its record."""

    async def drain() -> list[dict[str, Any]]:
        return [ev async for ev in handle.events()]

    events = await asyncio.wait_for(drain(), RUN_TIMEOUT)
    record = await client.status(handle.task_id)
    return ClaudeRun(handle, events, record)


async def run_claude(client: ExecutorClient, prompt: str, **params: Any) -> ClaudeRun:
    """execute_claude and wait for the end."""
    handle = await client.execute_claude(prompt, **params)
    return await collect(client, handle)


async def next_claude_event(
    events: AsyncIterator[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Advance a handle's event iterator to the first claude.event matching pred."""

    async def find() -> dict[str, Any]:
        async for ev in events:
            if ev["method"] == Notification.CLAUDE_EVENT and pred(ev["params"]["event"]):
                return dict(ev["params"]["event"])
        raise AssertionError("the task ended before the expected claude.event")

    return await asyncio.wait_for(find(), RUN_TIMEOUT)


def write_script(path: Path, body: str) -> Path:
    """An executable `#!/bin/sh` script (a claude_bin wrapper or stand-in)."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


StartService = Callable[..., Awaitable[tuple[ExecutorService, ExecutorClient]]]


@pytest.fixture
async def start_service(settings: Settings) -> AsyncIterator[StartService]:
    """Start a real service with some settings changed (hooks, claude_bin ...) and a client."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> tuple[ExecutorService, ExecutorClient]:
            svc = ExecutorService(settings.model_copy(update=overrides))
            await svc.start()
            stack.push_async_callback(svc.stop)
            cli = ExecutorClient(svc.url, svc.token)
            await cli.connect()
            stack.push_async_callback(cli.close)
            return svc, cli

        yield start
