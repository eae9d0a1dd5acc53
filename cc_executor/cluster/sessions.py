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
from cc_executor.protocol_families import SessionCoordinateParams, SessionListParams

if TYPE_CHECKING:
    from cc_executor.cluster.node import ClusterNode
    from cc_executor.handlers import Conn
    from cc_executor.sessions.records import Session

_TURN_WAIT_MAX_S = 7 * 24 * 3600.0  # a forwarded `session.send` with wait and no timeout
_NAME_LOCK_MS = 10_000  # a create that dies holding the lock frees the name after this

_BY_REF = (Method.SESSION_SEND, Method.SESSION_STATUS, Method.SESSION_LOGS, Method.SESSION_KILL)


async def find_session(cluster: ClusterNode, ref: str) -> tuple[str, str] | None:
    """(session id, label) of a session anywhere in the cluster, by id or name: the sender
    of a message to a session on another node (`SessionManager.find_elsewhere`)."""
    raw = await cluster.redis.hget(keys.SESSIONS, ref)
    if raw:
        name = orjson.loads(raw).get("name")
        return ref, f"{ref} ({name})" if name else ref
    for sid, blob in (await cluster.redis.hgetall(keys.SESSIONS)).items():
        if orjson.loads(blob).get("name") == ref:
            session_id = sid.decode() if isinstance(sid, bytes) else str(sid)
            return session_id, f"{session_id} ({ref})"
    return None


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
    coordinate = str(Method.SESSION_COORDINATE)
    routes[coordinate] = Route(base[coordinate].params_model, r.coordinate)
    return routes


def _local(conn: Conn, ref: str) -> Session | None:
    """This node's session `ref` (by id or name), or None if it has none of that ref."""
    if conn.sessions is None:
        return None
    try:
        return conn.sessions.resolve(ref)
    except ProtocolError as exc:
        if exc.code != ErrorCode.SESSION_NOT_FOUND:
            raise
        return None


class _SessionRoutes:
    def __init__(self, base: dict[str, Route], cluster: ClusterNode) -> None:
        self.base = {name: route.handler for name, route in base.items()}
        self.c = cluster

    def _mark(self, d: dict[str, Any]) -> dict[str, Any]:
        d.setdefault("node", self.c.node)
        return d

    async def create(self, conn: Conn, p: Any) -> Any:
        if p.name is None:
            return await self._create(conn, p)
        lock = keys.session_name_lock(p.name)
        if not await self.c.redis.set(lock, self.c.node, nx=True, px=_NAME_LOCK_MS):
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"a session named {p.name!r} is being created on another node right now",
                {"name": p.name},
            )
        try:
            await self._check_name_free(p.name)
            return await self._create(conn, p)
        finally:
            await self.c.redis.delete(lock)

    async def _create(self, conn: Conn, p: Any) -> Any:
        res = self._mark(await self.base[str(Method.SESSION_CREATE)](conn, p))
        entry = orjson.dumps({"node": self.c.node, "name": res.get("name")})
        await self.c.redis.hset(keys.SESSIONS, res["session_id"], entry)
        return res

    async def _check_name_free(self, name: str) -> None:
        """Refuse a name that an active session on another live node has (this node's own
        sessions are checked by its manager)."""
        found = await self._active_elsewhere(name)
        if found is not None:
            node, session_id = found
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"an active session is already named {name!r} (on node {node})",
                {"name": name, "session_id": session_id, "node": node},
            )

    async def _active_elsewhere(self, name: str) -> tuple[str, str] | None:
        """(node, session id) of an active session of this name on another live node. A
        dead node's sessions cannot run a turn: they do not hold their names."""
        for sid, blob in (await self.c.redis.hgetall(keys.SESSIONS)).items():
            entry = orjson.loads(blob)
            node = entry.get("node")
            if entry.get("name") != name or node == self.c.node:
                continue
            if not await self.c.registry.is_alive(node):
                continue
            session_id = sid.decode() if isinstance(sid, bytes) else str(sid)
            try:
                status = await self.c.rpc.call(
                    node, str(Method.SESSION_STATUS), {"session_id": session_id}
                )
            except ProtocolError:
                continue  # gone, or the session is: it holds nothing
            if status.get("status") != "ended":
                return str(node), session_id
        return None

    async def _holder(self, ref: str) -> str | None:
        """The node that holds the session `ref` (an id, or a name), per Redis."""
        raw = await self.c.redis.hget(keys.SESSIONS, ref)
        if raw:
            return str(orjson.loads(raw)["node"])
        active = await self._active_elsewhere(ref)
        if active is not None:
            return active[0]
        for _, blob in (await self.c.redis.hgetall(keys.SESSIONS)).items():
            entry = orjson.loads(blob)
            if entry.get("name") == ref:
                return str(entry["node"])
        return None

    def by_ref(self, method: Method) -> Handler:
        base = self.base[str(method)]

        async def handler(conn: Conn, p: Any) -> Any:
            here = _local(conn, p.session_id)
            holder = None
            if here is None:
                holder = await self._holder(p.session_id)
            elif here.session_id != p.session_id and not here.is_active:
                # A name: an active session of it elsewhere comes before our ended one.
                found = await self._active_elsewhere(p.session_id)
                if found is not None:
                    holder = found[0]
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
            wait = 120.0
            if method == Method.SESSION_SEND and p.wait:  # the turn may take hours
                wait = p.timeout + 30 if p.timeout is not None else _TURN_WAIT_MAX_S
            res = await self.c.rpc.call(holder, str(method), p.model_dump(mode="json"), wait)
            if method == Method.SESSION_STATUS:
                res.setdefault("node", holder)
            return res

        return handler

    async def coordinate(self, conn: Conn, p: SessionCoordinateParams) -> Any:
        """Served by the node that holds the sessions: they must all live on one node (a
        coordinated run waits on its turns there)."""
        holders: dict[str, list[str]] = {}
        for ref in p.assignments:
            node = self.c.node
            if _local(conn, ref) is None:
                node = await self._holder(ref) or self.c.node  # unknown: said by the base
            holders.setdefault(node, []).append(ref)
        if len(holders) > 1:
            where = "; ".join(f"{', '.join(refs)} on {node}" for node, refs in holders.items())
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"the sessions of one coordinate must live on one node: {where}",
                {"nodes": holders},
            )
        (node,) = holders
        if node == self.c.node:
            return await self.base[str(Method.SESSION_COORDINATE)](conn, p)
        if not await self.c.registry.is_alive(node):
            raise ProtocolError(
                ErrorCode.SERVICE_UNAVAILABLE,
                f"the sessions are held by node {node}, which is gone",
                {"node": node},
            )
        return await self.c.rpc.call(
            node, str(Method.SESSION_COORDINATE), p.model_dump(mode="json"), timeout=p.timeout + 30
        )

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
