"""The engine: the one owner of every child process and its lifecycle.

spawn -> stream -> signal -> reap -> persist. The service, the bridge's local fallback,
sessions and the Python API all drive an Engine; nothing else spawns task processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cc_executor import __version__
from cc_executor.config import Settings
from cc_executor.engine import process
from cc_executor.engine.events import Event, Subscriber
from cc_executor.engine.journal import TASK_ENV, SpawnJournal, kill_tagged
from cc_executor.engine.output import OutputStream, _incomplete_utf8_tail, encode_data
from cc_executor.engine.records import TaskKind, TaskRecord, new_task_id
from cc_executor.engine.store import SqliteTaskStore, TaskStore
from cc_executor.protocol import (
    Action,
    ErrorCode,
    Notification,
    ProtocolError,
    Stream,
    TaskStatus,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_RECENT_LIMIT = 5000
_EOF_GRACE_S = 2.0  # after the group is gone, how long to wait for pipes held elsewhere


class TaskObserver(Protocol):
    """Plugs into one task's stream (the Claude stream-json parser is one)."""

    def on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None: ...
    def on_finish(self, task: RunningTask) -> None: ...


Hook = Callable[[TaskRecord], Awaitable[None]]


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


class _PipeReader(asyncio.Protocol):
    __slots__ = ("engine", "stream", "task")

    def __init__(self, engine: Engine, task: RunningTask, stream: Stream) -> None:
        self.engine = engine
        self.task = task
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        self.engine._on_output(self.task, self.stream, data)

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
        self.streams: dict[Stream, OutputStream] = {}
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
        self.pidfd: int | None = None

    @property
    def task_id(self) -> str:
        return self.record.task_id

    def current_record(self) -> TaskRecord:
        """The record with the byte counts so far (they are final only once it ends)."""
        for stream, out in self.streams.items():
            setattr(self.record, f"{stream.value}_bytes", out.offset)
        return self.record

    def emit(self, method: str, params: dict[str, Any], nbytes: int = 0) -> None:
        """Send a notification to every subscriber of this task."""
        if not self.subscribers:
            return
        ev = Event(method, params, nbytes)
        for sub in tuple(self.subscribers):
            if sub.closed:
                self.subscribers.discard(sub)
            else:
                sub.push(ev)


