"""What the session tools do, apart from MCP: `session.*` calls, bounded waits, lean results.

Sessions live where the bridge's tasks run (docs/sessions.md): every tool is one
`session.*` method sent through the bridge's transport, like the task tools' methods. Over
the WebSocket it reaches the service's sessions, shared by every agent; in `local` mode,
and in `auto` mode while the service is down, the in-process engine's own session manager
(sessions stored in its data dir, seen by this bridge alone) serves it, through the same
handlers. A session stays with the side that holds it.

Calls that can wait long (a message with `wait_for_response`, `coordinate_sessions`,
`spawn_temp_session`) return within the bridge's `wait_timeout` like the task tools,
with what is known so far and a hint saying how to follow up; the work itself goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.protocol_families import PARAMS
from cc_executor.transport import ExecutorConnectionError, ServiceUnavailable, Transport
from mcp_bridge.failures import ToolFailure, failure
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import Report
from mcp_bridge.watch import clip_text as _clip_text

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NEEDED = "sessions need the executor service: start it with `cc-executor start`"
SUMMARY_KEYS = (
    "session_id",
    "name",
    "status",
    "working_dir",
    "turns",
    "queued",
    "current_turn",
    "current_task_id",
    "last_turn",
    "last_status",
    "last_result",
    "watch_mode",
    "watch_turns",
    "watch_stopped",
    "messages_in",
    "messages_out",
    "temp",
    "created_at",
    "updated_at",
    "end_reason",
    "backend",
)
"""What a listing shows of each session; get_session_status shows all of it. `backend`
(auto mode): "websocket" for the service's sessions, "local" for this bridge's own."""
LISTED_RESULT_CHARS = 500
_KILL_WAIT_S = 15.0


def _unreachable(exc: BaseException) -> str:
    why = str(exc)
    if why.startswith("the service refused the token"):  # it runs: starting it is no help
        return f"sessions need the executor service, and {why}"
    why = why.removesuffix(". Start it with `cc-executor start`")
    return f"{SERVICE_NEEDED} ({why})"


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    """A session record as listed: its state, not its configuration."""
    s = {k: rec[k] for k in SUMMARY_KEYS if rec.get(k) is not None}
    if isinstance(s.get("last_result"), str):
        s["last_result"], _ = _clip_text(
            s["last_result"], LISTED_RESULT_CHARS, "get_session_status has more"
        )
    return s


class SessionTools:
    """The session tools' logic over one transport (the bridge's)."""

    def __init__(self, settings: BridgeSettings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ plumbing

    async def call(
        self, method: Method, params: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """One `session.*` method; its params are checked here first (clear messages, and
        nothing is sent that the service would refuse). `idempotent`: a read, so a lost
        connection means nothing was changed."""
        PARAMS[method].model_validate(params)
        try:
            return await self.transport.call(method, params)
        except ServiceUnavailable as exc:
            raise ToolFailure(_unreachable(exc), ErrorCode.SERVICE_UNAVAILABLE) from exc
        except ExecutorConnectionError as exc:
            if idempotent:
                msg = f"lost the connection to the cc-executor service: {exc}"
                raise ToolFailure(msg, ErrorCode.SERVICE_UNAVAILABLE) from exc
            raise ToolFailure(
                f"lost the connection to the cc-executor service during {method}: {exc}. It "
                "may have been carried out: check list_sessions / get_session_status before "
                "trying again.",
                ErrorCode.SERVICE_UNAVAILABLE,
            ) from exc

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a call in the background: it outlives the tool call that waits for it."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            exc = None if t.cancelled() else t.exception()
            if exc is not None:
                log.info("background session call ended: %s", failure(exc).message)

        task.add_done_callback(done)
        return task

    async def _await(
        self,
        fut: asyncio.Future[Any],
        limit: float | None,
        report: Report | None,
        what: str,
    ) -> bool:
        """Wait for `fut` at most `limit` s, a heartbeat progress message every
        `heartbeat_interval`; True when it finished. Never cancels `fut`."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = None if limit is None else start + limit
        while not fut.done():
            step: float | None = self.settings.heartbeat_interval if report else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                step = left if step is None else min(step, left)
            await asyncio.wait({fut}, timeout=step)
            if fut.done() or report is None:
                continue
            if deadline is None or loop.time() < deadline:
                try:
                    await report(f"{what} ({loop.time() - start:.0f}s)")
                except Exception:  # a client that went away must not fail the wait
                    log.debug("progress notification failed", exc_info=True)
        return True

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    # ------------------------------------------------------------------ reads

    async def list_sessions(self, include_ended: bool) -> dict[str, Any]:
        res = await self.call(
            Method.SESSION_LIST, {"include_ended": include_ended}, idempotent=True
        )
        return {
            "sessions": [summary(s) for s in res.get("sessions", ())],
            "total": res.get("total"),
            "active": res.get("active"),
        }

    async def status(self, ref: str) -> dict[str, Any]:
        rec = await self.call(Method.SESSION_STATUS, {"session_id": ref}, idempotent=True)
        if rec.get("status") == "running" and rec.get("current_task_id"):
            rec["hint"] = (
                f"Turn {rec.get('current_turn')} is running as task {rec['current_task_id']}: "
                f'follow it with get_execution_status(task_id="{rec["current_task_id"]}"). '
                'When the session is "idle" again, its answer is last_result.'
            )
        return rec

    async def logs(self, ref: str, lines: int) -> dict[str, Any]:
        res = await self.call(
            Method.SESSION_LOGS, {"session_id": ref, "lines": lines}, idempotent=True
        )
        entries = res.get("entries") or []
        budget = max(500, self.settings.max_output_chars // max(1, len(entries)))
        for e in entries:
            for key in ("prompt", "message", "text", "result"):
                if isinstance(e.get(key), str):
                    where = "read it whole from the turn's task"
                    if key == "result" and e.get("task_id"):
                        where = (
                            f'the whole answer is in get_execution_status(task_id="{e["task_id"]}")'
                        )
                    e[key], _ = _clip_text(e[key], budget, where)
        return res

    async def counts(self) -> dict[str, Any]:
        """Session counts for the status resource, asked only when the transport is ready
        (the resource never connects or starts an engine by itself); else why there are
        none."""
        if not self.transport.info().get("ready"):
            where = {"websocket": "the service", "local": "the local engine"}.get(
                self.settings.bridge_mode, "the service or the local engine"
            )
            return {
                "available": None,
                "note": f"not connected to {where} yet: list_sessions or the "
                "cc-executor://sessions resource ask it",
            }
        try:
            res = await self.call(Method.SESSION_LIST, {"include_ended": False}, idempotent=True)
        except Exception as exc:
            return {"available": False, "error": failure(exc).message}
        running = sum(1 for s in res.get("sessions", ()) if s.get("status") == "running")
        return {
            "available": True,
            "total": res.get("total"),
            "active": res.get("active"),
            "running": running,
        }

    # ------------------------------------------------------------------ actions

    async def create(self, params: dict[str, Any]) -> dict[str, Any]:
        p = {k: v for k, v in params.items() if v is not None}
        rec = await self.call(Method.SESSION_CREATE, p)
        rec["hint"] = (
            f'Give it work with send_message_to_session(session_id="{rec["session_id"]}", '
            "message=...); each message is one turn of the same conversation."
        )
        return rec

    async def kill(self, ref: str) -> dict[str, Any]:
        return await self.call(Method.SESSION_KILL, {"session_id": ref})

    async def send(
        self,
        ref: str,
        message: str,
        wait: bool,
        from_session: str | None,
        timeout: float | None,
        report: Report | None = None,
    ) -> dict[str, Any]:
        sender = from_session or self.settings.session_id
        if wait and sender is not None and sender == ref:
            raise ToolFailure(
                "a session cannot wait for its own answer: its turns run one at a time, so the "
                "message would wait behind the turn that waits for it. Send it without "
                "wait_for_response.",
                ErrorCode.INVALID_PARAMS,
            )
        params: dict[str, Any] = {"session_id": ref, "message": message, "wait": wait}
        if sender is not None:
            params["from_session"] = sender
        limit = None
        if wait:
            limit = self.settings.wait_timeout if timeout is None else timeout
            limit = min(limit, self.settings.wait_timeout)
            params["timeout"] = limit  # the service answers by then, turn done or not
        call = asyncio.ensure_future(self.call(Method.SESSION_SEND, params))
        try:
            await self._await(call, None, report if wait else None, f"waiting for {ref}'s answer")
        except asyncio.CancelledError:
            call.cancel()  # stop waiting; the turn itself belongs to the session
            raise
        try:
            res: dict[str, Any] = call.result()
        except ProtocolError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            if exc.code == ErrorCode.SESSION_NOT_FOUND and "from_session" in data:
                origin = "" if from_session else " (CC_EXECUTOR_SESSION_ID of this server)"
                raise ToolFailure(
                    f"the sending session {sender!r}{origin} was not found: give from_session "
                    "an existing session, or leave it out",
                    exc.code,
                    data,
                ) from exc
            raise
        task_id = res.get("task_id")
        if isinstance(res.get("result"), str):
            where = "get_session_logs has the turn"
            if task_id:
                where = f'the full answer is in get_execution_status(task_id="{task_id}")'
            res["result"], res["result_truncated"] = _clip_text(
                res["result"], self.settings.max_output_chars, where
            )
        sid = res.get("session_id", ref)
        follow = (
            f'get_session_status(session_id="{sid}") until its status is "idle" (its answer is '
            f"then last_result; get_session_logs shows every turn)"
        )
        if res.get("wait_timed_out"):
            res["hint"] = (
                f"No answer after waiting {limit:g}s; turn {res.get('turn')} keeps going "
                f"({res.get('status')}). Poll {follow}. Do not send the message again."
            )
        elif not wait:
            where = f" (number {res['position']} in its queue)" if res.get("position") else ""
            res["hint"] = (
                f"Turn {res.get('turn')} of {sid} is {res.get('status')}{where}. To see its "
                f"answer, poll {follow}."
            )
            if sender is not None:
                res["hint"] += (
                    f" The message is from {sender}: the other session sees who sent it and "
                    "can answer with a message back."
                )
        return res

    async def spawn_temp(
        self,
        params: dict[str, Any],
        report: Report | None = None,
        peer_cancelled: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        p = {k: v for k, v in params.items() if v is not None}
        name = p.setdefault("name", "temp-" + uuid.uuid4().hex[:8])
        PARAMS[Method.SESSION_SPAWN_TEMP].model_validate(p)  # bad params: an error now
        call = self._spawn(self.call(Method.SESSION_SPAWN_TEMP, p))
        try:
            done = await self._await(
                call, self.settings.wait_timeout, report, f"temporary session {name} running"
            )
        except asyncio.CancelledError:
            if self.settings.cancel_on_client_cancel and peer_cancelled():
                await self._kill_quietly(name)
            raise
        if not done:
            return await self._temp_running(name, p)
        res: dict[str, Any] = call.result()
        task_id = res.get("task_id")
        where = "page the rest with get_execution_output"
        if task_id:
            where = f'page it with get_execution_output(task_id="{task_id}")'
        mx = self.settings.max_output_chars
        for key, size in (("output", mx), ("stderr", mx // 4), ("result", mx)):
            if isinstance(res.get(key), str):
                res[key], cut = _clip_text(res[key], size, where)
                res[f"{key}_truncated"] = bool(res.get(f"{key}_truncated")) or cut
        if res.get("kind") == "command":
            res.pop("result", None)  # the same text as output
            res.pop("result_truncated", None)
        for e in res.get("logs") or ():
            for key in ("prompt", "message", "result"):
                if isinstance(e.get(key), str):
                    e[key], _ = _clip_text(e[key], 1000, "see output")
        return res

    async def _temp_running(self, name: str, p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "running", "name": name, "temp": True}
        with contextlib.suppress(Exception):
            rec = await self.call(Method.SESSION_STATUS, {"session_id": name}, idempotent=True)
            out["session_id"] = rec.get("session_id")
            out["task_id"] = rec.get("current_task_id") or rec.get("last_task_id")
        out["working_dir"] = p.get("working_dir")
        out["timeout"] = p.get("timeout", 300.0)
        task = f'get_execution_status(task_id="{out["task_id"]}")' if out.get("task_id") else ""
        out["hint"] = (
            f"Still running after {self.settings.wait_timeout:g}s; it keeps running (for at most "
            f"its timeout, {out['timeout']:g}s) and is then cleaned up. Follow it with "
            f'get_session_logs(session_id="{name}") (its turn shows status and result)'
            + (f" or {task}, and read its output with get_execution_output" if task else "")
            + ". Do not start it again."
        )
        return out

    async def _kill_quietly(self, ref: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_KILL_WAIT_S):
            try:
                await self.call(Method.SESSION_KILL, {"session_id": ref})
                log.info("killed temporary session %s: the client cancelled its call", ref)
            except Exception as exc:
                log.info("could not kill temporary session %s: %s", ref, exc)

    async def coordinate(
        self,
        task_description: str,
        assignments: dict[str, str],
        timeout: float,
        cancel_on_timeout: bool,
        report: Report | None = None,
    ) -> dict[str, Any]:
        params = {
            "task_description": task_description,
            "assignments": assignments,
            "timeout": timeout,
            "cancel_on_timeout": cancel_on_timeout,
        }
        PARAMS[Method.SESSION_COORDINATE].model_validate(params)
        call = self._spawn(self.call(Method.SESSION_COORDINATE, params))
        # Cancelling this call stops the waiting only: the sessions keep their subtasks.
        done = await self._await(
            call,
            self.settings.wait_timeout,
            report,
            f"{len(assignments)} sessions working on their subtasks",
        )
        if done:
            res: dict[str, Any] = call.result()
            results = res.get("results") or {}
            budget = max(500, self.settings.max_output_chars // max(1, len(results)))
            for r in results.values():
                if isinstance(r.get("result"), str):
                    where = "get_session_logs has the turn"
                    if r.get("task_id"):
                        where = (
                            f'the full answer is in get_execution_status(task_id="{r["task_id"]}")'
                        )
                    r["result"], _ = _clip_text(r["result"], budget, where)
            if res.get("timed_out"):
                res["hint"] = (
                    "Sessions in timed_out did not finish within the timeout"
                    + (" and were cancelled" if cancel_on_timeout else "; their turns keep going")
                    + ": follow them with get_session_status."
                )
            return res
        sessions: dict[str, Any] = {}
        for ref in assignments:
            try:
                sessions[ref] = summary(await self.status(ref))
            except Exception as exc:
                sessions[ref] = {"error": failure(exc).message}
        then = (
            "turns still running then are cancelled" if cancel_on_timeout else "none is cancelled"
        )
        return {
            "status": "running",
            "task_description": task_description,
            "timeout": timeout,
            "sessions": sessions,
            "hint": (
                f"The sessions are still working after {self.settings.wait_timeout:g}s and keep "
                f"going (the coordination's own limit is {timeout:g}s; {then}). Poll "
                'get_session_status for each session until its status is "idle": its answer '
                "is then last_result, and get_session_logs shows the coordinated turn (kind "
                '"coordinate"). Do not coordinate the same work again.'
            ),
        }
