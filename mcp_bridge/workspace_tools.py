"""The workspace tools: review and clean up the git worktrees sub-agents worked in.

An orchestrating agent starts sub-agents with `workspace: "worktree"` (execute_claude,
execute_task, create_session): each works on its own branch `ccx/<name>` in its own
worktree. These tools read what each one changed (`get_workspace_diff`), list them
(`list_workspaces`) and remove them once merged or dropped (`remove_workspace`); each maps
onto one `workspace.*` method of the service (docs/workspaces.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from cc_executor.protocol import PARAMS, ErrorCode, Method
from cc_executor.transport import ServiceUnavailable
from mcp_bridge.bridge import Bridge
from mcp_bridge.failures import ToolFailure
from mcp_bridge.results import guard, reads

TaskOwner = Annotated[
    str | None,
    Field(
        min_length=1,
        description='The task_id of a task started with workspace "worktree" (a session '
        "turn's task_id names its session's worktree). Give this or session_id.",
    ),
]
SessionOwner = Annotated[
    str | None,
    Field(
        min_length=1,
        description='A session created with workspace "worktree" (its id or name). Give '
        "this or task_id.",
    ),
]


def register_workspaces(mcp: MCPServer, bridge: Bridge) -> None:
    """Add the workspace tools to `mcp`."""

    async def call(method: Method, params: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in params.items() if v is not None}
        PARAMS[method].model_validate(params)  # a clear message before anything is sent
        try:
            return await bridge.call(method, params)
        except ServiceUnavailable as exc:
            raise ToolFailure(
                f"the cc-executor service, which holds the workspaces, is unreachable ({exc})",
                ErrorCode.SERVICE_UNAVAILABLE,
            ) from exc

    @mcp.tool(title="List workspaces", annotations=reads("List workspaces"))
    async def list_workspaces(
        include_removed: Annotated[
            bool, Field(description="Also list workspaces whose worktree was removed.")
        ] = False,
    ) -> CallToolResult:
        """List the git worktrees tasks and sessions work (or worked) in, newest first.

        Each has its owner (task_id or session id, owner "task"/"session", task_status),
        branch (ccx/<name>), path, base_commit, state ("active": its owner runs; "kept":
        it ended and the worktree stays for review; "removed") and, once its owner ended,
        what changed: commits {count, subjects}, files [{path, added, removed,
        uncommitted}], files_changed, uncommitted, changed. A worktree whose task was lost
        in a crash is listed too (task_status "lost"): remove it with remove_workspace.
        """
        return await guard(call(Method.WORKSPACE_LIST, {"include_removed": include_removed}))

    @mcp.tool(title="Read a workspace's diff", annotations=reads("Read a workspace's diff"))
    async def get_workspace_diff(
        task_id: TaskOwner = None,
        session_id: SessionOwner = None,
        offset: Annotated[int, Field(ge=0, description="Byte offset into the diff.")] = 0,
        limit: Annotated[
            int | None,
            Field(ge=1, le=1_048_576, description="Bytes to read (default: max_output_chars)."),
        ] = None,
    ) -> CallToolResult:
        """The unified diff of everything a sub-agent changed in its worktree.

        Use it to review a sub-agent's work before merging it: the diff goes from the
        commit its branch started at (base_commit) to the worktree's files as they are
        now, so it holds its commits and its uncommitted and new files (binary ones as
        git binary patches: `git apply` takes it whole). data is the diff text; page a
        long one with offset=offset+size until eof is true. source "saved" means the
        worktree was removed and this is the diff saved then. To merge committed work,
        merge its branch (e.g. `git merge ccx/<name>`); to take everything, apply the diff.
        """
        params = {"task_id": task_id, "session_id": session_id, "offset": offset}
        params["limit"] = limit or bridge.settings.max_output_chars
        return await guard(call(Method.WORKSPACE_DIFF, params))

    remove_title = "Remove a workspace"

    @mcp.tool(
        title=remove_title,
        annotations=ToolAnnotations(
            title=remove_title,
            read_only_hint=False,
            destructive_hint=True,  # uncommitted files in the worktree are gone after it
            idempotent_hint=True,  # removing it twice leaves the same state
            open_world_hint=False,
        ),
    )
    async def remove_workspace(
        task_id: TaskOwner = None,
        session_id: SessionOwner = None,
        delete_branch: Annotated[
            bool,
            Field(
                description="Also delete its branch even though it holds commits (merge or "
                "drop them first). Without it such a branch is kept."
            ),
        ] = False,
    ) -> CallToolResult:
        """Remove a sub-agent's worktree once its work is merged or not wanted.

        Its task must have ended (a session must be killed first). The worktree goes,
        with any uncommitted files in it (get_workspace_diff still shows the diff saved
        at removal); its branch goes too if it holds no commits, else it is kept unless
        delete_branch. Returns removed, branch, branch_deleted and a message.
        """
        params = {"task_id": task_id, "session_id": session_id, "delete_branch": delete_branch}
        return await guard(call(Method.WORKSPACE_REMOVE, params))
