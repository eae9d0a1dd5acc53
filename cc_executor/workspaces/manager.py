"""The workspaces of one engine: a git worktree per task or session that asks for one.

`Workspaces` creates a worktree (on a new branch `ccx/<name or id>`) before its owner runs,
records what changed when a task or a session's turn ends, and keeps or removes it by its
`keep` policy. The engine runs `pre_execute` / `post_execute` as its last pre-execute and
first post-execute hooks, so every front end (service, bridge fallback, Python API)
gets worktrees the same way; sessions call `create` and `finish` themselves.

Creation is atomic per owner: the repository's lock (one per repository in this process)
is held from the first check to the new worktree, git's own locks are waited for
(`Git.run_locked`), and anything a failed creation made is removed before the error goes
out. A worktree is removed only once its owner ended; a branch holding commits survives
its worktree unless `delete_branch` is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cc_executor.engine.records import TaskRecord
from cc_executor.gitnames import BRANCH_PREFIX
from cc_executor.protocol import (
    ErrorCode,
    ProtocolError,
    WorkspaceKeep,
    WorkspaceOptions,
)
from cc_executor.workspaces import lifecycle, snapshot
from cc_executor.workspaces.git import Git, GitError
from cc_executor.workspaces.registry import Owner, Registry, Workspace

if TYPE_CHECKING:
    from cc_executor.engine.engine import Engine

log = logging.getLogger(__name__)

REQUEST_KEY = "workspace_request"
"""The spec field (`TaskSpec.extra`) of a task that asked for a worktree; the pre-execute
hook replaces it with the record's `workspace`."""

_DIFF_CACHE = 4  # diffs kept in memory, by worktree state: the pages of one diff agree


def request_of(params: WorkspaceOptions) -> dict[str, Any]:
    """The spec fields of a task's workspace request (none for workspace "cwd")."""
    if params.workspace != "worktree":
        return {}
    return {REQUEST_KEY: {"keep": params.workspace_keep, "base_ref": params.base_ref}}


