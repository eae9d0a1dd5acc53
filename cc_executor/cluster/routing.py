"""The cluster's routes: the single-host ROUTES, with each call that concerns a task (or a
session) on another node served by the owner, so every method works on every node.

- `execute` / `execute_claude`: the engine runs it here if a slot is free and nothing
  waits, else it joins the cluster-wide queue (cluster/queue.py). `node` pins it: to
  another node, the call is forwarded there.
- `control`: to the task's node, which replies once the group really is stopped,
  continued or gone; a queued task is cancelled in the queue itself.
- `output`: from the owner while it runs; once it is final, from its Redis stream, or
  (ranges older than the retention) from the owner, or an error naming the node that
  holds them if it is gone.
- `subscribe`: a cursor into the task's Redis streams (cluster/follow.py).
- `status`: the whole cluster's tasks and, in `stats.nodes`, every node.
- `session.*`: on the node that holds the session (cluster/sessions.py).
- `workspace.*`: on the node whose disk holds the worktree (cluster/workspaces.py).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from cc_executor.cluster import keys
from cc_executor.cluster.connection import unavailable
from cc_executor.cluster.queue import REQUEST, QueuedRequest
from cc_executor.cluster.sessions import session_routes
from cc_executor.cluster.workspaces import workspace_routes
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.output import encode_data, incomplete_utf8_tail
from cc_executor.engine.records import TaskRecord
from cc_executor.jsonrpc import Handler, Route
from cc_executor.protocol import (
    Action,
    ControlParams,
    ErrorCode,
    Method,
    Notification,
    OutputParams,
    ProtocolError,
    StatusParams,
    Stream,
    SubscribeParams,
    TaskStatus,
    UnsubscribeParams,
)

_OWNERS_KEPT = 10_000

if TYPE_CHECKING:
    from cc_executor.cluster.node import ClusterNode
    from cc_executor.handlers import Conn


def cluster_routes(base: dict[str, Route], cluster: ClusterNode) -> dict[str, Route]:
    r = _Routes(base, cluster)
    routes = dict(base)
    handlers: dict[str, Handler] = {
        Method.EXECUTE: r.execute(Method.EXECUTE),
        Method.EXECUTE_CLAUDE: r.execute(Method.EXECUTE_CLAUDE),
        Method.CONTROL: r.control,
        Method.STATUS: r.status,
        Method.OUTPUT: r.output,
        Method.SUBSCRIBE: r.subscribe,
        Method.UNSUBSCRIBE: r.unsubscribe,
    }
    for name, handler in handlers.items():
        routes[str(name)] = Route(base[str(name)].params_model, handler)
    routes.update(session_routes(base, cluster))
    routes.update(workspace_routes(base, cluster))
    return {
        name: Route(r.params_model, _redis_errors(r.handler, cluster)) for name, r in routes.items()
    }


def _redis_errors(handler: Handler, cluster: ClusterNode) -> Handler:
    """A Redis failure under a call becomes SERVICE_UNAVAILABLE, without the URL's secrets."""

    async def guarded(conn: Conn, p: Any) -> Any:
        try:
            return await handler(conn, p)
        except RedisError as exc:
            raise unavailable(cluster.settings.redis_url or "", exc) from None

    return guarded


