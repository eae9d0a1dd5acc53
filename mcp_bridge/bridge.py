"""What the MCP tools do, apart from MCP: run and wait, shape results, status and control.

The tools in `mcp_bridge.server` are thin typed functions over a `Bridge`; the `Bridge`
sends the service's methods through a `Transport` (`cc_executor.transport`: the service,
the engine in this process, or both; see `mcp_bridge.connect`), follows tasks through the
transport's notifications, and knows nothing of the MCP SDK (progress and "did the client
cancel?" are handed in as plain callables), so all of it can be driven from tests, also on
a transport made of one function. Task lists are in `mcp_bridge.lists`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from cc_executor.client import output_bytes
from cc_executor.protocol import (
    Action,
    ErrorCode,
    ExecuteClaudeParams,
    Method,
    ProtocolError,
    TaskStatus,
)
from cc_executor.tasklist import TaskParams
from mcp_bridge import lists
from mcp_bridge.connect import Connect, make_transport
from mcp_bridge.failures import ToolFailure, failure
from mcp_bridge.lists import ListRun
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import (
    Clip,
    OutputCapture,
    Report,
    TaskWatch,
    Watches,
    clip,
    clip_text,
    follow,
    omitted_range,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[TaskWatch], Awaitable[None]]
"""Told of a waited task's progress (its watch), at most every `progress_interval`."""

__all__ = ["Bridge", "ToolFailure", "Waited", "failure"]
"""`failure` and `ToolFailure` live in `mcp_bridge.failures`; they are named here too for
the tool modules that import them from the bridge."""

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
    "attempts",  # with retries (issue 16): how many it took, the first one's id
    "retry_of",
)


def _is_final(status: str) -> bool:
    try:
        return TaskStatus(status).is_final
    except ValueError:
        return False


@dataclass(slots=True)
class Waited:
    """The end of a bounded wait: the final record, or the task's state so far."""

    record: dict[str, Any]
    watch: TaskWatch | None
    final: bool