class Workspaces:
    def __init__(self, engine: Engine) -> None:
        s = engine.settings
        self.engine = engine
        self.root = Path(os.path.abspath(s.worktrees_dir.expanduser()))  # git runs elsewhere
        self.root_configured = s.workspace_dir is not None
        self.registry = Registry(s.data_dir / "workspaces")
        self.scratch = s.data_dir / "workspaces" / ".scratch"
        self.git = Git(grace=s.kill_grace_seconds, lock_wait=s.workspace_lock_wait_seconds)
        self._repo_locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()  # workspaces being created or removed right now
        self._diffs: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def _lock(self, common_dir: str) -> asyncio.Lock:
        return self._repo_locks.setdefault(os.path.realpath(common_dir), asyncio.Lock())

    # ------------------------------------------------------------------ engine hooks

    async def pre_execute(self, record: TaskRecord) -> None:
        """A task that asked for a worktree gets it now; it runs in the worktree's cwd."""
        req = record.extra.pop(REQUEST_KEY, None)
        if req is None:
            return
        ws = await self.create(
            "task",
            record.task_id,
            name=record.name,
            cwd=record.cwd,
            base_ref=req["base_ref"],
            keep=req["keep"],
        )
        try:
            # The engine checks capacity once more right after its last hook (this one):
            # refuse here, where the worktree can still be undone. (The local queue's
            # check does not wait; a cluster's may ask Redis.)
            await self.engine.queue.check_capacity()
        except BaseException:
            await asyncio.shield(self.discard(ws))
            raise
        record.cwd = ws.cwd
        record.extra["workspace"] = ws.public()

    async def post_execute(self, record: TaskRecord) -> None:
        """The record gains what changed; a task's own worktree is kept or removed."""
        info = record.extra.get("workspace")
        if not isinstance(info, dict) or not isinstance(info.get("id"), str):
            return
        ws = await asyncio.to_thread(self.registry.get, info["id"])
        if ws is None:
            return
        try:
            if ws.owner == "task" and ws.id == record.task_id:
                ws = await self.finish(ws)
            else:  # a session's turn: the session's worktree as this turn left it
                ws = await self.refresh(ws)
        except Exception as exc:
            log.exception("workspace %s: recording what changed failed", ws.id)
            ws.error = f"recording what changed failed: {exc}"
        record.extra["workspace"] = ws.public()

    # ------------------------------------------------------------------ create

    async def create(
        self,
        owner: Owner,
        owner_id: str,
        *,
        name: str | None,
        cwd: str | None,
        base_ref: str | None,
        keep: WorkspaceKeep,
    ) -> Workspace:
        """A new worktree of the repository holding `cwd` on branch ccx/<name or id>."""
        cwd = cwd or os.getcwd()  # a task's cwd is absolute (tasks.check_cwd)
        # The request's name for cwd: session.create calls it working_dir.
        src = await lifecycle.locate(self.git, cwd, "working_dir" if owner == "session" else "cwd")
        path = self.root / f"{Path(src.toplevel).name}-{owner_id}"
        lifecycle.check_location(path, src, self.root_configured)
        branch = BRANCH_PREFIX + (name or owner_id)
        self._busy.add(owner_id)
        try:
            async with self._lock(src.common_dir):
                commit = await lifecycle.base_commit(self.git, src, base_ref)
                await lifecycle.check_new_branch(self.git, src, branch, name)
                await lifecycle.check_subdir(self.git, src, commit)
                ws = Workspace(
                    id=owner_id,
                    owner=owner,
                    name=name,
                    repo=src.toplevel,
                    common_dir=src.common_dir,
                    path=str(path),
                    cwd=str(path / src.prefix) if src.prefix else str(path),
                    branch=branch,
                    base_ref=base_ref or "HEAD",
                    base_commit=commit,
                    keep=keep,
                    node=self.engine.node,
                )
                await asyncio.to_thread(self.registry.save, ws)  # listed from now on
                try:
                    await lifecycle.add_worktree(self.git, ws, src)
                    ws.state = "active"
                    await asyncio.to_thread(self.registry.save, ws)
                except BaseException as exc:
                    # A branch someone made since our check is theirs: it stays.
                    theirs = isinstance(exc, GitError) and "already exists" in exc.message
                    await asyncio.shield(self._undo(ws, branch_ours=not theirs))
                    raise
        finally:
            self._busy.discard(owner_id)
        log.info(
            "workspace created",
            extra={"workspace": ws.id, "branch": ws.branch, "path": ws.path, "repo": ws.repo},
        )
        return ws

    async def discard(self, ws: Workspace) -> None:
        """Undo a creation whose owner never ran (refused after its worktree was made)."""
        async with self._lock(ws.common_dir):
            await self._undo(ws)

    async def _undo(self, ws: Workspace, branch_ours: bool = True) -> None:
        try:
            await lifecycle.remove_worktree(self.git, ws, self.root)
            if branch_ours and await lifecycle.branch_tip(self.git, ws) == ws.base_commit:
                await lifecycle.delete_branch(self.git, ws, ws.base_commit)
        except Exception:
            log.exception("undoing workspace %s failed: it stays listed", ws.id)
            ws.error = "its creation failed and could not be undone fully"
            await asyncio.to_thread(self.registry.save, ws)
            return
        await asyncio.to_thread(self.registry.forget, ws.id)

    # ------------------------------------------------------------------ what changed

    async def refresh(self, ws: Workspace) -> Workspace:
        """Record what the worktree holds now (its owner goes on)."""
        async with snapshot.state_of(self.git, ws, self.scratch) as st:
            ws.changes = await snapshot.summary(self.git, ws, st)
        await asyncio.to_thread(self.registry.save, ws)
        return ws

    async def diff(self, ws: Workspace) -> tuple[bytes, str]:
        """The whole diff from the base commit, and where it came from: `worktree` (as the
        files are now) or `saved` (at the worktree's removal)."""
        if ws.state == "removed" or not await asyncio.to_thread(os.path.isdir, ws.path):
            return await asyncio.to_thread(self.registry.saved_diff, ws.id), "saved"
        async with snapshot.state_of(self.git, ws, self.scratch) as st:
            key = (ws.id, ws.base_commit, st.tree)
            data = self._diffs.get(key)
            if data is None:
                data = await snapshot.diff(self.git, ws, st)
                self._diffs[key] = data
                while len(self._diffs) > _DIFF_CACHE:
                    self._diffs.popitem(last=False)
            self._diffs.move_to_end(key)
        return data, "worktree"

    # ------------------------------------------------------------------ end and removal

    async def finish(self, ws: Workspace) -> Workspace:
        """Its owner ended: record what changed, then keep or remove it by its policy."""
        ws.ended_at = time.time()
        try:
            await self.refresh(ws)
        except GitError as exc:
            ws.error = exc.message
        changed = ws.changes is None or ws.changes.get("changed", True)
        if ws.keep == "always" or (ws.keep == "on_change" and changed):
            ws.state = "kept"
            await asyncio.to_thread(self.registry.save, ws)
            return ws
        return await self.remove(ws, just_refreshed=True)

    async def finish_session(self, session_id: str) -> Workspace | None:
        """A session ended: its worktree is kept or removed like a task's."""
        ws = await asyncio.to_thread(self.registry.get, session_id)
        if ws is None or ws.owner != "session" or ws.state != "active":
            return ws
        try:
            return await self.finish(ws)
        except Exception as exc:
            log.exception("workspace %s: finishing failed", ws.id)
            ws.error = f"finishing failed: {exc}"
            ws.state = "kept"
            await asyncio.to_thread(self.registry.save, ws)
            return ws

    async def remove(
        self, ws: Workspace, delete_branch: bool = False, *, just_refreshed: bool = False
    ) -> Workspace:
        """Remove the worktree (its diff is saved first) and its branch when that holds no
        commits (or `delete_branch`), unless it is checked out somewhere."""
        self._busy.add(ws.id)
        try:
            async with self._lock(ws.common_dir):
                if not (just_refreshed and ws.changes and not ws.changes.get("changed")):
                    await self._save_diff(ws)
                await lifecycle.remove_worktree(self.git, ws, self.root)
                tip = await lifecycle.branch_tip(self.git, ws)
                ws.branch_deleted = tip is None
                if tip is not None and (tip == ws.base_commit or delete_branch):
                    ws.branch_deleted = await lifecycle.delete_branch(self.git, ws, tip)
                ws.state = "removed"
                ws.removed_at = time.time()
                await asyncio.to_thread(self.registry.save, ws)
        finally:
            self._busy.discard(ws.id)
        log.info(
            "workspace removed",
            extra={"workspace": ws.id, "branch": ws.branch, "branch_deleted": ws.branch_deleted},
        )
        return ws

    async def drop_branch(self, ws: Workspace) -> Workspace:
        """Delete the branch of a removed worktree (asked for: it may hold commits)."""
        async with self._lock(ws.common_dir):
            tip = await lifecycle.branch_tip(self.git, ws)
            ws.branch_deleted = tip is None or await lifecycle.delete_branch(self.git, ws, tip)
            await asyncio.to_thread(self.registry.save, ws)
        return ws

    async def _save_diff(self, ws: Workspace) -> None:
        try:
            data, _ = await self.diff(ws)
        except GitError:
            return  # the worktree is broken or gone: nothing to read
        if data:
            await asyncio.to_thread(self.registry.save_diff, ws.id, data)

    async def check_removable(self, ws: Workspace) -> None:
        """INVALID_STATE while its owner may still use it."""
        if ws.id in self._busy:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"workspace {ws.id} is being created or removed"
            )
        if ws.owner == "session":
            if ws.state == "active":
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"session {ws.id} is active and works in this worktree: kill it first",
                )
            return
        status = await self.owner_status(ws)
        if status is not None and not status.is_final:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"task {ws.id} is {status}: its worktree can be removed once it ends",
            )

    async def owner_status(self, ws: Workspace) -> Any:
        """The owning task's status (None if no record of it exists), for task workspaces."""
        if ws.owner != "task":
            return None
        try:
            return (await self.engine.get(ws.id)).status
        except ProtocolError:
            return None  # the task was never recorded (a crash while it was created)

    # ------------------------------------------------------------------ lookups

    async def find(self, task_id: str | None, session_id: str | None) -> Workspace:
        """The workspace of a task (or of the session whose turn it was) or of a session."""
        if task_id is not None:
            ws = await asyncio.to_thread(self.registry.get, task_id)
            if ws is not None:
                return ws
            rec = await self.engine.get(task_id)  # TASK_NOT_FOUND for unknown ids
            info = rec.extra.get("workspace")
            ws_id = info.get("id") if isinstance(info, dict) else None
            ws = await asyncio.to_thread(self.registry.get, ws_id) if ws_id else None
            if ws is None:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS,
                    f'task {task_id} did not run in a worktree (workspace "cwd")',
                )
            return ws
        assert session_id is not None
        ws = await asyncio.to_thread(self.registry.get, session_id)
        if ws is None:
            named = [
                w
                for w in await asyncio.to_thread(self.registry.all)
                if w.owner == "session" and w.name == session_id and w.state != "removed"
            ]
            ws = named[0] if len(named) == 1 else None
        if ws is None or ws.owner != "session":
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"session {session_id!r} has no worktree (unknown, or not created with "
                f'workspace "worktree")',
            )
        return ws

    async def listing(self, include_removed: bool) -> list[dict[str, Any]]:
        out = []
        for ws in await asyncio.to_thread(self.registry.all):
            if ws.state == "removed" and not include_removed:
                continue
            d = ws.public()
            status = await self.owner_status(ws)
            d.update(
                name=ws.name,
                exists=await asyncio.to_thread(os.path.isdir, ws.path),
                created_at=ws.created_at,
                ended_at=ws.ended_at,
                removed_at=ws.removed_at,
                task_status=None if status is None else str(status),
            )
            out.append(d)
        return out
