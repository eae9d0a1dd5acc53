"""Workspaces in a cluster: a worktree is on the disk of the node that made it, the node
that runs its task (a worktree task is pinned there, cluster/routing.py) or holds its
session; `node` in its record says which. A `workspace.diff` or `workspace.remove` on
another node is forwarded there; if that node is gone, the call says so, naming it (nodes
share no disk). `workspace.list` asks every live node and merges the answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from cc_executor.cluster import keys
from cc_executor.jsonrpc import Handler, Route
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.protocol_families import WorkspaceListParams, WorkspaceRef

if TYPE_CHECKING:
    from cc_executor.cluster.node import ClusterNode
    from cc_executor.handlers import Conn

_BY_OWNER = (Method.WORKSPACE_DIFF, Method.WORKSPACE_REMOVE)


def workspace_routes(base: dict[str, Route], cluster: ClusterNode) -> dict[str, Route]:
    """The workspace.* routes of a cluster node."""
    r = _WorkspaceRoutes(base, cluster)
    listing = str(Method.WORKSPACE_LIST)
    routes = {listing: Route(base[listing].params_model, r.list)}
    for method in _BY_OWNER:
        routes[str(method)] = Route(base[str(method)].params_model, r.by_owner(method))
    return routes


class _WorkspaceRoutes:
    def __init__(self, base: dict[str, Route], cluster: ClusterNode) -> None:
        self.base = {name: route.handler for name, route in base.items()}
        self.c = cluster

    async def _holder(self, conn: Conn, p: WorkspaceRef) -> str | None:
        """The node whose disk holds the workspace asked for; None when it is this one's,
        or when no node is known (the base handler then says what is wrong)."""
        try:
            await conn.engine.workspaces.find(p.task_id, p.session_id)
            return None
        except ProtocolError as exc:
            if exc.code != ErrorCode.INVALID_PARAMS:
                raise  # an unknown task: TASK_NOT_FOUND, as on one host
        if p.task_id is not None:
            info = (await conn.engine.get(p.task_id)).extra.get("workspace")
            node = info.get("node") if isinstance(info, dict) else None
            return str(node) if node else None
        assert p.session_id is not None
        raw = await self.c.redis.hget(keys.SESSIONS, p.session_id)
        if raw:
            return str(orjson.loads(raw)["node"])
        for blob in (await self.c.redis.hgetall(keys.SESSIONS)).values():
            entry = orjson.loads(blob)
            if entry.get("name") == p.session_id and entry.get("node") != self.c.node:
                return str(entry["node"])
        return None

    def by_owner(self, method: Method) -> Handler:
        base = self.base[str(method)]

        async def handler(conn: Conn, p: WorkspaceRef) -> Any:
            holder = await self._holder(conn, p)
            if holder is None or holder == self.c.node:
                return await base(conn, p)
            if not await self.c.registry.is_alive(holder):
                owner = f"task {p.task_id}" if p.task_id else f"session {p.session_id}"
                raise ProtocolError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    f"the worktree of {owner} is on node {holder}, which is gone: it is on "
                    "that host's disk",
                    {"node": holder},
                )
            params = p.model_dump(mode="json", exclude_none=True)
            return await self.c.rpc.call(holder, str(method), params)

        return handler

    async def list(self, conn: Conn, p: WorkspaceListParams) -> Any:
        res = await self.base[str(Method.WORKSPACE_LIST)](conn, p)
        for info in await self.c.nodes():
            if not info["alive"] or info["node"] == self.c.node:
                continue
            try:
                other = await self.c.rpc.call(
                    info["node"], str(Method.WORKSPACE_LIST), p.model_dump(mode="json")
                )
            except ProtocolError:
                continue  # gone since: its worktrees are not reachable
            res["workspaces"].extend(other["workspaces"])
        res["workspaces"].sort(key=lambda w: w.get("created_at") or 0, reverse=True)
        return res
