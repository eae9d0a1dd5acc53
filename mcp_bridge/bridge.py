"""What the MCP tools do, apart from MCP: run and wait, shape results, run task lists.

The tools in `mcp_bridge.server` are thin typed functions over a `Bridge`; the `Bridge`
speaks to a `Backend` and knows nothing of the MCP SDK (progress and "did the client
cancel?" are handed in as plain callables), so all of it can be driven from tests.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from pydantic import ValidationError

from cc_executor.client import ExecutorConnectionError, output_bytes
from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ProtocolError, TaskStatus
from cc_executor.tasklist import (
    TaskParams,
    TaskResult,
    TemplateError,
    check_templates,
    list_status,
    run_task_list,
)
from mcp_bridge.backend import Backend, ServiceUnavailable, Waited, follow
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import Clip, OutputCapture, TaskWatch, clip

log = logging.getLogger(__name__)

Report = Callable[[str], Awaitable[None]]
"""Sends one progress notification with this message (the counter is the caller's)."""

RECORD_KEYS = (
    "task_id",
    "name",
    "status",
    "backend",
    "exit_code",
    "signal",
    "duration_s",
    "stdout_bytes",
    "stderr_bytes",
    "error",
    "error_kind",
    "timeout_kind",
)
CLAUDE_KEYS = (
    "result",
    "claude_session_id",
    "is_error",
    "subtype",
    "num_turns",
    "duration_ms",
    "total_cost_usd",
    "model",
    "usage",
    "permission_denials",
    "partial",
    "error_hint",
    "reset_at",
    "verification",
)
_LIST_LIMIT = 1000
_PLACEHOLDER_MAX_BYTES = 16 * 1024 * 1024
_CANCEL_WAIT_S = 15.0


class ToolFailure(Exception):
    """A tool call that failed in a way the agent should read: becomes an is_error result."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"error": self.message}
        if self.code is not None:
            d["code"] = self.code
        if self.data is not None:
            d["data"] = self.data
        return d


def failure(exc: BaseException) -> ToolFailure:
    """The project's errors as a message an agent can act on."""
    if isinstance(exc, ToolFailure):
        return exc
    if isinstance(exc, ProtocolError):
        msg = exc.message
        if isinstance(exc.data, dict) and "errors" in exc.data:
            msg = f"{msg}: {exc.data['errors']}"
        elif isinstance(exc.data, list) and all(
            isinstance(e, dict) and "msg" in e for e in exc.data
        ):  # the service's -32602 details: [{loc, msg}, ...]
            msg = f"{msg}: " + "; ".join(
                f"{e.get('loc') or 'params'}: {e['msg']}" for e in exc.data
            )
        return ToolFailure(msg, exc.code, exc.data)
    if isinstance(exc, ServiceUnavailable):
        return ToolFailure(f"the cc-executor service is unreachable: {exc}", -32000)
    if isinstance(exc, ExecutorConnectionError):
        return ToolFailure(
            f"lost the connection to the cc-executor service: {exc}. A task it was running "
            "may still be running: check it with get_execution_status.",
            -32000,
        )
    if isinstance(exc, ValidationError):
        errs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        return ToolFailure(f"invalid parameters: {errs}", ErrorCode.INVALID_PARAMS)
    if isinstance(exc, TemplateError):
        return ToolFailure(str(exc), ErrorCode.INVALID_PARAMS)
    return ToolFailure(f"{type(exc).__name__}: {exc}", ErrorCode.INTERNAL_ERROR)


def _is_final(status: str) -> bool:
    try:
        return TaskStatus(status).is_final
    except ValueError:
        return False


def _clip_text(text: str, max_chars: int, where: str) -> tuple[str, bool]:
    if len(text) <= max_chars:
        return text, False
    half = max_chars // 2
    omitted = len(text) - 2 * half
    marker = f"\n\n[... {omitted} characters omitted; {where} ...]\n\n"
    return text[:half] + marker + text[-half:], True


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


class Bridge:
    """The tools' logic over one backend."""

    def __init__(self, settings: BridgeSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.lists: OrderedDict[str, ListRun] = OrderedDict()

    # ------------------------------------------------------------------ single tasks

    def with_defaults(self, params: TaskParams) -> TaskParams:
        if params.timeout is None and self.settings.default_timeout is not None:
            return params.model_copy(update={"timeout": self.settings.default_timeout})
        return params

    async def run_task(
        self,
        params: TaskParams,
        wait: bool,
        report: Report | None = None,
        peer_cancelled: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        """Start a task and, with `wait`, wait for it up to `wait_timeout` (see the tools)."""
        params = self.with_defaults(params)
        started = await self.backend.execute(params, watch=wait)
        task_id = started["task_id"]
        if not wait:
            started["hint"] = (
                "Started without waiting. Poll get_execution_status(task_id) until its status "
                "is final; read its output with get_execution_output."
            )
            return started
        claude = isinstance(params, ExecuteClaudeParams)
        on_progress = None
        if report is not None:

            async def on_progress(watch: TaskWatch) -> None:
                await report(watch.message())

        try:
            waited = await self.backend.wait(
                task_id, self.settings.wait_timeout, on_progress, full_record=claude
            )
        except asyncio.CancelledError:
            if self.settings.cancel_on_client_cancel and peer_cancelled():
                await self._cancel_quietly(task_id)
            raise
        return await self.task_result(waited, claude, self.settings.max_output_chars)

    async def _cancel_quietly(self, task_id: str) -> None:
        """Cancel a task from inside a cancelled call: shielded, bounded, never raising."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT_S):
            try:
                await self.backend.control(task_id, "CANCEL")
                log.info("cancelled task %s: the client cancelled its call", task_id)
            except Exception as exc:
                log.info("could not cancel task %s: %s", task_id, exc)

    async def _clip_stream(
        self,
        task_id: str,
        stream: str,
        cap: OutputCapture | None,
        total: int,
        max_chars: int,
    ) -> Clip:
        if cap is not None and cap.complete and cap.size == total:
            return clip(cap.data(), b"", total, max_chars, task_id, stream)
        keep = 2 * max_chars
        if total <= 2 * keep:
            page = await self.backend.output(task_id, stream, 0, total)
            return clip(output_bytes(page), b"", total, max_chars, task_id, stream)
        head = output_bytes(await self.backend.output(task_id, stream, 0, keep))
        tail = output_bytes(await self.backend.output(task_id, stream, total - keep, keep))
        return clip(head, tail, total, max_chars, task_id, stream)

    async def task_result(self, waited: Waited, claude: bool, max_chars: int) -> dict[str, Any]:
        """The result of a waited task: its record fields and its output, clipped."""
        rec = waited.record
        out = {k: rec[k] for k in RECORD_KEYS if rec.get(k) is not None}
        task_id = out["task_id"]
        watch = waited.watch
        if not waited.final:
            if rec.get("pid") is not None:
                out["pid"] = rec["pid"]
            if watch is not None:
                out["last_output"] = watch.message()
            out["hint"] = (
                f"Still {out['status']} after waiting {self.settings.wait_timeout:g}s; it keeps "
                f'running. Poll get_execution_status(task_id="{task_id}") until the status is '
                "final (completed, failed, cancelled, timed_out), then read the output with "
                "get_execution_output. Do not start it again."
            )
            return out
        if claude:
            for k in CLAUDE_KEYS:
                if rec.get(k) is not None:
                    out[k] = rec[k]
            if isinstance(out.get("result"), str):
                out["result"], cut = _clip_text(
                    out["result"],
                    max_chars,
                    f'the full answer is in get_execution_status(task_id="{task_id}")',
                )
                out["result_truncated"] = cut
        else:
            c = await self._clip_stream(
                task_id,
                "stdout",
                watch.stdout if watch else None,
                int(rec.get("stdout_bytes") or 0),
                max_chars,
            )
            out["output"] = c.text
            out["output_truncated"] = c.truncated
            if c.truncated:
                out["output_omitted"] = {"offset": c.omitted_offset, "limit": c.omitted_bytes}
        err_total = int(rec.get("stderr_bytes") or 0)
        if err_total:
            e = await self._clip_stream(
                task_id, "stderr", watch.stderr if watch else None, err_total, max_chars // 4
            )
            out["stderr"] = e.text
            if e.truncated:
                out["stderr_truncated"] = True
        return out

    # ------------------------------------------------------------------ task lists

    def start_list(self, tasks: Sequence[TaskParams], stop_on_failure: bool) -> ListRun:
        """Check the placeholders, then run the list in the background."""
        if not tasks:
            raise ToolFailure("tasks must hold at least one task", ErrorCode.INVALID_PARAMS)
        check_templates([t.model_dump(exclude_unset=True) for t in tasks])
        run = ListRun(tasks, stop_on_failure)
        run.runner = asyncio.ensure_future(self._run_list(run))
        run.runner.add_done_callback(lambda _: run.ended.set())
        self.lists[run.list_id] = run
        while len(self.lists) > _LIST_LIMIT:
            old_id, old = next(iter(self.lists.items()))
            if not old.finished:
                break
            del self.lists[old_id]
        return run

    async def _run_list(self, run: ListRun) -> None:
        n = len(run.tasks)
        budget = max(500, self.settings.max_output_chars // n)

        async def run_one(index: int, params: TaskParams, need: frozenset[str]) -> TaskResult:
            params = self.with_defaults(params)
            claude = isinstance(params, ExecuteClaudeParams)
            try:
                started = await self.backend.execute(params)
            except ExecutorConnectionError as exc:
                raise ProtocolError(ErrorCode.INTERNAL_ERROR, failure(exc).message) from exc
            task_id = started["task_id"]
            run.current = (index, task_id)
            run.note(f"task {index + 1}/{n} started: {task_id}")

            async def progress(watch: TaskWatch) -> None:
                run.note(f"task {index + 1}/{n} ({task_id}): {watch.message()}")

            try:
                waited = await self.backend.wait(task_id, None, progress, full_record=claude)
            except asyncio.CancelledError:
                await self._cancel_quietly(task_id)
                raise
            except ExecutorConnectionError as exc:
                raise ProtocolError(ErrorCode.INTERNAL_ERROR, failure(exc).message) from exc
            rec = waited.record
            entry = await self.task_result(waited, claude, budget)
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
                res.output = await self._read_all(task_id, "stdout")
            if "stderr" in need:
                res.stderr = await self._read_all(task_id, "stderr")
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
            raise
        except Exception as exc:
            log.exception("task list %s failed", run.list_id)
            run.error = failure(exc).message
        finally:
            run.note(f"list {run.status}")

    async def _read_all(self, task_id: str, stream: str) -> str:
        data = await self.read_stream(task_id, stream, _PLACEHOLDER_MAX_BYTES)
        return data.decode("utf-8", "replace")

    async def read_stream(self, task_id: str, stream: str, max_bytes: int = 1 << 30) -> bytes:
        """A task's stream, whole (up to `max_bytes`), paged from its log."""
        chunks: list[bytes] = []
        offset = 0
        while offset < max_bytes:
            step = min(4 * 1024 * 1024, max_bytes - offset)
            page = await self.backend.output(task_id, stream, offset, step)
            chunks.append(output_bytes(page))
            offset += page["size"]
            if page["size"] == 0 or offset >= page["total"]:
                break
        return b"".join(chunks)

    async def wait_list(
        self,
        run: ListRun,
        report: Report | None = None,
        peer_cancelled: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        on_progress = None
        if report is not None:
            send = report

            def on_progress() -> Awaitable[None]:
                return send(run.message())

        deadline = asyncio.get_running_loop().time() + self.settings.wait_timeout
        try:
            await follow(run, deadline, on_progress, self.settings)
        except asyncio.CancelledError:
            if self.settings.cancel_on_client_cancel and peer_cancelled():
                with anyio.CancelScope(shield=True):
                    await self.cancel_list(run)
            raise
        d = run.to_dict()
        if not run.finished:
            d["hint"] = (
                f"The list is still running after {self.settings.wait_timeout:g}s and keeps "
                f'running in the bridge. Poll get_execution_status(task_id="{run.list_id}") '
                "for its progress and results. Do not start it again."
            )
        return d

    async def cancel_list(self, run: ListRun) -> None:
        """Cancel the running task of a list and start none of the rest."""
        if run.runner is not None and not run.runner.done():
            run.runner.cancel()
            # The runner cancels its running task on the way out: wait for that.
            await asyncio.wait([run.runner], timeout=_CANCEL_WAIT_S)

    # ------------------------------------------------------------------ other tools

    async def status(self, task_id: str | None, limit: int) -> dict[str, Any]:
        if task_id is not None and task_id in self.lists:
            return self.lists[task_id].to_dict()
        if task_id is not None:
            rec = await self.backend.status(task_id)
            return await self._status_view(rec)
        res = await self.backend.tasks(limit)
        tasks = [self._summary(t) for t in res.get("tasks", ())]
        out: dict[str, Any] = {"tasks": tasks, "stats": res.get("stats")}
        if self.lists:
            out["lists"] = [
                {
                    "list_id": r.list_id,
                    "status": r.status,
                    "tasks_total": len(r.tasks),
                    "tasks_done": len(r.results),
                }
                for r in reversed(self.lists.values())
            ]
        return out

    async def _status_view(self, rec: dict[str, Any]) -> dict[str, Any]:
        max_chars = self.settings.max_output_chars
        view = dict(rec)
        if view.get("argv") == view.get("command") or view.get("kind") == "claude":
            view.pop("argv", None)
        if view.get("kind") == "claude":
            view.pop("command", None)
        view.pop("expected_uuid", None)
        for key in ("result", "prompt"):
            if isinstance(view.get(key), str):
                view[key], _ = _clip_text(
                    view[key], max_chars, "read it whole from the task's output"
                )
        total = int(view.get("stdout_bytes") or 0)
        if not _is_final(str(view.get("status"))):
            # A live record counts its bytes at the end: ask the log how far it got.
            total = (await self.backend.output(view["task_id"], "stdout", 0, 0))["total"]
            view["stdout_bytes"] = total
        if view.get("kind") != "claude" and total:
            tail = min(total, 2000)
            page = await self.backend.output(view["task_id"], "stdout", total - tail, tail)
            view["output_tail"] = output_bytes(page).decode("utf-8", "replace")
            view["hint"] = "output_tail is the end of stdout; page it all with get_execution_output"
        return view

    @staticmethod
    def _summary(t: dict[str, Any]) -> dict[str, Any]:
        what = t.get("prompt") if t.get("kind") == "claude" else t.get("command")
        if isinstance(what, list):
            what = " ".join(what)
        s = {
            "task_id": t.get("task_id"),
            "status": t.get("status"),
            "kind": t.get("kind"),
            "backend": t.get("backend"),
            "name": t.get("name"),
            "what": (what or "")[:200],
            "exit_code": t.get("exit_code"),
            "pid": t.get("pid"),
            "created_at": t.get("created_at"),
            "duration_s": t.get("duration_s"),
        }
        return {k: v for k, v in s.items() if v is not None}

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        run = self.lists.get(task_id)
        if run is None:
            return await self.backend.control(task_id, action)
        act = action.upper()
        if act == "CANCEL":
            if run.finished:
                raise ToolFailure(
                    f"cannot CANCEL list {task_id}: it is already {run.status}",
                    ErrorCode.INVALID_STATE,
                )
            await self.cancel_list(run)
            return {"task_id": task_id, "action": "CANCEL", "status": run.status}
        if run.current is None or run.finished:
            raise ToolFailure(
                f"cannot {act} list {task_id}: no task of it is running", ErrorCode.INVALID_STATE
            )
        res = await self.backend.control(run.current[1], act)
        res["list_id"] = task_id
        return res

    async def output(self, task_id: str, stream: str, offset: int, limit: int) -> dict[str, Any]:
        page = await self.backend.output(task_id, stream, offset, limit)
        page["next_offset"] = page["offset"] + page["size"]
        if not page.get("eof") and page["next_offset"] < page["total"]:
            page["hint"] = "more output follows: call again with offset=next_offset"
        return page

    async def close(self) -> None:
        for run in list(self.lists.values()):
            await self.cancel_list(run)
        await self.backend.close()