class _Routes:
    def __init__(self, base: dict[str, Route], cluster: ClusterNode) -> None:
        self.base = {name: route.handler for name, route in base.items()}
        self.c = cluster
        # Tasks seen running on another node, and where: a control need not ask Redis
        # again (the owner answers for its task, whatever its state by now).
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def _owner(self, task_id: str) -> tuple[str | None, str | None]:
        """(status, node) of a task as Redis has them; node None while queued."""
        s, n = await self.c.redis.hmget(keys.task(task_id), ["s", "n"])
        status, node = (s.decode() if s else None), (n.decode() if n else None)
        if node is not None and status in ("running", "paused"):
            self._remember(task_id, node)
        return status, node

    def _remember(self, task_id: str, node: str) -> None:
        """A started task never moves: its node answers for it from now on."""
        self._owners[task_id] = node
        while len(self._owners) > _OWNERS_KEPT:
            self._owners.popitem(last=False)

    def _elsewhere(self, task_id: str) -> str | None:
        """The other node known to run (or have run) this task: ask it, not Redis, whose
        copy of its record may lag (records are written in the background)."""
        node = self._owners.get(task_id)
        return node if node != self.c.node else None

    # ------------------------------------------------------------ execute

    def execute(self, method: Method) -> Handler:
        base = self.base[str(method)]

        async def handler(conn: Conn, p: Any) -> Any:
            pin: str | None = getattr(p, "node", None)
            params = p.model_dump(mode="json", exclude_unset=True)
            params.pop("node", None)
            if pin and pin != self.c.node:
                return await self._execute_on(conn, pin, str(method), params)
            # A worktree is made on this host (its hook runs here): the task must run here.
            here = pin == self.c.node or getattr(p, "workspace", "cwd") == "worktree"
            token = REQUEST.set(QueuedRequest(str(method), params, pinned=here))
            try:
                return await base(conn, p)
            finally:
                REQUEST.reset(token)

        return handler

    async def _execute_on(
        self, conn: Conn, node: str, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        if not await self.c.registry.is_alive(node):
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"node: {node!r} is not a live node of this cluster",
                {"node": node},
            )
        with conn.start_slot():
            res: dict[str, Any] = await self.c.rpc.call(node, method, params)
        self._remember(res["task_id"], node)
        sub = conn.subscriber
        if sub.hold_new_tasks:
            sub.hold(res["task_id"])  # its events follow this reply
        await self.c.followers.follow(res["task_id"], sub, {Stream.STDOUT: 0, Stream.STDERR: 0})
        if res.get("pid") is not None:  # it started there before we followed it
            started = {
                "task_id": res["task_id"],
                "pid": res["pid"],
                "status": "running",
                "command": params.get("command", params.get("prompt")),
                "kind": "claude" if method == Method.EXECUTE_CLAUDE else "command",
                "name": params.get("name"),
            }
            self.c.followers.announce_started(started)
        return res

    # ------------------------------------------------------------ control

    async def control(self, conn: Conn, p: ControlParams) -> Any:
        base = self.base[str(Method.CONTROL)]
        if conn.engine.live_task(p.task_id) is not None:
            return await base(conn, p)
        known = self._owners.get(p.task_id)
        if known is not None and known != self.c.node:
            return await self._forward(known, Method.CONTROL, p)
        status, owner = await self._owner(p.task_id)
        final = status is not None and TaskStatus(status).is_final
        if owner and owner != self.c.node and not final:
            return await self._forward(owner, Method.CONTROL, p)
        if status == TaskStatus.QUEUED and not owner:
            if p.action != Action.CANCEL:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"cannot {p.action.value} task {p.task_id}: it is queued",
                    {"status": status},
                )
            rec = await conn.engine.get(p.task_id)
            transition(rec, TaskStatus.CANCELLED)
            rec.error = "cancelled"
            rec.ended_at = time.time()
            done, claimed_by = await self.c.queue.cancel_queued(rec)
            if done:
                self.c.bus.publish(Notification.COMPLETED, rec.completed_params())
                return {"task_id": rec.task_id, "action": p.action.value, "status": "cancelled"}
            if claimed_by and claimed_by != self.c.node:
                return await self._forward(claimed_by, Method.CONTROL, p)
        return await base(conn, p)

    async def _forward(self, node: str, method: Method, p: Any) -> Any:
        return await self.c.rpc.call(node, str(method), p.model_dump(mode="json"))

    # ------------------------------------------------------------ status

    async def status(self, conn: Conn, p: StatusParams) -> Any:
        base = self.base[str(Method.STATUS)]
        if p.task_id is not None:
            if conn.engine.live_task(p.task_id) is None:
                owner = self._elsewhere(p.task_id)
                status = "running" if owner else None
                if owner is None:
                    status, owner = await self._owner(p.task_id)
                if owner and owner != self.c.node and status in ("running", "paused"):
                    try:
                        return await self._forward(owner, Method.STATUS, p)
                    except ProtocolError:
                        pass  # gone: the stored record is what there is
            return await base(conn, p)
        res = await base(conn, p)
        stats = res["stats"]
        stats["node"] = self.c.node
        stats["queued"] = len(self.c.queue._waiting) + int(
            await self.c.redis.get(keys.QUEUED_COUNT) or 0
        )
        stats["nodes"] = await self.c.nodes()
        return res

    # ------------------------------------------------------------ output

    async def output(self, conn: Conn, p: OutputParams) -> Any:
        base = self.base[str(Method.OUTPUT)]
        if conn.engine.live_task(p.task_id) is not None:
            return await base(conn, p)
        known = self._elsewhere(p.task_id)
        if known is not None:
            try:
                return await self._forward(known, Method.OUTPUT, p)
            except ProtocolError as exc:
                if exc.code != ErrorCode.SERVICE_UNAVAILABLE:
                    raise  # gone: what Redis holds is served below
        rec = await conn.engine.get(p.task_id)
        owner = rec.node
        if owner is None or owner == self.c.node:
            return await base(conn, p)
        if not rec.status.is_final and known is None:
            try:
                return await self._forward(owner, Method.OUTPUT, p)
            except ProtocolError as exc:
                if exc.code != ErrorCode.SERVICE_UNAVAILABLE:
                    raise
        total = int(getattr(rec, f"{p.stream.value}_bytes"))
        if p.offset >= total or p.limit == 0:
            return _output_reply(rec, p, b"", total)
        data, lo = await self.c.outputs.read(p.task_id, p.stream, p.offset, p.limit)
        if data:
            return _output_reply(rec, p, data, total)
        if await self.c.registry.is_alive(owner):
            return await self._forward(owner, Method.OUTPUT, p)
        held = "none of it" if lo < 0 else f"only bytes from {lo} on"
        raise ProtocolError(
            ErrorCode.OUTPUT_UNAVAILABLE,
            f"{p.stream.value} of task {p.task_id} from byte {p.offset} is held by node "
            f"{owner}, which is gone (Redis keeps {held})",
            {"node": owner, "retained_from": None if lo < 0 else lo},
        )

    # ------------------------------------------------------------ subscribe

    async def subscribe(self, conn: Conn, p: SubscribeParams) -> Any:
        base = self.base[str(Method.SUBSCRIBE)]
        if conn.engine.live_task(p.task_id) is not None:
            return await base(conn, p)
        known = self._elsewhere(p.task_id)
        rec: dict[str, Any] | None = None
        if known is not None:  # its node has the latest record
            with contextlib.suppress(ProtocolError):
                rec = await self.c.rpc.call(known, str(Method.STATUS), {"task_id": p.task_id})
        if rec is None:
            rec = (await conn.engine.get(p.task_id)).to_dict()  # TASK_NOT_FOUND
        if rec["node"] == self.c.node:
            return await base(conn, p)
        conn.admit_subscription(p.task_id)
        if conn.subscriber.hold_new_tasks:
            conn.subscriber.hold(p.task_id)  # what it reads follows this reply
        offsets = {
            stream: pos
            for stream, pos in (
                (Stream.STDOUT, p.from_offset),
                (Stream.STDERR, p.stderr_from_offset),
            )
            if pos is not None
        }
        await self.c.followers.follow(p.task_id, conn.subscriber, offsets)
        return {k: rec[k] for k in ("task_id", "status", "stdout_bytes", "stderr_bytes")}

    async def unsubscribe(self, conn: Conn, p: UnsubscribeParams) -> Any:
        if self.c.followers.unfollow(p.task_id, conn.subscriber):
            return {"task_id": p.task_id, "unsubscribed": True}
        return await self.base[str(Method.UNSUBSCRIBE)](conn, p)


def _output_reply(rec: TaskRecord, p: OutputParams, data: bytes, total: int) -> dict[str, Any]:
    """The `output` reply, shaped as engine/serving.py shapes it."""
    if p.offset + len(data) < total:
        cut = incomplete_utf8_tail(data)
        if cut and cut < len(data):
            data = data[:-cut]
    text, encoding = encode_data(data)
    return {
        "task_id": rec.task_id,
        "stream": p.stream.value,
        "offset": p.offset,
        "size": len(data),
        "total": total,
        "data": text,
        "encoding": encoding or "utf-8",
        "eof": p.offset + len(data) >= total and rec.status.is_final,
        "status": str(rec.status),
    }
