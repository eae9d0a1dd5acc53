"""Task lists of the bridge: `execute_task_list` runs, which outlive the call that starts them.

A list runs in the background (`cc_executor.tasklist.run_task_list`), one task at a time
through the bridge's own start and wait, so each task is followed, clipped and cancelled
like a single one; a tool call waits on the list itself within the wait limit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ProtocolError
from cc_executor.tasklist import (
    TaskParams,
    TaskResult,
    check_templates,
    list_status,
    run_task_list,
)
from cc_executor.transport import ExecutorConnectionError
from mcp_bridge.failures import ToolFailure, failure
from mcp_bridge.watch import Report, TaskWatch, follow

if TYPE_CHECKING:
    from mcp_bridge.bridge import Bridge

log = logging.getLogger(__name__)

LIST_LIMIT = 1000
"""Finished lists kept for get_execution_status; the oldest go first."""
CANCEL_WAIT_S = 15.0
_PLACEHOLDER_MAX_BYTES = 16 * 1024 * 1024


class ListRun:
    """One `execute_task_list` call's run, owned by the bridge (it outlives the call)."""

    def __init__(self, tasks: Sequence[TaskParams], stop_on_failure: bool) -> None:
        self.list_id = "list-" + uuid.uuid4().hex[:12]
        self.tasks = list(tasks)
        self.stop_on_failure = stop_on_failure
        self.results: list[TaskResult] = []
        self.entries: list[dict[str, Any]] = []
        self.current: tuple[int, str] | None = None  # (index, task_id) running now
        self.runner: asyncio.Task[None] | None = None
        self.cancelled = False
        self.error: str | None = None
        # The same face as a TaskWatch, so the wait loop can follow a list too.
        self.version = 0
        self.ended = asyncio.Event()
        self.last_message = "starting"

    @property
    def finished(self) -> bool:
        return self.runner is not None and self.runner.done()

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.error is not None:
            return "failed"
        return list_status(self.results, len(self.tasks))

    def note(self, message: str) -> None:
        self.last_message = message
        self.version += 1

    def message(self) -> str:
        return self.last_message

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "list_id": self.list_id,
            "status": self.status,
            "tasks_total": len(self.tasks),
            "tasks_done": len(self.results),
            "tasks": self.entries,
        }
        if self.current is not None and not self.finished:
            d["running"] = {"index": self.current[0], "task_id": self.current[1]}
        if self.error:
            d["error"] = self.error
        return d


def start(bridge: Bridge, tasks: Sequence[TaskParams], stop_on_failure: bool) -> ListRun:
    """Check the placeholders, then run the list in the background."""
    if not tasks:
        raise ToolFailure("tasks must hold at least one task", ErrorCode.INVALID_PARAMS)
    check_templates([t.model_dump(exclude_unset=True) for t in tasks])
    run = ListRun(tasks, stop_on_failure)
    run.runner = asyncio.ensure_future(_run(bridge, run))
    run.runner.add_done_callback(lambda _: run.ended.set())
    lists = bridge.lists
    lists[run.list_id] = run
    while len(lists) > LIST_LIMIT:
        old_id, old = next(iter(lists.items()))
        if not old.finished:
            break
        del lists[old_id]
    return run


