"""A task as the engine holds it while it is queued, running or finishing, and its spec."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cc_executor.engine.events import Event, Subscriber
from cc_executor.engine.output import OutputLog
from cc_executor.engine.records import TaskKind, TaskRecord
from cc_executor.protocol import Stream, TaskStatus


class TaskObserver(Protocol):
    """Plugs into one task's stream (the Claude stream-json parser is one)."""

    def on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None: ...
    def on_finish(self, task: RunningTask) -> None: ...


Hook = Callable[[TaskRecord], Awaitable[None]]


class TaskGate(Protocol):
    """Issue 16: what may keep a task queued before it is admitted (a rate-limit hold)."""

    def holds(self) -> dict[str, Any] | None: ...  # why it waits now (shown on the record)
    async def wait(self) -> None: ...


@dataclass
class TaskSpec:
    """What to run. `command` is what the caller asked for; `argv` is what is exec'd."""

    command: str | list[str]
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    name: str | None = None
    kind: TaskKind = "command"
    observer: TaskObserver | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stdin_pipe: bool = False  # issue 16: a hot session's claude reads its turns on stdin
    gate: TaskGate | None = None  # issue 16: held queued until the gate opens


# A stream that has printed this much is a bulk stream: when the pipe then gives it small
# reads, reading waits a moment so that the next read takes more (each read is a wake-up
# of the loop, 80-90 us across vCPUs, and a frame to every subscriber). The pipe holds
# 1 MiB, so a child writing even at 500 MB/s does not fill it in that moment (0.5 ms,
# which the selector rounds up to its 1 ms resolution).
BULK_AFTER = 4 * 1024 * 1024
SMALL_READ = 256 * 1024
GATHER_S = 0.0005


class PipeReader(asyncio.Protocol):
    """Hands each chunk a pipe gives straight to the engine: no per-line work, no copy."""

    __slots__ = ("engine", "gathering", "seen", "stream", "task", "transport")

    def __init__(self, engine: Any, task: RunningTask, stream: Stream) -> None:
        self.engine = engine
        self.task = task
        self.stream = stream
        self.transport: asyncio.ReadTransport | None = None
        self.seen = 0
        self.gathering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.engine._on_output(self.task, self.stream, data)
        self.seen += len(data)
        if self.seen >= BULK_AFTER and len(data) < SMALL_READ and not self.gathering:
            assert self.transport is not None
            self.gathering = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(GATHER_S, self._read_again)

    def _read_again(self) -> None:
        self.gathering = False
        if not self.task.reading_paused and self.transport is not None:
            self.transport.resume_reading()  # a no-op on a closed transport

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine._on_eof(self.task, self.stream)


class RunningTask:
    """Engine-private state of a task that is queued, running or finishing."""

    def __init__(self, record: TaskRecord, spec: TaskSpec, log_dir: Path) -> None:
        self.record = record
        self.spec = spec
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.streams: dict[Stream, OutputLog] = {}
        self.transports: list[asyncio.BaseTransport] = []
        self.open_pipes = 0
        self.exited = False
        self.subscribers: set[Subscriber] = set()
        self.done: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        self.final_status: TaskStatus | None = None  # set by cancel / timeout
        self.stop_reason: str | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self.last_output = time.monotonic()
        self.control_lock = asyncio.Lock()
        self.finishing = False
        self.group_signalled = False  # we sent the group TERM/KILL: wait for it to be gone
        self.start_failed = False  # the spawn (or what follows it) failed: status failed
        self.log_error_sent = False
        self.reading_paused = False
        # Where the task's own events go for subscribers on other nodes (the bus's relay).
        self.relay: Callable[[str, dict[str, Any]], None] | None = None

    @property
    def task_id(self) -> str:
        return self.record.task_id

    def current_record(self) -> TaskRecord:
        """The record with the byte counts so far (they are final only once it ends)."""
        for stream, out in self.streams.items():
            setattr(self.record, f"{stream.value}_bytes", out.offset)
        return self.record

    def emit_everywhere(self, method: str, params: dict[str, Any]) -> None:
        """`emit`, and to the task's subscribers on other nodes (cluster mode)."""
        self.emit(method, params)
        if self.relay is not None:
            self.relay(method, params)

    def emit(self, method: str, params: dict[str, Any], nbytes: int = 0) -> None:
        """Send a notification to every subscriber of this task."""
        if not self.subscribers:
            return
        ev = Event(method, params, nbytes)
        self.push(ev)

    def push(self, ev: Event) -> None:
        for sub in tuple(self.subscribers):
            if sub.closed:
                self.subscribers.discard(sub)
            else:
                sub.push(ev)
