"""One handler per JSON-RPC method. Handlers build replies and ask the engine to act.

`ROUTES` maps every method of `protocol.Method` to its params model and handler, so a
method's name leads straight here. The service runs them for each WebSocket frame, the
in-process transport (`cc_executor.transport.inprocess`) for each call: one set of replies.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cc_executor import __version__, jsonrpc
from cc_executor.claude.ratelimit import RateLimits
from cc_executor.claude.retry import RetryPlan
from cc_executor.engine import Engine, Subscriber, TaskRecord
from cc_executor.engine.brief import brief
from cc_executor.protocol import (
    ControlParams,
    EmptyParams,
    ErrorCode,
    ExecuteClaudeParams,
    ListenParams,
    Method,
    OutputParams,
    ProtocolError,
    StatusParams,
    SubscribeParams,
    UnsubscribeParams,
)
from cc_executor.protocol_families import PARAMS
from cc_executor.service_policy import ServicePolicy
from cc_executor.sessions.handlers import SESSION_ROUTES
from cc_executor.tasks import TaskParams, spec_for
from cc_executor.workspaces.handlers import WORKSPACE_ROUTES

if TYPE_CHECKING:
    from cc_executor.config import Settings
    from cc_executor.sessions import SessionManager


@dataclass
class Conn:
    """What a handler knows of the connection it serves: the engine and session manager
    it drives, and the subscriber that carries notifications back to its client."""

    engine: Engine
    settings: Settings
    subscriber: Subscriber
    peer: str = ""
    sessions: SessionManager | None = None  # None: the session.* methods are refused
    _starts: deque[float] = field(default_factory=deque)
    _subscribed: set[str] = field(default_factory=set)

    @contextlib.contextmanager
    def start_slot(self) -> Iterator[None]:
        """A start, counted against the rate limit before the engine is awaited (so a
        batch or pipelined requests cannot all pass one check), given back if refused."""
        limit = self.settings.max_tasks_per_minute_per_connection
        if limit <= 0:
            yield
            return
        now = time.monotonic()
        while self._starts and now - self._starts[0] > 60.0:
            self._starts.popleft()
        if len(self._starts) >= limit:
            retry = 60.0 - (now - self._starts[0])
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"rate limit: at most {limit} tasks per minute per connection",
                {"limit_per_minute": limit, "retry_after_s": round(retry, 3)},
            )
        self._starts.append(now)
        try:
            yield
        except BaseException:
            self._starts.remove(now)
            raise

    def admit_subscription(self, task_id: str) -> None:
        """At most `max_subscriptions_per_connection` tasks followed at once."""
        limit = self.settings.max_subscriptions_per_connection
        subs = self._subscribed
        if task_id not in subs and len(subs) >= limit:
            sub = self.subscriber

            def still(t: str) -> bool:
                live = self.engine.live_task(t)
                return sub.following(t) or (live is not None and sub in live.subscribers)

            subs.intersection_update({t for t in subs if still(t)})
            if len(subs) >= limit:
                raise ProtocolError(
                    ErrorCode.CAPACITY_EXCEEDED,
                    f"at most {limit} subscriptions per connection: unsubscribe first",
                    {"max_subscriptions_per_connection": limit},
                )
        subs.add(task_id)


def _started(rec: TaskRecord) -> dict[str, Any]:
    d: dict[str, Any] = {"task_id": rec.task_id, "status": str(rec.status), "pid": rec.pid}
    if rec.name:
        d["name"] = rec.name
    if rec.error:
        d["error"] = rec.error
    return d


async def execute(conn: Conn, p: TaskParams) -> dict[str, Any]:
    """`execute` and `execute_claude`: the params model says which (see `tasks.spec_for`).

    The connection's subscriber gets the task's notifications; the engine holds them
    until the caller has this reply (`Subscriber.hold`).
    """
    spec = spec_for(p, conn.settings)
    with conn.start_slot():
        if isinstance(p, ExecuteClaudeParams) and p.retries and conn.sessions is not None:
            plan = RetryPlan(p, conn.subscriber)  # issue 16: its end may start the next attempt
            rec = await conn.sessions.retries.execute(spec, plan)
        else:
            rec = await conn.engine.execute(spec, conn.subscriber)
    return _started(rec)


async def control(conn: Conn, p: ControlParams) -> dict[str, Any]:
    rec = await conn.engine.control(p.task_id, p.action)
    return {"task_id": rec.task_id, "action": p.action.value, "status": str(rec.status)}


async def status(conn: Conn, p: StatusParams) -> dict[str, Any]:
    if p.task_id is not None:
        return (await conn.engine.get(p.task_id)).to_dict()
    page = await conn.engine.page(p)  # faces: filters and paging, engine/listing.py
    stats = {**conn.engine.stats(), "rate_limits": RateLimits.of(conn.settings).snapshot()}
    return {
        "tasks": [brief(t.to_dict()) for t in page.tasks],
        "total": page.total,
        "offset": page.offset,
        "counts": page.counts,
        "stats": stats,
    }


async def output(conn: Conn, p: OutputParams) -> dict[str, Any]:
    return await conn.engine.read_output(p.task_id, p.stream, p.offset, p.limit)


async def subscribe(conn: Conn, p: SubscribeParams) -> dict[str, Any]:
    engine = conn.engine
    conn.admit_subscription(p.task_id)
    if conn.subscriber.hold_new_tasks:
        conn.subscriber.hold(p.task_id)  # what it reads follows this reply, as for execute
    rec = engine.subscribe(p.task_id, conn.subscriber, p.from_offset, p.stderr_from_offset)
    if rec is None:
        rec = await engine.get(p.task_id)
        engine.replay_finished(rec, conn.subscriber, p.from_offset, p.stderr_from_offset)
    return {
        "task_id": rec.task_id,
        "status": str(rec.status),
        "stdout_bytes": rec.stdout_bytes,
        "stderr_bytes": rec.stderr_bytes,
    }


async def unsubscribe(conn: Conn, p: UnsubscribeParams) -> dict[str, Any]:
    await conn.engine.get(p.task_id)  # TASK_NOT_FOUND for unknown ids
    return {
        "task_id": p.task_id,
        "unsubscribed": conn.engine.unsubscribe(p.task_id, conn.subscriber),
    }


async def hook_status(conn: Conn, p: EmptyParams) -> dict[str, Any]:
    from cc_executor.hooks import hook_status as _hook_status

    return _hook_status(conn.engine, conn.settings)


async def ping(conn: Conn, p: EmptyParams) -> dict[str, Any]:
    """Also the service's policy: what a client's local fallback must apply too
    (cc_executor/service_policy.py)."""
    policy = ServicePolicy.of(conn.settings).to_json()
    return {"pong": True, "version": __version__, "time": time.time(), "policy": policy}


async def listen(conn: Conn, p: ListenParams) -> dict[str, Any]:
    """Every task's control events to this connection (a dashboard); it ends on disconnect."""
    if p.enabled:
        conn.engine.listeners.add(conn.subscriber)
    else:
        conn.engine.listeners.discard(conn.subscriber)
    return {"listening": p.enabled}


_HANDLERS: dict[str, jsonrpc.Handler] = {
    Method.EXECUTE: execute,
    Method.EXECUTE_CLAUDE: execute,
    Method.CONTROL: control,
    Method.STATUS: status,
    Method.OUTPUT: output,
    Method.SUBSCRIBE: subscribe,
    Method.UNSUBSCRIBE: unsubscribe,
    Method.HOOK_STATUS: hook_status,
    Method.PING: ping,
    Method.LISTEN: listen,
}

ROUTES: dict[str, jsonrpc.Route] = {
    str(name): jsonrpc.Route(PARAMS[name], handler) for name, handler in _HANDLERS.items()
}
ROUTES.update(SESSION_ROUTES)  # session.* handlers: cc_executor/sessions/handlers.py
ROUTES.update(WORKSPACE_ROUTES)  # workspace.* handlers: cc_executor/workspaces/handlers.py