class Bridge:
    """The tools' logic over one transport."""

    def __init__(self, settings: BridgeSettings, connect: Connect | None = None) -> None:
        self.settings = settings
        self.watches = Watches(2 * settings.max_output_chars)
        make = connect or functools.partial(make_transport, settings)
        self.transport = make(self.watches.feed)
        self.lists: OrderedDict[str, ListRun] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ the transport

    async def call(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        """One method; the result says who served it (`backend`: "websocket", "local")."""
        result = await self.transport.call(method, params)
        result.setdefault("backend", self.transport.name)
        return result

    async def info(self) -> dict[str, Any]:
        """What the transport is connected to (the status resource); connects nothing."""
        return self.transport.info()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ single tasks

    def with_defaults(self, params: TaskParams) -> TaskParams:
        if params.timeout is None and self.settings.default_timeout is not None:
            return params.model_copy(update={"timeout": self.settings.default_timeout})
        return params

    async def start(self, params: TaskParams, *, watch: bool = True) -> dict[str, Any]:
        """Start a task: `{task_id, status, pid, backend}`. With `watch`, follow it from now
        on (its notifications come after this reply); else tell the sender to stop."""
        claude = isinstance(params, ExecuteClaudeParams)
        method = Method.EXECUTE_CLAUDE if claude else Method.EXECUTE
        # Defaults go unsent: the service applies its own, and one older than a param
        # (e.g. `workspace`) refuses it even at its default.
        started = await self.call(
            method, params.model_dump(exclude_none=True, exclude_defaults=True)
        )
        task_id: str = started["task_id"]
        if watch:
            self.watches.open(task_id)
        else:
            self._spawn(self._unsubscribe(task_id))  # nobody here reads its output
        return started

    async def _unsubscribe(self, task_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.transport.call(Method.UNSUBSCRIBE, {"task_id": task_id})

    async def _subscribe(self, watch: TaskWatch) -> None:
        """(Re)attach a watch to its task, the output it already holds not sent again."""
        assert watch.task_id is not None
        params = {
            "task_id": watch.task_id,
            "from_offset": watch.stdout.size,
            "stderr_from_offset": watch.stderr.size,
        }
        await self.transport.call(Method.SUBSCRIBE, params)

    async def wait(
        self,
        task_id: str,
        timeout: float | None,
        on_progress: ProgressFn | None = None,
        *,
        full_record: bool = False,
        backend: str | None = None,
    ) -> Waited:
        """Wait at most `timeout` s (None: no limit) for the task to end, with progress.

        A watch whose channel was lost (a dropped service connection) is attached again,
        from the bytes it had; the watch is closed on the way out, and the task told to
        stop sending if it still runs.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        watch = self.watches.get(task_id)
        try:
            if watch is None:
                watch = self.watches.open(task_id)
                await self._subscribe(watch)
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
                await self._subscribe(watch)
        finally:
            self.watches.close(task_id)
            if watch is not None and not watch.finished:
                self._spawn(self._unsubscribe(task_id))
        if watch.completed is not None:
            record = dict(watch.completed)
            if full_record:
                record.update(await self.call(Method.STATUS, {"task_id": task_id}))
            record["backend"] = backend or record.get("backend") or self.transport.name
            return Waited(record, watch, True)
        record = {
            "task_id": task_id,
            "status": watch.status,
            "pid": watch.pid,
            "stdout_bytes": watch.stdout.size,
            "stderr_bytes": watch.stderr.size,
            "backend": backend or self.transport.name,
        }
        return Waited(record, watch, False)

    async def run_task(
        self,
        params: TaskParams,
        wait: bool,
        report: Report | None = None,
        peer_cancelled: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        """Start a task and, with `wait`, wait for it up to `wait_timeout` (see the tools)."""
        params = self.with_defaults(params)
        started = await self.start(params, watch=wait)
        task_id = started["task_id"]
        if not wait:
            started["hint"] = (
                "Started without waiting. Poll get_execution_status(task_id) until its status "
                "is final; read its output with get_execution_output."
            )
            self._say_where(started)
            return started
        claude = isinstance(params, ExecuteClaudeParams)
        on_progress = None
        if report is not None:

            async def on_progress(watch: TaskWatch) -> None:
                await report(watch.message())

        loop = asyncio.get_running_loop()
        limit = self.settings.wait_timeout
        deadline = None if limit is None else loop.time() + limit
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                waited = await self.wait(
                    task_id, left, on_progress, full_record=claude, backend=started["backend"]
                )
                # `retries` (issue 16): a retried attempt names the next, which exists already
                retry = waited.record.get("retried_by") if waited.final else None
                if not retry:
                    break
                task_id = retry
        except asyncio.CancelledError:
            if self.settings.cancel_on_client_cancel and peer_cancelled():
                await self.cancel_quietly(task_id)
            raise
        return await self.task_result(waited, claude, self.settings.max_output_chars)

    def _say_where(self, result: dict[str, Any]) -> None:
        """A task the service did not run says why in words, not only `backend: "local"`."""
        if result.get("backend") != "local" or self.settings.bridge_mode != "auto":
            return
        why = self.transport.info().get("last_error")
        result["note"] = (
            "ran on the bridge's local fallback: the service at "
            f"{self.settings.websocket_url} is unreachable"
            + (f" ({why})" if why else "")
            + "; a task that runs here ends when the bridge exits."
        )

    async def cancel_quietly(self, task_id: str) -> None:
        """Cancel a task from inside a cancelled call: shielded, bounded, never raising."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(lists.CANCEL_WAIT_S):
            try:
                await self._control(task_id, Action.CANCEL)
                log.info("cancelled task %s: the client cancelled its call", task_id)
            except Exception as exc:
                log.info("could not cancel task %s: %s", task_id, exc)

    async def _output(self, task_id: str, stream: str, offset: int, limit: int) -> dict[str, Any]:
        params = {"task_id": task_id, "stream": stream, "offset": offset, "limit": limit}
        return await self.call(Method.OUTPUT, params)

    async def _control(self, task_id: str, action: str) -> dict[str, Any]:
        return await self.call(Method.CONTROL, {"task_id": task_id, "action": action})

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
            page = await self._output(task_id, stream, 0, total)
            return clip(output_bytes(page), b"", total, max_chars, task_id, stream)
        head = output_bytes(await self._output(task_id, stream, 0, keep))
        tail = output_bytes(await self._output(task_id, stream, total - keep, keep))
        return clip(head, tail, total, max_chars, task_id, stream)

    async def task_result(self, waited: Waited, claude: bool, max_chars: int) -> dict[str, Any]:
        """The result of a waited task: its record fields and its output, clipped."""
        rec = waited.record
        out = {k: rec[k] for k in RECORD_KEYS if rec.get(k) is not None}
        task_id = out["task_id"]
        watch = waited.watch
        self._say_where(out)
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
                out["result"], cut = clip_text(
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
                out["output_omitted"] = omitted_range(c)
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
        return lists.start(self, tasks, stop_on_failure)

    async def wait_list(
        self,
        run: ListRun,
        report: Report | None = None,
        peer_cancelled: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        return await lists.wait(self, run, report, peer_cancelled)

    async def cancel_list(self, run: ListRun) -> None:
        await lists.cancel(run)

    async def read_stream(self, task_id: str, stream: str, max_bytes: int = 1 << 30) -> bytes:
        """A task's stream, whole (up to `max_bytes`), paged from its log."""
        chunks: list[bytes] = []
        offset = 0
        while offset < max_bytes:
            step = min(4 * 1024 * 1024, max_bytes - offset)
            page = await self._output(task_id, stream, offset, step)
            chunks.append(output_bytes(page))
            offset += page["size"]
            if page["size"] == 0 or offset >= page["total"]:
                break
        return b"".join(chunks)

    # ------------------------------------------------------------------ other tools

    async def status(self, task_id: str | None, limit: int) -> dict[str, Any]:
        if task_id is not None and task_id in self.lists:
            return self.lists[task_id].to_dict()
        if task_id is not None:
            rec = await self.call(Method.STATUS, {"task_id": task_id})
            return await self._status_view(rec)
        res = await self.call(Method.STATUS, {"limit": limit})
        name = self.transport.name  # an entry of a merged listing says its own side
        tasks = [self._summary({"backend": name, **t}) for t in res.get("tasks", ())]
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
                view[key], _ = clip_text(
                    view[key], max_chars, "read it whole from the task's output"
                )
        total = int(view.get("stdout_bytes") or 0)
        if not _is_final(str(view.get("status"))):
            # A live record counts its bytes at the end: ask the log how far it got.
            total = (await self._output(view["task_id"], "stdout", 0, 0))["total"]
            view["stdout_bytes"] = total
        if view.get("kind") != "claude" and total:
            tail = min(total, 2000)
            page = await self._output(view["task_id"], "stdout", total - tail, tail)
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

    async def record_brief(self, task_id: str) -> dict[str, Any]:
        """A task's record as a result names it: status, exit code, sizes, backend..."""
        rec = await self.call(Method.STATUS, {"task_id": task_id})
        return {k: rec[k] for k in RECORD_KEYS if rec.get(k) is not None}

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        """PAUSE, RESUME or CANCEL a task or a list. Idempotent, as the tool is annotated:
        repeating an action (a CANCEL of a task that ended, a PAUSE of a paused one)
        answers the current status instead of an error."""
        act = Action(action.upper())
        run = self.lists.get(task_id)
        if run is None:
            return await self._control_task(task_id, act)
        if act == Action.CANCEL:
            cancelling = not run.finished
            if cancelling:
                await self.cancel_list(run)
            sides = [e["backend"] for e in run.entries if e.get("backend")]
            out: dict[str, Any] = {
                "task_id": task_id,
                "list_id": task_id,
                "action": act.value,
                "status": run.status,
                "backend": sides[-1] if sides else self.transport.name,  # its last task's
                "tasks": run.entries,
            }
            if not cancelling:
                out["note"] = f"the list had already ended ({run.status}): nothing to cancel"
            return out
        if run.current is None or run.finished:
            raise ToolFailure(
                f"cannot {act.value} list {task_id}: no task of it is running",
                ErrorCode.INVALID_STATE,
            )
        res = await self._control_task(run.current[1], act)
        res["list_id"] = task_id
        return res

    async def _control_task(self, task_id: str, act: Action) -> dict[str, Any]:
        try:
            return await self._control(task_id, act)
        except ProtocolError as exc:
            if exc.code != ErrorCode.INVALID_STATE:
                raise
            rec = await self.call(Method.STATUS, {"task_id": task_id})
            status = str(rec.get("status"))
            repeat = (
                (act == Action.CANCEL and _is_final(status))
                or (act == Action.PAUSE and status == TaskStatus.PAUSED)
                or (act == Action.RESUME and status == TaskStatus.RUNNING)
            )
            if not repeat:
                raise
            return {
                "task_id": task_id,
                "action": act.value,
                "status": status,
                "backend": rec["backend"],
                "note": f"it is already {status}: nothing to do",
            }

    async def output(self, task_id: str, stream: str, offset: int, limit: int) -> dict[str, Any]:
        page = await self._output(task_id, stream, offset, limit)
        page["next_offset"] = page["offset"] + page["size"]
        if not page.get("eof") and page["next_offset"] < page["total"]:
            page["hint"] = "more output follows: call again with offset=next_offset"
        return page

    async def close(self) -> None:
        for run in list(self.lists.values()):
            await self.cancel_list(run)
        if self._background:  # unsubscribes on their way: let them go out first
            await asyncio.wait(list(self._background), timeout=5)
        await self.transport.aclose()
