"""Workspace records: one JSON file per workspace in `<data_dir>/workspaces/`.

A workspace belongs to a task or to a session and is named by its owner's id. Its record is
written before its worktree is created (state `creating`) and rewritten at each change, by
a temporary file and a rename, so after a crash every worktree the service may have made
is listed, and can be removed, whatever state its owner was left in. A removed worktree's
record stays (its diff, saved at removal, beside it as `<id>.diff`). Like everything in the
data dir, they are the user's alone: the directory 0700, the files 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cc_executor.engine.datadir import private_dir
from cc_executor.protocol import WorkspaceKeep

Owner = Literal["task", "session"]
State = Literal["creating", "active", "kept", "removed"]
"""`creating`: its worktree is being made (or was, when the service stopped); `active`: its
task or session runs; `kept`: it ended and the worktree stays; `removed`."""


@dataclass(slots=True)
class Workspace:
    id: str  # its owner's id: a task id or a session id
    owner: Owner
    repo: str  # the top level of the work tree the request's cwd was in
    common_dir: str  # the repository's git dir, shared by all its worktrees
    path: str  # the worktree
    cwd: str  # where the owner runs: the worktree's copy of the request's cwd
    branch: str
    base_ref: str
    base_commit: str
    keep: WorkspaceKeep = "on_change"
    name: str | None = None  # the owner's name
    node: str | None = None  # the engine that made it: the worktree is on its host
    state: State = "creating"
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    removed_at: float | None = None
    changes: dict[str, Any] | None = None  # the last `snapshot.summary`
    branch_deleted: bool = False
    error: str | None = None

    def public(self) -> dict[str, Any]:
        """What task and session records, and `workspace.list`, show of it."""
        d: dict[str, Any] = {
            "id": self.id,
            "owner": self.owner,
            "repo": self.repo,
            "path": self.path,
            "cwd": self.cwd,
            "branch": self.branch,
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "keep": self.keep,
            "node": self.node,
            "state": self.state,
        }
        if self.changes is not None:
            d.update(self.changes)
        if self.state == "removed":
            d["branch_deleted"] = self.branch_deleted
        if self.error:
            d["error"] = self.error
        return d

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workspace:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Registry:
    """The workspace records of one engine (its data dir)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _file(self, ws_id: str, suffix: str = ".json") -> Path:
        if not ws_id or "/" in ws_id or ws_id.startswith("."):
            raise ValueError(f"not a workspace id: {ws_id!r}")
        return self.dir / f"{ws_id}{suffix}"

    def save(self, ws: Workspace) -> None:
        """Write the record durably (a temporary file renamed over the old one)."""
        path = self._file(ws.id)
        self._write(path, json.dumps(ws.to_dict()).encode(), durable=True)

    def _write(self, path: Path, data: bytes, durable: bool = False) -> None:
        private_dir(self.dir)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, ws_id: str) -> Workspace | None:
        try:
            text = self._file(ws_id).read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None
        try:
            return Workspace.from_dict(json.loads(text))
        except (ValueError, TypeError):
            return None

    def all(self) -> list[Workspace]:
        """Every record, newest first."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for p in self.dir.iterdir():
                if p.suffix == ".json" and not p.name.startswith("."):
                    ws = self.get(p.stem)
                    if ws is not None:
                        out.append(ws)
        return sorted(out, key=lambda w: w.created_at, reverse=True)

    def forget(self, ws_id: str) -> None:
        """Drop a record entirely (a creation undone: nothing of it is left)."""
        for suffix in (".json", ".diff"):
            with contextlib.suppress(FileNotFoundError):
                self._file(ws_id, suffix).unlink()

    def save_diff(self, ws_id: str, diff: bytes) -> None:
        self._write(self._file(ws_id, ".diff"), diff)

    def saved_diff(self, ws_id: str) -> bytes:
        """The diff saved when the worktree was removed (empty if it changed nothing)."""
        try:
            return self._file(ws_id, ".diff").read_bytes()
        except (OSError, ValueError):
            return b""
