"""Sessions in a cluster: each session lives on the node that created it, where its turns
run and its Claude transcript (`~/.claude/projects/...`) is written; `node` in its record
says which. A `session.*` call on another node is forwarded there. If that node is gone,
the call says so, naming it: the transcript is on that host (nodes share no disk).

`keys.SESSIONS` maps each session id to its node and name, so any node can find it.
`session.list` asks every live node and merges the answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from cc_executor.cluster import keys
from cc_executor.jsonrpc import Handler, Route
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.protocol_families import SessionListParams

if TYPE_CHECKING:
    from cc_executor.cluster.node import ClusterNode
    from cc_executor.handlers import Conn

_BY_REF = (Method.SESSION_SEND, Method.SESSION_STATUS, Method.SESSION_LOGS, Method.SESSION_KILL)


def session_routes(base: dict[str, Route], cluster: ClusterNode) -> dict[str, Route]:
    """The session.* routes of a cluster node (the others are left as they are)."""
    r = _SessionRoutes(base, cluster)
    routes: dict[str, Route] = {}
    routes[str(Method.SESSION_CREATE)] = Route(
        base[str(Method.SESSION_CREATE)].params_model, r.create
    )
    routes[str(Method.SESSION_LIST)] = Route(base[str(Method.SESSION_LIST)].params_model, r.list)
    for method in _BY_REF:
        routes[str(method)] = Route(base[str(method)].params_model, r.by_ref(method))
    return routes


class _SessionRoutes:
    def __init__(self, base: dict[str, Route], cluster: ClusterNode) -> None:
        self.base = {name: route.handler for name, route in base.items()}
        self.c = cluster

    def _mark(self, d: dict[str, Any]) -> dict[str, Any]:
        d.setdefault("node", self.c.node)
        return d

    async def create(self, conn: Conn, p: Any) -> Any:
        res = self._mark(await self.base[str(Method.SESSION_CREATE)](conn, p))
        entry = orjson.dumps({"node": self.c.node, "name": res.get("name")})
        await self.c.redis.hset(keys.SESSIONS, res["session_id"], entry)
        return res

    async def _holder(self, ref: str) -> str | None:
        """The node that holds the session `ref` (an id, or a name), per Redis."""
        raw = await self.c.redis.hget(keys.SESSIONS, ref)
        if raw:
            return str(orjson.loads(raw)["node"])
        for _, blob in (await self.c.redis.hgetall(keys.SESSIONS)).items():
            entry = orjson.loads(blob)
            if entry.get("name") == ref:
                return str(entry["node"])
        return None

    def by_ref(self, method: Method) -> Handler:
        base = self.base[str(method)]

        async def handler(conn: Conn, p: Any) -> Any:
            manager = conn.sessions
            local = True
            if manager is not None:
                try:
                    manager.resolve(p.session_id)
                except ProtocolError as exc:
                    if exc.code != ErrorCode.SESSION_NOT_FOUND:
                        raise
                    local = False
            holder = None if local else await self._holder(p.session_id)
            if holder is None or holder == self.c.node:
                res = await base(conn, p)
                return self._mark(res) if method == Method.SESSION_STATUS else res
            if not await self.c.registry.is_alive(holder):
                raise ProtocolError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    f"session {p.session_id!r} is held by node {holder}, which is gone: its "
                    "Claude transcript is on that host; start it again there, or create a "
                    "new session",
                    {"session_id": p.session_id, "node": holder},
                )
            res = await self.c.rpc.call(holder, str(method), p.model_dump(mode="json"))
            if method == Method.SESSION_STATUS:
                res.setdefault("node", holder)
            return res

        return handler

    async def list(self, conn: Conn, p: SessionListParams) -> Any:
        res = await self.base[str(Method.SESSION_LIST)](conn, p)
        for s in res["sessions"]:
            self._mark(s)
        for info in await self.c.nodes():
            if not info["alive"] or info["node"] == self.c.node:
                continue
            try:
                other = await self.c.rpc.call(
                    info["node"], str(Method.SESSION_LIST), {"include_ended": p.include_ended}
                )
            except ProtocolError:
                continue  # gone since: its sessions are not reachable
            for s in other["sessions"]:
                s.setdefault("node", info["node"])
            res["sessions"].extend(other["sessions"])
            res["total"] += other["total"]
            res["active"] += other["active"]
        res["sessions"].sort(key=lambda s: s.get("created_at", 0))
        return res
