"""Control of a task's process group: PAUSE, RESUME, CANCEL, time limits (a mixin of Engine).

PAUSE sends SIGSTOP to the group and replies once every member shows `T` in /proc;
RESUME sends SIGCONT and waits until none does. CANCEL and time limits send SIGTERM (and
SIGCONT to a stopped group, so it is delivered), SIGKILL after `kill_grace_seconds`, and
a cancel replies once the group is gone.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from cc_executor.config import Settings
from cc_executor.engine import process
from cc_executor.engine.bus import EventBus
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.queue import TaskQueue
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import TaskStore
from cc_executor.engine.task import RunningTask
from cc_executor.protocol import Action, ErrorCode, Notification, ProtocolError, TaskStatus

T = TypeVar("T")


class GroupControl:
    settings: Settings
    store: TaskStore
    queue: TaskQueue[RunningTask]
    bus: EventBus
    _live: dict[str, RunningTask]

    async def get(self, task_id: str) -> TaskRecord:
        raise NotImplementedError

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        raise NotImplementedError

    async def _to_the_end(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError

    async def _complete(self, task: RunningTask) -> None:
        raise NotImplementedError

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
            self.queue.remove(task)
            self.queue.running += 1  # _complete releases a slot
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
        transition(rec, TaskStatus.PAUSED if stop else TaskStatus.RUNNING)
        if not stop:
            task.last_output = time.monotonic()
        if not settled:
            rec.extra["control_warning"] = f"group not fully {'stopped' if stop else 'running'}"
        self.store.save(rec)
        method = Notification.PAUSED if stop else Notification.RESUMED
        params = {"task_id": rec.task_id, "status": str(rec.status)}
        task.emit(method, params)
        self.bus.publish(method, params)
        return rec
