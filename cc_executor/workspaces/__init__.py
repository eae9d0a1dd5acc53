"""Workspaces: a git worktree and branch of its own for a task or a session.

`manager.Workspaces` (one per engine, `engine.workspaces`) creates, records and removes
them; `lifecycle` holds the git steps, `snapshot` reads what a worktree changed, `git`
runs git through engine/process.py, `registry` keeps the records on disk and `handlers`
serves the `workspace.*` methods. See docs/workspaces.md.
"""

from cc_executor.workspaces.manager import REQUEST_KEY, Workspaces, request_of
from cc_executor.workspaces.registry import Workspace

__all__ = ["REQUEST_KEY", "Workspace", "Workspaces", "request_of"]
