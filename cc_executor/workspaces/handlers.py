"""One handler per `workspace.*` method. Handlers build replies; `Workspaces` acts.

`WORKSPACE_ROUTES` maps each method to its params model and handler; `cc_executor.handlers`
merges it into `ROUTES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cc_executor import jsonrpc
from cc_executor.engine.output import encode_data, incomplete_utf8_tail
from cc_executor.protocol import (
    PARAMS,
    Method,
    WorkspaceDiffParams,
    WorkspaceListParams,
    WorkspaceRemoveParams,
)
from cc_executor.workspaces.manager import Workspaces
from cc_executor.workspaces.registry import Workspace

if TYPE_CHECKING:
    from cc_executor.handlers import Conn


def _workspaces(conn: Conn) -> Workspaces:
    ws: Workspaces = conn.engine.workspaces
    return ws


def _owner(ws: Workspace) -> dict[str, Any]:
    return {"task_id": ws.id} if ws.owner == "task" else {"session_id": ws.id}


async def workspace_list(conn: Conn, p: WorkspaceListParams) -> dict[str, Any]:
    return {"workspaces": await _workspaces(conn).listing(p.include_removed)}


async def workspace_diff(conn: Conn, p: WorkspaceDiffParams) -> dict[str, Any]:
    """A byte-exact slice of the workspace's diff, shaped like an `output` reply."""
    spaces = _workspaces(conn)
    ws = await spaces.find(p.task_id, p.session_id)
    diff, source = await spaces.diff(ws)
    total = len(diff)
    data = diff[p.offset : p.offset + p.limit]
    if p.offset + len(data) < total:
        cut = incomplete_utf8_tail(data)  # keep text text: never end inside a character
        if cut and cut < len(data):
            data = data[:-cut]
    text, encoding = encode_data(data)
    return {
        **_owner(ws),
        "branch": ws.branch,
        "base_commit": ws.base_commit,
        "source": source,
        "offset": p.offset,
        "size": len(data),
        "total": total,
        "data": text,
        "encoding": encoding or "utf-8",
        "eof": p.offset + len(data) >= total,
    }


async def workspace_remove(conn: Conn, p: WorkspaceRemoveParams) -> dict[str, Any]:
    spaces = _workspaces(conn)
    ws = await spaces.find(p.task_id, p.session_id)
    reply: dict[str, Any] = {**_owner(ws), "branch": ws.branch, "path": ws.path}
    if ws.state == "removed":
        if p.delete_branch and not ws.branch_deleted:
            ws = await spaces.drop_branch(ws)
        return {
            **reply,
            "removed": False,
            "branch_deleted": ws.branch_deleted,
            "message": "its worktree was already removed",
        }
    await spaces.check_removable(ws)
    ws = await spaces.remove(ws, p.delete_branch)
    reply.update(removed=True, branch_deleted=ws.branch_deleted)
    if not ws.branch_deleted:
        reply["message"] = (
            f"branch {ws.branch} holds work (or is checked out) and was kept; "
            "delete_branch deletes it"
        )
    return reply


_HANDLERS: dict[str, jsonrpc.Handler] = {
    Method.WORKSPACE_LIST: workspace_list,
    Method.WORKSPACE_DIFF: workspace_diff,
    Method.WORKSPACE_REMOVE: workspace_remove,
}

WORKSPACE_ROUTES: dict[str, jsonrpc.Route] = {
    str(name): jsonrpc.Route(PARAMS[name], handler) for name, handler in _HANDLERS.items()
}
