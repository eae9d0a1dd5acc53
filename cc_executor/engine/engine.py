"""The engine: the one owner of every child process and its lifecycle.

spawn -> stream -> signal -> reap -> persist. The service, the bridge's local fallback,
sessions and the Python API all drive an Engine; nothing else spawns task processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cc_executor import __version__
from cc_executor.config import Settings
from cc_executor.engine import datadir, listing, process  # faces: listing (status filters)
from cc_executor.engine.bus import EventBus, LocalEventBus
from cc_executor.engine.control import GroupControl
from cc_executor.engine.events import OutputEvent, Subscriber
from cc_executor.engine.health import StorageHealth
from cc_executor.engine.journal import TASK_ENV, SpawnJournal
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.listing import TaskPage  # faces
from cc_executor.engine.output import LogWriter, OutputLog, OutputSink
from cc_executor.engine.queue import Admission, LocalTaskQueue, TaskQueue
from cc_executor.engine.recent import RecentRecords
from cc_executor.engine.records import TaskRecord, new_task_id
from cc_executor.engine.recovery import recover
from cc_executor.engine.serving import OutputServing
from cc_executor.engine.store import SqliteTaskStore, TaskStore
from cc_executor.engine.task import Hook, PipeReader, RunningTask, TaskObserver, TaskSpec
from cc_executor.protocol import (
    ErrorCode,
    Notification,
    ProtocolError,
    StatusParams,  # faces
    Stream,
    TaskStatus,
)

if TYPE_CHECKING:
    from cc_executor.cluster.node import ClusterNode

log = logging.getLogger(__name__)
T = TypeVar("T")

_RECENT_LIMIT = 5000
_EOF_GRACE_S = 2.0  # after the group is gone, how long to wait for pipes held elsewhere

__all__ = ["Engine", "RunningTask", "TaskObserver", "TaskSpec"]


class Engine(GroupControl, OutputServing):
    """Owns tasks: queue, spawn, stream output, pause/resume/cancel, time limits, records.

    Its parts are seams (engine/factory.py builds them from Settings): the task store,
    the task queue with its capacity accounting, and the event bus for listeners.
    """

    def __init__(
        self,
        settings: Settings,
        store: TaskStore | None = None,
        queue: TaskQueue[RunningTask] | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.node = settings.node
        # `is None`, not `or`: a queue with nothing waiting has len() 0.
        self.store: TaskStore = SqliteTaskStore(settings.db_path) if store is None else store
        self.queue: TaskQueue[RunningTask] = (
            LocalTaskQueue(settings.max_concurrent_tasks, settings.max_queued_tasks)
            if queue is None
            else queue
        )
        self.bus: EventBus = LocalEventBus() if bus is None else bus
        self.log_dir = settings.log_dir
        self.storage = StorageHealth(settings.data_dir, self.store)  # what /health reports
        self._live: dict[str, RunningTask] = {}
        self._recent = RecentRecords(settings.recent_tasks_bytes, _RECENT_LIMIT)  # harden: bytes
        self._journal = SpawnJournal(settings.data_dir / "spawned.jsonl")
        from cc_executor.hooks import HookRunner
        from cc_executor.workspaces import Workspaces

        self.hooks = HookRunner(settings, self._journal)
        # Workspaces (issue 15): a task's worktree is made after the hooks that may refuse
        # it, and what it changed is on the record before post_execute hooks see it.
        self.workspaces = Workspaces(self)
        self.pre_execute: list[Hook] = [self.hooks.pre, self.workspaces.pre_execute]
        self.post_execute: list[Hook] = [self.workspaces.post_execute, self.hooks.post]
        self.writer = LogWriter()
        self.started_at = time.time()
        self.counters: dict[str, int] = {
            "tasks_started": 0,
            "spawn_failures": 0,
            "lost_on_start": 0,
        }
        self._closing = False
        self._opened = False
        self._lock_fd: int | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Cluster mode (cc_executor/cluster): the node's parts, and a copy of every chunk
        # of output to its Redis stream. Both None on a single host.
        self.cluster: ClusterNode | None = None
        self.output_sink: OutputSink | None = None

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
        datadir.prepare(self.settings.data_dir, self.log_dir)
        self._lock_fd = datadir.lock(self.settings.data_dir)
        self.storage.watch(self._lock_fd)
        await self.store.open()
        self._opened = True
        await self._recover()
        self._journal.open()
        self.writer.start()
        if self.cluster is not None:
            await self.cluster.start()

    async def _recover(self) -> None:
        lost = await recover(
            self.store,
            self._journal,
            self.log_path,
            self.node,
            self.hooks.recover,
            owns_unassigned=not self.queue.shared,
        )
        self.counters["lost_on_start"] += lost

    async def close(self) -> None:
        """Cancel every live task, wait for their groups to end, close the store."""
        if self._closing:
            return
        self._closing = True
        live = list(self._live.values())
        for task in live:
            self._terminate(task, TaskStatus.CANCELLED, "service shutting down")
        if live:
            # harden: the group's grace, then its escapees' (process.end_tagged)
            await asyncio.wait(
                [t.done for t in live], timeout=2 * self.settings.kill_grace_seconds + 3
            )
        for task in live:
            if task.record.pgid is not None:
                process.kill_group_now(task.record.pgid)
        if self.cluster is not None:
            await self.cluster.stop()
        await asyncio.to_thread(self.writer.stop)
        if self._opened:
            await self.store.flush()
            await self.store.close()
            # Records the disk refused to the end: the journal keeps their spawns for recovery.
            self._journal.close(clean=not self.storage.problems())
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def kill_now(self) -> None:
        """SIGKILL every live task's group at once: for a process about to die."""
        for task in self._live.values():
            if task.record.pgid is not None:
                process.kill_group_now(task.record.pgid)

    # ------------------------------------------------------------------ queries

    def log_path(self, task_id: str, stream: Stream) -> Path:
        return self.log_dir / f"{task_id}.{stream.value}"

    def live_task(self, task_id: str) -> RunningTask | None:
        return self._live.get(task_id)

    @property
    def listeners(self) -> set[Subscriber]:
        """This process's subscribers of every task's control events (`listen`)."""
        return self.bus.listeners

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
        # A finished record is saved before it is cached, and store reads see every
        # earlier write: only live records (byte counts still moving) are merged in.
        by_id: dict[str, TaskRecord] = {r.task_id: r for r in await self.store.list(limit)}
        for rid, task in self._live.items():
            by_id[rid] = task.current_record()
        return sorted(by_id.values(), key=lambda r: r.created_at, reverse=True)[:limit]

    async def page(self, query: StatusParams) -> TaskPage:
        """One page of the filtered task list (faces: the filtering is engine/listing.py)."""
        by_id = {r.task_id: r for r in await self.store.list(listing.SCAN_LIMIT)}
        by_id.update((rid, t.current_record()) for rid, t in self._live.items())
        return listing.select(by_id.values(), query)

    def stats(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "running": sum(1 for t in self._live.values() if t.record.status == TaskStatus.RUNNING),
            "paused": sum(1 for t in self._live.values() if t.record.status == TaskStatus.PAUSED),
            "queued": len(self.queue),
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
        self.storage.refuse_new_tasks()  # a full disk, a deleted data dir: engine/health.py
        s = self.settings
        timeout = spec.timeout if spec.timeout is not None else s.default_timeout
        for label, value in (("timeout", timeout), ("idle_timeout", spec.idle_timeout)):
            if value is not None and s.max_timeout is not None and value > s.max_timeout:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS,
                    f"{label} {value} exceeds max_timeout {s.max_timeout}",
                    {"max_timeout": s.max_timeout},
                )
        await self.queue.check_capacity()
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
        await self.queue.check_capacity()  # again: others may have come in while the hooks ran
        task = RunningTask(record, spec, self.log_dir)
        task.relay = self.bus.relay
        if subscriber is not None:
            if subscriber.hold_new_tasks:
                subscriber.hold(record.task_id)  # released once the caller has the reply
            task.subscribers.add(subscriber)
        self._live[record.task_id] = task
        held = spec.gate.holds() if spec.gate is not None else None  # issue 16
        if held is not None:  # issue 16: queued outside the queue until the gate opens
            record.extra.update(held)
            self.store.save(record)
            self._in_background(self._admit_after_gate(task))
            return record
        admission = await self.queue.admit(task)
        if admission is Admission.START:
            await self._to_the_end(self._start_guarded(task))
        elif admission is Admission.WAIT:
            self.store.save(record)
        else:  # the shared queue has it (and its record): the node that takes it runs it
            self._live.pop(record.task_id, None)
        if self.store.shared:  # acknowledged means found by every node (status, subscribe)
            await self.store.visible(record.task_id)
        return record

    async def run_taken(
        self, record: TaskRecord, spec: TaskSpec, subscribers: Iterable[Subscriber] = ()
    ) -> None:
        """Start a task taken from a shared queue (cluster mode), its slot already counted."""
        task = RunningTask(record, spec, self.log_dir)
        task.relay = self.bus.relay
        task.subscribers.update(subscribers)
        self._live[record.task_id] = task
        await self._to_the_end(self._start_guarded(task))

    async def _admit_after_gate(self, task: RunningTask) -> None:
        """Issue 16: wait for the task's gate, then queue it like any new task."""
        assert task.spec.gate is not None
        opened = asyncio.ensure_future(task.spec.gate.wait())
        either: list[asyncio.Future[Any]] = [opened, task.done]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()  # a CANCEL (or the engine closing) ended it while held
        for key in ("waiting_for", "until", "account"):
            task.record.extra.pop(key, None)
        if task.final_status is not None or self._closing:
            return  # cancelled while held
        admission = await self.queue.admit(task)
        if admission is Admission.START:
            await self._start_guarded(task)
        elif admission is Admission.WAIT:
            self.store.save(task.record)
        else:  # the shared queue has it now
            self._live.pop(task.task_id, None)

    async def _start(self, task: RunningTask) -> None:
        rec = task.record
        loop = asyncio.get_running_loop()
        for stream in Stream:
            task.streams[stream] = OutputLog(self.log_path(rec.task_id, stream), self.writer)
        self._journal.append(rec)  # before the spawn too: see engine/journal.py
        try:
            stdin = subprocess.PIPE if task.spec.stdin_pipe else subprocess.DEVNULL  # issue 16
            env = {**task.spec.env, TASK_ENV: rec.task_id}
            proc = process.spawn(rec.argv, rec.cwd, env, stdin=stdin)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.counters["spawn_failures"] += 1
            rec.error = f"spawn failed: {exc}"
            rec.extra.setdefault("spawn_error", f"{type(exc).__name__}: {exc}")
            task.exited = True
            task.start_failed = True
            self._in_background(self._complete(task))
            return
        task.proc = proc
        rec.pid = rec.pgid = proc.pid
        rec.node = self.node
        rec.started_at = time.time()
        transition(rec, TaskStatus.RUNNING)
        rec.start_ticks = process.leader_start_ticks(proc) if process.HAVE_PROC else None
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
        self.bus.publish(Notification.STARTED, started)
        process.watch_exit(proc, functools.partial(self._on_exit, task))
        assert proc.stdout is not None and proc.stderr is not None
        for stream, pipe in ((Stream.STDOUT, proc.stdout), (Stream.STDERR, proc.stderr)):
            task.open_pipes += 1
            transport, _ = await loop.connect_read_pipe(
                functools.partial(PipeReader, self, task, stream), pipe
            )
            # Read as much as the pipe holds (1 MiB, process.PIPE_BYTES) in one go: a
            # quarter of the chunks, so of the per-chunk work, of asyncio's 256 KiB.
            transport.max_size = process.PIPE_BYTES  # type: ignore[attr-defined]
            task.transports.append(transport)
        if rec.timeout is not None:
            task.timers.append(loop.call_later(rec.timeout, self._on_timeout, task, "timeout"))
        if rec.idle_timeout is not None:
            task.timers.append(loop.call_later(rec.idle_timeout, self._check_idle, task))

    # ------------------------------------------------------------------ output

    def _on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None:
        out = task.streams[stream]
        chunk = out.append(data)
        if self.output_sink is not None:
            self.output_sink.append(task.task_id, stream, out.offset - len(data), data)
        task.last_output = time.monotonic()
        if self.writer.throttled and not task.reading_paused:
            self._pause_reading(task)
        if out.error is not None:
            self._tell_log_error(task, stream, out.error)
        if task.spec.observer is not None:
            try:
                task.spec.observer.on_output(task, stream, data)
            except Exception:
                # A parser bug must not close the pipe: the bytes are logged either way.
                log.exception("observer failed on output of task %s", task.task_id)
        if chunk is not None and task.subscribers:
            self._offer(task, stream, out, chunk)

    @staticmethod
    def _tell_log_error(task: RunningTask, stream: Stream, error: str) -> None:
        """One `process.error` per task: its log lost bytes (seen at a chunk or at the end)."""
        if not task.log_error_sent:
            task.log_error_sent = True
            params = {"task_id": task.task_id, "stream": stream.value, "error": error}
            task.emit_everywhere(Notification.ERROR, params)

    @staticmethod
    def _offer(task: RunningTask, stream: Stream, out: OutputLog, chunk: tuple[int, bytes]) -> None:
        ev = OutputEvent(task.task_id, stream, chunk[0], chunk[1])  # its frames made once for all
        for sub in tuple(task.subscribers):
            if sub.closed:
                task.subscribers.discard(sub)
            else:
                sub.offer(ev, out)

    def _pause_reading(self, task: RunningTask) -> None:
        """The log writer is far behind: let the disk set the pace (the pipe fills)."""
        task.reading_paused = True
        for tr in task.transports:
            with contextlib.suppress(Exception):
                tr.pause_reading()  # type: ignore[attr-defined]

        def resume() -> None:
            task.reading_paused = False
            for tr in task.transports:
                with contextlib.suppress(Exception):
                    tr.resume_reading()  # type: ignore[attr-defined]

        self.writer.on_drained.append(resume)

    def _on_eof(self, task: RunningTask, stream: Stream) -> None:
        out = task.streams.get(stream)
        if out is not None:
            rest = out.finish()
            if rest is not None and task.subscribers:
                self._offer(task, stream, out, rest)
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
        # harden: and what left the group (it may hold the pipes); _complete waits for it
        grace = self.settings.kill_grace_seconds
        self._in_background(process.end_tagged(rec.task_id, grace, after=_spawned(rec)))
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
        if rec.pid is not None:  # harden: escapees (process.end_tagged)
            grace = self.settings.kill_grace_seconds
            await process.end_tagged(rec.task_id, grace, after=_spawned(rec))
        for stream, out in task.streams.items():
            out.finish()
            # Final means every byte is in the log file: a reader of the file, or of
            # `output` after a restart, sees all of it.
            await out.wait_flushed()
            setattr(rec, f"{stream.value}_bytes", out.offset)
            if out.error:
                rec.extra.setdefault("log_errors", {})[stream.value] = out.error
                self._tell_log_error(task, stream, out.error)  # failed after the last chunk
        if task.final_status is not None:
            transition(rec, task.final_status)
            if task.stop_reason and not rec.error:
                rec.error = task.stop_reason
        elif task.start_failed:
            transition(rec, TaskStatus.FAILED)
        else:
            transition(rec, TaskStatus.COMPLETED if rec.exit_code == 0 else TaskStatus.FAILED)
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
        if self.output_sink is not None:
            await self.output_sink.finish(rec.task_id)  # every byte readable before "completed"
        self.store.save(rec)
        params = rec.completed_params()
        task.emit(Notification.COMPLETED, params)
        self.bus.publish(Notification.COMPLETED, params)
        self._live.pop(rec.task_id, None)
        self._journal.maybe_compact(t.record for t in self._live.values())
        self._recent[rec.task_id] = rec  # harden: evicts by bytes and count (engine/recent.py)
        if not task.done.done():
            task.done.set_result(rec)
        self.queue.release()
        log.info(
            "task finished",
            extra={"task_id": rec.task_id, "status": str(rec.status), "exit_code": rec.exit_code},
        )
        self._start_queued()

    def _start_queued(self) -> None:
        while (task := self.queue.next_startable()) is not None:
            self._in_background(self._start_guarded(task))

    async def _start_guarded(self, task: RunningTask) -> None:
        try:
            await self._start(task)
        except Exception as exc:
            log.exception("starting task %s failed", task.task_id)
            task.start_failed = True
            task.record.error = f"start failed: {exc}"
            task.exited = True
            if task.record.pgid is not None:
                process.kill_group_now(task.record.pgid)
            await self._complete(task)

    # ------------------------------------------------------------------ streams
    # subscribe, replay_finished, unsubscribe, read_output: engine/serving.py

    def detach(self, subscriber: Subscriber) -> None:
        """Forget a subscriber everywhere (its connection closed). Tasks keep running."""
        for task in self._live.values():
            task.subscribers.discard(subscriber)
        self.bus.unlisten(subscriber)


def _spawned(rec: TaskRecord) -> tuple[int, float] | None:
    """harden: the leader's pid and spawn time (process.end_tagged looks at later pids)."""
    if rec.pid is None or rec.started_at is None:
        return None
    return rec.pid, rec.started_at