class Engine:
    """Owns tasks: queue, spawn, stream output, pause/resume/cancel, time limits, records."""

    def __init__(self, settings: Settings, store: TaskStore | None = None) -> None:
        self.settings = settings
        self.store: TaskStore = store or SqliteTaskStore(settings.db_path)
        self.log_dir = settings.log_dir
        self._live: dict[str, RunningTask] = {}
        self._recent: OrderedDict[str, TaskRecord] = OrderedDict()
        self._queue: deque[RunningTask] = deque()
        self._running = 0
        self._journal = SpawnJournal(settings.data_dir / "spawned.jsonl")
        from cc_executor.hooks import HookRunner

        self.hooks = HookRunner(settings, self._journal)
        self.pre_execute: list[Hook] = [self.hooks.pre]
        self.post_execute: list[Hook] = [self.hooks.post]
        self.listeners: set[Subscriber] = set()  # see every task's control events
        self.started_at = time.time()
        self.counters: dict[str, int] = {
            "tasks_started": 0,
            "dropped_bytes": 0,
            "dropped_events": 0,
            "spawn_failures": 0,
            "lost_on_start": 0,
        }
        self._closing = False
        self._opened = False
        self._lock_fd: int | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine without awaiting it, holding a reference until it ends."""
        t = asyncio.get_running_loop().create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _to_the_end(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await coro, which runs to its end even if this caller is cancelled.

        A request's handler is cancelled when its client goes away; a spawn or a signal
        already sent must still be followed by its bookkeeping (pipes, timers, status).
        """
        t = asyncio.get_running_loop().create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        t.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody may wait
        return await asyncio.shield(t)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store and reconcile it with reality (mark `lost`, reap old groups).

        An engine owns its data dir exclusively (a lock file): recovery marks every task
        it finds running as lost, which is only true when no other engine runs there.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_data_dir(self.settings.data_dir)
        await self.store.open()
        self._opened = True
        await self._recover()
        self._journal.open()

    async def _recover(self) -> None:
        stale = await self.store.list(
            limit=1_000_000,
            statuses=[TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.QUEUED],
        )
        # Groups spawned just before a crash may be missing from the store, or still
        # `queued` there: the spawn journal knows them (see engine/journal.py).
        by_id = {r.task_id: r for r in stale}
        journal = self._journal.read()
        cut_short = [r.task_id for r in journal.values() if r.pid is None]
        if cut_short and kill_tagged(cut_short):
            log.warning("killed the groups of spawns a crash interrupted: %s", cut_short)
        for spawned in journal.values():
            known = by_id.get(spawned.task_id)
            if known is not None and known.status != TaskStatus.QUEUED:
                continue
            if known is None:
                stored = await self.store.get(spawned.task_id)
                if stored is not None and stored.status.is_final:
                    continue
            spawned.status = TaskStatus.RUNNING  # spawned, or being spawned, at the crash
            by_id[spawned.task_id] = spawned
        await self.hooks.recover(by_id)  # hooks the crash left running (hooks.py)
        stale = list(by_id.values())
        now = time.time()
        for rec in stale:
            if rec.status == TaskStatus.QUEUED:
                rec.status = TaskStatus.CANCELLED
                rec.error = "the service stopped before this queued task started"
            else:
                killed = False
                if rec.pgid is not None and rec.pid is not None:
                    killed = process.reap_stale_group(rec.pgid, rec.pid, rec.start_ticks)
                    if killed:  # SIGKILL is not death: serve only once the group is gone
                        await process.wait_group_gone(rec.pgid, timeout=5.0)
                rec.status = TaskStatus.LOST
                rec.error = "the service stopped while this task was running" + (
                    "; its leftover processes were killed" if killed else ""
                )
                for stream in Stream:
                    path = self.log_path(rec.task_id, stream)
                    with contextlib.suppress(OSError):
                        size = path.stat().st_size
                        setattr(rec, f"{stream.value}_bytes", size)
                self.counters["lost_on_start"] += 1
            rec.ended_at = now
            self.store.save(rec)
        if stale:
            await self.store.flush()
            log.info("marked %d tasks from a previous run as lost/cancelled", len(stale))

    async def close(self) -> None:
        """Cancel every live task, wait for their groups to end, close the store."""
        if self._closing:
            return
        self._closing = True
        live = list(self._live.values())
        for task in live:
            self._terminate(task, TaskStatus.CANCELLED, "service shutting down")
        if live:
            await asyncio.wait([t.done for t in live], timeout=self.settings.kill_grace_seconds + 3)
        for task in live:
            if task.record.pgid is not None:
                process.kill_group_now(task.record.pgid)
        if self._opened:
            await self.store.flush()
            await self.store.close()
            self._journal.close(clean=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ queries

    def log_path(self, task_id: str, stream: Stream) -> Path:
        return self.log_dir / f"{task_id}.{stream.value}"

    def live_task(self, task_id: str) -> RunningTask | None:
        return self._live.get(task_id)

    async def get(self, task_id: str) -> TaskRecord:
        task = self._live.get(task_id)
        if task is not None:
            return task.current_record()
        rec = self._recent.get(task_id)
        if rec is None:
            rec = await self.store.get(task_id)
        if rec is None:
            raise ProtocolError(ErrorCode.TASK_NOT_FOUND, f"task {task_id!r} not found")
        return rec

    async def list(self, limit: int = 1000) -> list[TaskRecord]:
        by_id: dict[str, TaskRecord] = {r.task_id: r for r in await self.store.list(limit)}
        for rid, rec in self._recent.items():
            by_id[rid] = rec
        for rid, task in self._live.items():
            by_id[rid] = task.current_record()
        return sorted(by_id.values(), key=lambda r: r.created_at, reverse=True)[:limit]

    def stats(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "running": sum(1 for t in self._live.values() if t.record.status == TaskStatus.RUNNING),
            "paused": sum(1 for t in self._live.values() if t.record.status == TaskStatus.PAUSED),
            "queued": len(self._queue),
            "max_concurrent_tasks": self.settings.max_concurrent_tasks,
            **self.counters,
        }

    async def wait(self, task_id: str, timeout: float | None = None) -> TaskRecord:
        """Wait until the task is final (or the timeout passes) and return its record."""
        task = self._live.get(task_id)
        if task is None:
            return await self.get(task_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task.done), timeout)
        return task.record

    # ------------------------------------------------------------------ execute

    async def execute(self, spec: TaskSpec, subscriber: Subscriber | None = None) -> TaskRecord:
        """Create a task and start it (or queue it). Returns its record at once."""
        if self._closing:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the service is shutting down")
        s = self.settings
        timeout = spec.timeout if spec.timeout is not None else s.default_timeout
        for label, value in (("timeout", timeout), ("idle_timeout", spec.idle_timeout)):
            if value is not None and s.max_timeout is not None and value > s.max_timeout:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS,
                    f"{label} {value} exceeds max_timeout {s.max_timeout}",
                    {"max_timeout": s.max_timeout},
                )
        self._check_capacity()
        record = TaskRecord(
            task_id=new_task_id(),
            command=spec.command,
            argv=spec.argv,
            kind=spec.kind,
            name=spec.name,
            cwd=spec.cwd,
            timeout=timeout,
            idle_timeout=spec.idle_timeout,
            extra=dict(spec.extra),
        )
        for hook in self.pre_execute:
            await hook(record)  # raises ProtocolError(HOOK_REJECTED) to refuse
        self._check_capacity()  # again: others may have come in while the hooks ran
        task = RunningTask(record, spec, self.log_dir)
        if subscriber is not None:
            if subscriber.hold_new_tasks:
                subscriber.hold(record.task_id)  # released once the caller has the reply
            task.subscribers.add(subscriber)
        self._live[record.task_id] = task
        if self._running < s.max_concurrent_tasks and not self._queue:
            self._running += 1
            await self._to_the_end(self._start_guarded(task))
        else:
            self._queue.append(task)
            self.store.save(record)
        return record

    def _check_capacity(self) -> None:
        s = self.settings
        if self._running >= s.max_concurrent_tasks and len(self._queue) >= s.max_queued_tasks:
            raise ProtocolError(
                ErrorCode.CAPACITY_EXCEEDED,
                f"{self._running} tasks running and {len(self._queue)} queued: at capacity",
                {"max_concurrent_tasks": s.max_concurrent_tasks, "max_queued": s.max_queued_tasks},
            )

    async def _start(self, task: RunningTask) -> None:
        rec = task.record
        loop = asyncio.get_running_loop()
        s = self.settings
        for stream in Stream:
            task.streams[stream] = OutputStream(
                self.log_path(rec.task_id, stream), s.ring_buffer_bytes, s.ring_buffer_lines
            )
        self._journal.append(rec)  # before the spawn too: see engine/journal.py
        try:
            proc = process.spawn(rec.argv, rec.cwd, {**task.spec.env, TASK_ENV: rec.task_id})
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.counters["spawn_failures"] += 1
            rec.error = f"spawn failed: {exc}"
            rec.extra.setdefault("spawn_error", f"{type(exc).__name__}: {exc}")
            task.exited = True
            rec.status = TaskStatus.FAILED
            self._in_background(self._complete(task))
            return
        task.proc = proc
        rec.pid = rec.pgid = proc.pid
        rec.started_at = time.time()
        rec.status = TaskStatus.RUNNING
        rec.start_ticks = process.start_ticks(proc.pid) if process.HAVE_PROC else None
        self._journal.append(rec)  # on disk now: a crash from here on cannot orphan it
        self.counters["tasks_started"] += 1
        self.store.save(rec)
        started = {
            "task_id": rec.task_id,
            "pid": rec.pid,
            "status": str(rec.status),
            "command": rec.command,
            "kind": rec.kind,
            "name": rec.name,
        }
        task.emit(Notification.STARTED, started)
        self._notify_listeners(Notification.STARTED, started)
        self._watch_exit(task)
        assert proc.stdout is not None and proc.stderr is not None
        for stream, pipe in ((Stream.STDOUT, proc.stdout), (Stream.STDERR, proc.stderr)):
            task.open_pipes += 1
            transport, _ = await loop.connect_read_pipe(
                functools.partial(_PipeReader, self, task, stream), pipe
            )
            task.transports.append(transport)
        if rec.timeout is not None:
            task.timers.append(loop.call_later(rec.timeout, self._on_timeout, task, "timeout"))
        if rec.idle_timeout is not None:
            task.timers.append(loop.call_later(rec.idle_timeout, self._check_idle, task))

    def _watch_exit(self, task: RunningTask) -> None:
        """Learn of the child's exit without a thread: pidfd on Linux, else a waiter thread."""
        loop = asyncio.get_running_loop()
        assert task.proc is not None
        proc = task.proc
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            task.pidfd = pidfd

            def on_readable() -> None:
                if proc.poll() is None:
                    return  # spurious wake-up
                loop.remove_reader(pidfd)
                os.close(pidfd)
                task.pidfd = None
                self._on_exit(task)

            loop.add_reader(pidfd, on_readable)
            return

        def waiter() -> None:
            proc.wait()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_exit, task)

        threading.Thread(target=waiter, name=f"wait-{proc.pid}", daemon=True).start()

    # ------------------------------------------------------------------ output

    def _on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None:
        out = task.streams[stream]
        had_error = out.log_error is not None
        chunk = out.write(data)
        task.last_output = time.monotonic()
        if out.log_error is not None and not had_error:
            task.emit(
                Notification.ERROR,
                {"task_id": task.task_id, "stream": stream.value, "error": out.log_error},
            )
        if task.spec.observer is not None:
            try:
                task.spec.observer.on_output(task, stream, data)
            except Exception:
                # A parser bug must not close the pipe: the bytes are logged either way.
                log.exception("observer failed on output of task %s", task.task_id)
        if chunk is not None and task.subscribers:
            self._emit_chunk(task, stream, chunk[0], chunk[1])

    @staticmethod
    def _emit_chunk(task: RunningTask, stream: Stream, offset: int, data: bytes) -> None:
        text, encoding = encode_data(data)
        params: dict[str, Any] = {
            "task_id": task.task_id,
            "stream": stream.value,
            "offset": offset,
            "data": text,
        }
        if encoding:
            params["encoding"] = encoding
        task.emit(Notification.OUTPUT, params, len(data))

    def _on_eof(self, task: RunningTask, stream: Stream) -> None:
        out = task.streams.get(stream)
        if out is not None:
            rest = out.flush_pending()
            if rest is not None and task.subscribers:
                self._emit_chunk(task, stream, rest[0], rest[1])
        task.open_pipes -= 1
        self._maybe_finish(task)

    # ------------------------------------------------------------------ exit

    def _on_exit(self, task: RunningTask) -> None:
        rec = task.record
        assert task.proc is not None
        code = task.proc.returncode
        task.exited = True
        if code is not None and code < 0:
            rec.signal = -code
            rec.exit_code = None
        else:
            rec.exit_code = code
        # No process outlives its task: what the leader left behind in its group goes now.
        if rec.pgid is not None and process.group_exists(rec.pgid):
            process.signal_group(rec.pgid, signal.SIGCONT)
            process.kill_group_now(rec.pgid)
            task.group_signalled = True
        if task.open_pipes > 0:
            # Normally EOF follows at once; a process that escaped the group may hold a pipe.
            loop = asyncio.get_running_loop()
            task.timers.append(loop.call_later(_EOF_GRACE_S, self._close_pipes, task))
        self._maybe_finish(task)

    def _close_pipes(self, task: RunningTask) -> None:
        for tr in task.transports:
            tr.close()

    def _maybe_finish(self, task: RunningTask) -> None:
        if task.exited and task.open_pipes <= 0 and not task.finishing:
            task.finishing = True
            self._in_background(self._complete(task))

    async def _complete(self, task: RunningTask) -> None:
        rec = task.record
        task.finishing = True
        for timer in task.timers:
            timer.cancel()
        if task.group_signalled and rec.pgid is not None:
            # A final status promises that nothing of the group still runs.
            if not await process.wait_group_gone(rec.pgid):
                process.kill_group_now(rec.pgid)
                await process.wait_group_gone(rec.pgid)
        for stream, out in task.streams.items():
            setattr(rec, f"{stream.value}_bytes", out.offset)
            if out.log_error:
                rec.extra.setdefault("log_errors", {})[stream.value] = out.log_error
            out.close()
        if task.final_status is not None:
            rec.status = task.final_status
            if task.stop_reason and not rec.error:
                rec.error = task.stop_reason
        elif rec.status != TaskStatus.FAILED:
            rec.status = TaskStatus.COMPLETED if rec.exit_code == 0 else TaskStatus.FAILED
        if task.spec.observer is not None:
            try:
                task.spec.observer.on_finish(task)
            except Exception:
                log.exception("observer failed for task %s", rec.task_id)
        rec.ended_at = time.time()
        for hook in self.post_execute:
            try:
                await hook(rec)
            except Exception:
                log.exception("post_execute hook failed for task %s", rec.task_id)
        self.store.save(rec)
        params = rec.completed_params()
        task.emit(Notification.COMPLETED, params)
        self._notify_listeners(Notification.COMPLETED, params)
        self._live.pop(rec.task_id, None)
        self._journal.maybe_compact(t.record for t in self._live.values())
        self._recent[rec.task_id] = rec
        while len(self._recent) > _RECENT_LIMIT:
            self._recent.popitem(last=False)
        if not task.done.done():
            task.done.set_result(rec)
        self._running -= 1
        log.info(
            "task finished",
            extra={"task_id": rec.task_id, "status": str(rec.status), "exit_code": rec.exit_code},
        )
        self._start_queued()

    def _start_queued(self) -> None:
        while self._queue and self._running < self.settings.max_concurrent_tasks:
            task = self._queue.popleft()
            self._running += 1
            self._in_background(self._start_guarded(task))

    async def _start_guarded(self, task: RunningTask) -> None:
        try:
            await self._start(task)
        except Exception as exc:
            log.exception("starting task %s failed", task.task_id)
            task.record.status = TaskStatus.FAILED
            task.record.error = f"start failed: {exc}"
            task.exited = True
            if task.record.pgid is not None:
                process.kill_group_now(task.record.pgid)
            await self._complete(task)

    # ------------------------------------------------------------------ stopping

    def _terminate(self, task: RunningTask, status: TaskStatus, reason: str) -> None:
        """SIGTERM the group (SIGCONT too if stopped), SIGKILL after the grace period."""
        rec = task.record
        if task.exited and rec.status != TaskStatus.QUEUED:
            return  # it ended on its own; its own exit status stands
        if task.final_status is None:
            task.final_status = status
            task.stop_reason = reason
        if rec.status == TaskStatus.QUEUED:
            with contextlib.suppress(ValueError):
                self._queue.remove(task)
            self._running += 1  # _complete releases a slot
            task.exited = True
            self._in_background(self._complete(task))
            return
        if rec.pgid is None:
            return
        task.group_signalled = True
        process.signal_group(rec.pgid, signal.SIGTERM)
        if rec.status == TaskStatus.PAUSED:
            process.signal_group(rec.pgid, signal.SIGCONT)
        pgid = rec.pgid
        loop = asyncio.get_running_loop()
        task.timers.append(
            loop.call_later(self.settings.kill_grace_seconds, process.kill_group_now, pgid)
        )

    def _on_timeout(self, task: RunningTask, kind: str) -> None:
        if task.exited or task.final_status is not None:
            return
        limit = task.record.timeout if kind == "timeout" else task.record.idle_timeout
        reason = (
            f"timed out after {limit}s"
            if kind == "timeout"
            else f"no output for {limit}s (idle timeout)"
        )
        task.record.extra["timeout_kind"] = kind
        self._terminate(task, TaskStatus.TIMED_OUT, reason)

    def _check_idle(self, task: RunningTask) -> None:
        idle = task.record.idle_timeout
        if idle is None or task.exited or task.final_status is not None:
            return
        loop = asyncio.get_running_loop()
        if task.record.status == TaskStatus.PAUSED:
            task.timers.append(loop.call_later(idle, self._check_idle, task))
            return
        quiet = time.monotonic() - task.last_output
        if quiet >= idle:
            self._on_timeout(task, "idle_timeout")
        else:
            task.timers.append(loop.call_later(idle - quiet, self._check_idle, task))

    # ------------------------------------------------------------------ control

    async def control(self, task_id: str, action: Action) -> TaskRecord:
        task = self._live.get(task_id)
        if task is None:
            rec = await self.get(task_id)  # raises TASK_NOT_FOUND
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"cannot {action.value} task {task_id}: it is already {rec.status}",
                {"status": str(rec.status)},
            )
        return await self._to_the_end(self._control_locked(task, action))

    async def _control_locked(self, task: RunningTask, action: Action) -> TaskRecord:
        async with task.control_lock:
            if action == Action.CANCEL:
                rec = await self._cancel(task)
            else:
                rec = await self._pause_resume(task, action)
            # A snapshot: the caller resumes after the next action on this task may have
            # run, and its reply must say what this action did, not what came after.
            return copy.copy(rec)

    async def _cancel(self, task: RunningTask) -> TaskRecord:
        if task.finishing and task.done.done():
            return task.record
        self._terminate(task, TaskStatus.CANCELLED, "cancelled")
        # Reply once the group is gone: "cancelled" means nothing of it runs.
        return await asyncio.shield(task.done)

    async def _pause_resume(self, task: RunningTask, action: Action) -> TaskRecord:
        rec = task.record
        want_from = TaskStatus.RUNNING if action == Action.PAUSE else TaskStatus.PAUSED
        if rec.status != want_from or task.exited or task.final_status is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"cannot {action.value} task {rec.task_id}: it is {rec.status}"
                + (" and stopping" if task.final_status is not None else ""),
                {"status": str(rec.status)},
            )
        assert rec.pgid is not None
        stop = action == Action.PAUSE
        process.signal_group(rec.pgid, signal.SIGSTOP if stop else signal.SIGCONT)
        settled = await process.wait_group_state(rec.pgid, stopped=stop)
        if task.exited or task.final_status is not None:
            return rec
        rec.status = TaskStatus.PAUSED if stop else TaskStatus.RUNNING
        if not stop:
            task.last_output = time.monotonic()
        if not settled:
            rec.extra["control_warning"] = f"group not fully {'stopped' if stop else 'running'}"
        self.store.save(rec)
        method = Notification.PAUSED if stop else Notification.RESUMED
        params = {"task_id": rec.task_id, "status": str(rec.status)}
        task.emit(method, params)
        self._notify_listeners(method, params)
        return rec

    # ------------------------------------------------------------------ streams

    def subscribe(
        self,
        task_id: str,
        subscriber: Subscriber,
        from_offset: int | None = None,
        stderr_from_offset: int | None = None,
    ) -> TaskRecord | None:
        """Attach a subscriber to a live task, replaying from the given offsets first.

        Returns the record, or None if the task is not live (the caller then replays from
        the log and sends the final record itself; see `replay`).
        """
        task = self._live.get(task_id)
        if task is None:
            return None
        for stream, start in ((Stream.STDOUT, from_offset), (Stream.STDERR, stderr_from_offset)):
            out = task.streams.get(stream)
            if start is None or out is None:
                continue
            self._replay(task_id, stream, start, out.offset - len(out._pending), subscriber)
        task.subscribers.add(subscriber)
        return task.record

    def replay_finished(
        self,
        record: TaskRecord,
        subscriber: Subscriber,
        from_offset: int | None,
        stderr_from_offset: int | None,
    ) -> None:
        """Replay a finished task's log from the offsets, then its completion."""
        for stream, start in ((Stream.STDOUT, from_offset), (Stream.STDERR, stderr_from_offset)):
            if start is None:
                continue
            end = getattr(record, f"{stream.value}_bytes")
            self._replay(record.task_id, stream, start, end, subscriber)
        subscriber.push(Event(Notification.COMPLETED, record.completed_params()))

    def _replay(
        self, task_id: str, stream: Stream, start: int, end: int, subscriber: Subscriber
    ) -> None:
        if start >= end:
            return
        budget = subscriber.max_bytes // 2
        if end - start > budget:
            # More than the subscriber could hold: name the gap, replay the newest part.
            cut = end - budget
            subscriber.push(
                Event(
                    Notification.DROPPED,
                    {
                        "task_id": task_id,
                        "stream": stream.value,
                        "from_offset": start,
                        "to_offset": cut,
                    },
                )
            )
            start = cut
        try:
            with open(self.log_path(task_id, stream), "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as exc:
            subscriber.push(
                Event(
                    Notification.ERROR,
                    {"task_id": task_id, "stream": stream.value, "error": f"replay failed: {exc}"},
                )
            )
            return
        step = self.settings.read_chunk_bytes
        pos = 0
        while pos < len(data):
            piece = data[pos : pos + step]
            text, encoding = encode_data(piece)
            params: dict[str, Any] = {
                "task_id": task_id,
                "stream": stream.value,
                "offset": start + pos,
                "data": text,
            }
            if encoding:
                params["encoding"] = encoding
            subscriber.push(Event(Notification.OUTPUT, params, len(piece)))
            pos += len(piece)

    def unsubscribe(self, task_id: str, subscriber: Subscriber) -> bool:
        task = self._live.get(task_id)
        if task is None or subscriber not in task.subscribers:
            return False
        task.subscribers.discard(subscriber)
        return True

    def detach(self, subscriber: Subscriber) -> None:
        """Forget a subscriber everywhere (its connection closed). Tasks keep running."""
        for task in self._live.values():
            task.subscribers.discard(subscriber)
        self.listeners.discard(subscriber)

    def on_subscriber_drop(self, nbytes: int) -> None:
        self.counters["dropped_bytes"] += nbytes
        self.counters["dropped_events"] += 1

    def _notify_listeners(self, method: str, params: dict[str, Any]) -> None:
        if not self.listeners:
            return
        ev = Event(method, params)
        for sub in tuple(self.listeners):
            sub.push(ev)

    # ------------------------------------------------------------------ output reads

    async def read_output(
        self, task_id: str, stream: Stream, offset: int, limit: int
    ) -> dict[str, Any]:
        """A byte-exact slice of a task's complete output, read from its log file."""
        rec = await self.get(task_id)
        task = self._live.get(task_id)
        out = task.streams.get(stream) if task is not None else None
        total = out.logged if out is not None else getattr(rec, f"{stream.value}_bytes")
        path = self.log_path(task_id, stream)

        def read() -> tuple[bytes, int]:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(offset)
                    return f.read(min(limit, max(0, size - offset))), size
            except FileNotFoundError:
                return b"", 0

        data, size = await asyncio.get_running_loop().run_in_executor(None, read)
        if out is None and size < total:
            total = size  # a log that failed to write, or was removed
        # Keep text text: do not end a slice inside a UTF-8 character when more follows.
        if offset + len(data) < size:
            cut = _incomplete_utf8_tail(data)
            if cut and cut < len(data):
                data = data[:-cut]
        text, encoding = encode_data(data)
        result: dict[str, Any] = {
            "task_id": task_id,
            "stream": stream.value,
            "offset": offset,
            "size": len(data),
            "total": max(total, size),
            "data": text,
            "encoding": encoding or "utf-8",
            "eof": offset + len(data) >= size and rec.status.is_final,
            "status": str(rec.status),
        }
        return result

    def tail(self, task_id: str, stream: Stream = Stream.STDOUT, max_bytes: int = 4096) -> bytes:
        task = self._live.get(task_id)
        if task is None or stream not in task.streams:
            return b""
        return task.streams[stream].tail(max_bytes)


class DataDirLocked(RuntimeError):
    """Another engine (the service, a bridge fallback, an API caller) owns this data dir."""


def _lock_data_dir(data_dir: Path) -> int:
    path = data_dir / "engine.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirLocked(
            f"data dir {data_dir} is in use by another cc-executor engine (lock {path}); "
            "use another data_dir or stop the other one"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def command_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env
