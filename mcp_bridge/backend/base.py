"""The backend interface and what both implementations share: the bounded wait.

`Backend` is what the MCP tools call: execute, wait (bounded, with progress), status,
tasks, control, output, and `call` for the service's other methods (sessions).
Implementations turn their own failures into the project's error types: a JSON-RPC style
`ProtocolError`, or `ExecutorConnectionError` (`ServiceUnavailable` when nothing was sent,
so falling back is safe). Every task dict they return carries `backend: "websocket" |
"local"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cc_executor.client import ExecutorConnectionError
from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ExecuteParams, ProtocolError
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import TaskWatch

log = logging.getLogger(__name__)

TaskParams = ExecuteParams | ExecuteClaudeParams
ProgressFn = Callable[[TaskWatch], Awaitable[None]]
T = TypeVar("T")


class ServiceUnavailable(ExecutorConnectionError):
    """The service could not be reached; nothing was sent, so falling back is safe."""


@dataclass(slots=True)
class Waited:
    """The end of a bounded wait: the final record, or the task's state so far."""

    record: dict[str, Any]
    watch: TaskWatch | None
    backend: Backend
    final: bool


class Backend(ABC):
    """The interface the MCP tools use. Results are plain dicts shaped like the service's."""

    name: str

    @abstractmethod
    async def execute(self, params: TaskParams, *, watch: bool = True) -> dict[str, Any]:
        """Start a task; `{task_id, status, pid, backend}` at once."""

    @abstractmethod
    async def wait(
        self,
        task_id: str,
        timeout: float | None,
        on_progress: ProgressFn | None = None,
        *,
        full_record: bool = False,
    ) -> Waited:
        """Wait at most `timeout` s (None: no limit) for the task to end, with progress."""

    @abstractmethod
    async def status(self, task_id: str) -> dict[str, Any]: ...

    @abstractmethod
    async def tasks(self, limit: int = 100) -> dict[str, Any]: ...

    @abstractmethod
    async def control(self, task_id: str, action: str) -> dict[str, Any]: ...

    @abstractmethod
    async def output(
        self, task_id: str, stream: str = "stdout", offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]: ...

    async def call(
        self, method: str, params: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Any other service method by name (the `session.*` methods), with its result.

        `idempotent`: the call may be sent again if its connection drops (reads only).
        A backend that cannot serve `method` raises ProtocolError METHOD_NOT_FOUND.
        """
        raise ProtocolError(
            ErrorCode.METHOD_NOT_FOUND,
            f"{method} is not available through the {self.name} backend",
            {"method": method},
        )

    def call_ready(self) -> bool:
        """Whether `call` would go out now without connecting or starting anything (the
        status resource asks only then: reading it never opens a connection)."""
        return False

    @abstractmethod
    async def info(self) -> dict[str, Any]: ...

    @abstractmethod
    async def close(self) -> None: ...


class Followed(Protocol):
    """Anything a wait can follow: a task's watch, or a task list run."""

    version: int  # bumps whenever there is something new to report
    ended: asyncio.Event  # set once it is finished

    @property
    def finished(self) -> bool: ...


async def follow(
    target: Followed,
    deadline: float | None,
    on_progress: Callable[[], Awaitable[None]] | None,
    s: BridgeSettings,
) -> None:
    """Sleep until `target` is finished or the deadline (loop time) passes, reporting progress.

    Only the end wakes the wait: output does not (a chatty task costs no wake-ups). With
    progress, it also looks every `progress_interval` and reports when something changed,
    or every `heartbeat_interval` when nothing did; a task ending sooner reports nothing.
    """
    loop = asyncio.get_running_loop()
    reported = -1
    reported_at = loop.time()
    while not target.finished:
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        wake = deadline
        if on_progress is not None:
            gap = s.progress_interval if target.version != reported else s.heartbeat_interval
            if now >= reported_at + gap:
                reported, reported_at = target.version, now
                try:
                    await on_progress()
                except Exception:  # a client that went away must not fail the wait
                    log.debug("progress notification failed", exc_info=True)
                continue
            tick = min(now + s.progress_interval, reported_at + gap)
            wake = tick if wake is None else min(wake, tick)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(wake):
                await target.ended.wait()


class _Watching(Backend):
    """Shared by both implementations: the watches of tasks being waited on, the wait loop."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self._watches: dict[str, TaskWatch] = {}
        self._keep = 2 * settings.max_output_chars

    def _new_watch(self, task_id: str | None) -> TaskWatch:
        return TaskWatch(task_id, self._keep)

    @abstractmethod
    async def _follow(self, task_id: str, watch: TaskWatch) -> None:
        """Attach `watch` to a task (again), replaying from what it already holds."""

    def _unwatch(self, task_id: str) -> None:
        self._watches.pop(task_id, None)

    def _arm(self, watch: TaskWatch) -> None:
        """Start noticing a lost channel for this watch (remote only)."""

    async def wait(
        self,
        task_id: str,
        timeout: float | None,
        on_progress: ProgressFn | None = None,
        *,
        full_record: bool = False,
    ) -> Waited:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        watch = self._watches.get(task_id)
        try:
            if watch is None:
                watch = self._new_watch(task_id)
                self._watches[task_id] = watch
                await self._follow(task_id, watch)
            self._arm(watch)
            report = None
            if on_progress is not None:
                w, cb = watch, on_progress

                def report() -> Awaitable[None]:
                    return cb(w)

            while True:
                await follow(watch, deadline, report, self.settings)
                if watch.lost is None or watch.completed is not None:
                    break
                log.info("lost the channel of task %s; following it again", task_id)
                watch.lost = None
                watch.ended.clear()
                await self._follow(task_id, watch)
                self._arm(watch)
        finally:
            self._unwatch(task_id)
        if watch.completed is not None:
            record = dict(watch.completed)
            if full_record:
                record.update(await self.status(task_id))
            record["backend"] = self.name
            return Waited(record, watch, self, True)
        record = {
            "task_id": task_id,
            "status": watch.status,
            "pid": watch.pid,
            "stdout_bytes": watch.stdout.size,
            "stderr_bytes": watch.stderr.size,
            "backend": self.name,
        }
        return Waited(record, watch, self, False)
