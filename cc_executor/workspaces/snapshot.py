"""What a workspace changed against its base commit: its commits and its uncommitted files.

The worktree's own index is never touched. Its files are read into a copy of that index
(`GIT_INDEX_FILE`) with `git add -A` (untracked files count, ignored ones do not), whose new
objects go to a scratch object directory (`GIT_OBJECT_DIRECTORY`, the repository's objects
as an alternate): reading a workspace writes nothing into the user's repository. The
`write-tree` of that index is the worktree's whole state; the diff and the per-file line
counts are `git diff <base_commit> <that tree>`, and a file whose state differs from the
worktree's HEAD is flagged `uncommitted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cc_executor.workspaces.git import Git, GitError
from cc_executor.workspaces.registry import Workspace

MAX_FILES = 500
"""Files listed in a record; `files_changed` counts them all (the diff has every one)."""
MAX_SUBJECTS = 50

_DIFF_OPTS = (
    "--no-renames",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)
"""The same diff whatever the user's git config says (colours, external tools, prefixes)."""


@dataclass(frozen=True, slots=True)
class State:
    """A worktree's state, readable while the `state_of` block lasts."""

    tree: str  # its files (tracked and untracked, not ignored) as a tree
    head: str  # its HEAD commit
    env: dict[str, str]  # the scratch index and objects that hold `tree`


@contextlib.asynccontextmanager
async def state_of(git: Git, ws: Workspace, scratch: Path) -> AsyncIterator[State]:
    """Read the worktree's files into a scratch index and objects (see the module doc)."""
    if not await asyncio.to_thread(os.path.isdir, ws.path):
        raise GitError(f"the worktree {ws.path} is gone", {"path": ws.path})
    tmp = Path(await asyncio.to_thread(_scratch_dir, scratch))
    try:
        git_dir = await git.out(["rev-parse", "--path-format=absolute", "--git-dir"], ws.path)
        head = await git.out(["rev-parse", "--verify", "HEAD^{commit}"], ws.path)
        index = tmp / "index"
        objects = tmp / "objects"
        await asyncio.to_thread(objects.mkdir)
        copied = await asyncio.to_thread(_copy_if_there, Path(git_dir) / "index", index)
        env = {
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(Path(ws.common_dir) / "objects"),
        }
        if not copied:
            await git.out(["read-tree", head], ws.path, env)
        await git.out(["add", "-A"], ws.path, env)
        tree = await git.out(["write-tree"], ws.path, env)
        yield State(tree, head, env)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def _scratch_dir(parent: Path) -> str:
    parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="state-", dir=parent)


def _copy_if_there(src: Path, dst: Path) -> bool:
    try:
        shutil.copyfile(src, dst)
    except FileNotFoundError:
        return False
    return True


async def diff(git: Git, ws: Workspace, st: State) -> bytes:
    """The unified diff (binary files included, applicable with `git apply`) from the base
    commit to the worktree's state."""
    res = await git.run(["diff", "--binary", *_DIFF_OPTS, ws.base_commit, st.tree], ws.path, st.env)
    if not res.ok:
        raise GitError(f"git diff failed in {ws.path}: {res.reason()}")
    return res.stdout


async def summary(git: Git, ws: Workspace, st: State) -> dict[str, Any]:
    """What changed: `commits` {count, subjects}, `files` [{path, added, removed,
    uncommitted, binary?}], `files_changed`, `lines_added`, `lines_removed`, `uncommitted`,
    and `changed` (anything at all: a commit, a file, a moved HEAD)."""
    numstat = await git.run(
        ["diff", "--numstat", "-z", *_DIFF_OPTS, ws.base_commit, st.tree], ws.path, st.env
    )
    dirty = await git.run(
        ["diff", "--name-only", "-z", *_DIFF_OPTS, st.head, st.tree], ws.path, st.env
    )
    for res in (numstat, dirty):
        if not res.ok:
            raise GitError(f"git diff failed in {ws.path}: {res.reason()}")
    uncommitted = {p for p in dirty.stdout.decode("utf-8", "surrogateescape").split("\0") if p}
    files: list[dict[str, Any]] = []
    added = removed = 0
    for entry in numstat.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        plus, minus, path = entry.split("\t", 2)
        f: dict[str, Any] = {"path": path, "uncommitted": path in uncommitted}
        if plus == "-":
            f.update(added=None, removed=None, binary=True)
        else:
            f.update(added=int(plus), removed=int(minus))
            added += int(plus)
            removed += int(minus)
        files.append(f)
    count, subjects = await _commits(git, ws, st.head)
    d: dict[str, Any] = {
        "commits": {"count": count, "subjects": subjects},
        "files": files[:MAX_FILES],
        "files_changed": len(files),
        "lines_added": added,
        "lines_removed": removed,
        "uncommitted": bool(uncommitted),
        "changed": bool(files) or count > 0 or st.head != ws.base_commit,
    }
    if len(files) > MAX_FILES:
        d["files_truncated"] = True
    return d


async def _commits(git: Git, ws: Workspace, head: str) -> tuple[int, list[str]]:
    """The commits on the workspace's branch since its base (its HEAD's, if the branch is
    gone), newest first."""
    tip = await git.run(["rev-parse", "--verify", "--quiet", f"refs/heads/{ws.branch}"], ws.path)
    ref = tip.text() if tip.ok else head
    span = f"{ws.base_commit}..{ref}"
    count = int(await git.out(["rev-list", "--count", span, "--"], ws.path))
    log = await git.run(
        ["log", f"--max-count={MAX_SUBJECTS}", "--format=%s%x00", "--no-color", span, "--"],
        ws.path,
    )
    subjects = [s.strip("\n") for s in log.text().split("\0") if s.strip("\n")] if log.ok else []
    return count, subjects