async def _run(bridge: Bridge, run: ListRun) -> None:
    n = len(run.tasks)
    budget = max(500, bridge.settings.max_output_chars // n)

    async def run_one(index: int, params: TaskParams, need: frozenset[str]) -> TaskResult:
        params = bridge.with_defaults(params)
        claude = isinstance(params, ExecuteClaudeParams)
        try:
            started = await bridge.start(params)
        except ExecutorConnectionError as exc:
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, failure(exc).message) from exc
        task_id = started["task_id"]
        run.current = (index, task_id)
        run.note(f"task {index + 1}/{n} started: {task_id}")

        async def progress(watch: TaskWatch) -> None:
            run.note(f"task {index + 1}/{n} ({task_id}): {watch.message()}")

        try:
            waited = await bridge.wait(
                task_id, None, progress, full_record=claude, backend=started["backend"]
            )
        except asyncio.CancelledError:
            await bridge.cancel_quietly(task_id)
            raise
        except ExecutorConnectionError as exc:
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, failure(exc).message) from exc
        rec = waited.record
        entry = await bridge.task_result(waited, claude, budget)
        entry["index"] = index
        res = TaskResult(
            index,
            str(rec.get("status")),
            task_id=task_id,
            exit_code=rec.get("exit_code"),
            result=rec.get("result") if claude else None,
            claude_session_id=rec.get("claude_session_id"),
            error=rec.get("error"),
            details=entry,
        )
        if claude:
            res.output = res.result or ""
        elif need & {"output", "result"}:
            res.output = await _read_all(bridge, task_id, "stdout")
        if "stderr" in need:
            res.stderr = await _read_all(bridge, task_id, "stderr")
        run.note(f"task {index + 1}/{n} {res.status}: {task_id}")
        return res

    def on_update(results: list[TaskResult]) -> None:
        run.results = list(results)
        run.entries = [r.details if r.details else r.to_dict() for r in results]
        run.note(f"{len(results)}/{n} tasks done")

    try:
        await run_task_list(
            run.tasks, run_one, stop_on_failure=run.stop_on_failure, on_update=on_update
        )
    except asyncio.CancelledError:
        run.cancelled = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_WAIT_S):
            await _list_the_rest(bridge, run)
        raise
    except Exception as exc:
        log.exception("task list %s failed", run.list_id)
        run.error = failure(exc).message
    finally:
        run.note(f"list {run.status}")


async def _list_the_rest(bridge: Bridge, run: ListRun) -> None:
    """A cancelled list's entries: the task it was running, as it ended, and the ones it
    never started, `skipped`; so its status shows every task, not only those done."""
    entries = list(run.entries)
    done = len(entries)
    if run.current is not None and run.current[0] == done:
        index, task_id = run.current
        entry: dict[str, Any] = {"index": index, "task_id": task_id, "status": "cancelled"}
        try:
            entry.update(await bridge.record_brief(task_id))
        except Exception as exc:  # the entry still says what it was
            entry["error"] = f"its status could not be read: {failure(exc).message}"
        entries.append(entry)
    for index in range(len(entries), len(run.tasks)):
        entries.append(
            {"index": index, "status": "skipped", "error": "not run: the list was cancelled"}
        )
    run.entries = entries
    run.note("list cancelled")


async def _read_all(bridge: Bridge, task_id: str, stream: str) -> str:
    data = await bridge.read_stream(task_id, stream, _PLACEHOLDER_MAX_BYTES)
    return data.decode("utf-8", "replace")


async def wait(
    bridge: Bridge,
    run: ListRun,
    report: Report | None = None,
    peer_cancelled: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Wait for the list within the wait limit, with progress; its state then."""
    s = bridge.settings
    on_progress = None
    if report is not None:
        send = report

        def on_progress() -> Awaitable[None]:
            return send(run.message())

    deadline = asyncio.get_running_loop().time() + s.wait_timeout
    try:
        await follow(run, deadline, on_progress, s)
    except asyncio.CancelledError:
        if s.cancel_on_client_cancel and peer_cancelled():
            with anyio.CancelScope(shield=True):
                await cancel(run)
        raise
    d = run.to_dict()
    if not run.finished:
        d["hint"] = (
            f"The list is still running after {s.wait_timeout:g}s and keeps "
            f'running in the bridge. Poll get_execution_status(task_id="{run.list_id}") '
            "for its progress and results. Do not start it again."
        )
    return d


async def cancel(run: ListRun) -> None:
    """Cancel the running task of a list and start none of the rest."""
    if run.runner is not None and not run.runner.done():
        run.runner.cancel()
        # The runner cancels its running task on the way out: wait for that.
        await asyncio.wait([run.runner], timeout=CANCEL_WAIT_S)
