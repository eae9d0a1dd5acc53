"""The git steps of a workspace's life: find the repository, pick the base, add the
worktree and its branch, remove them. Stateless; `manager.Workspaces` orders the steps,
holds the repository's lock around them and keeps the records.

Every check that can refuse a request runs before anything is created, and a failed
creation is undone (`remove_worktree`, `delete_branch` at its base commit), so a refused
request leaves nothing behind. A branch is deleted only while it still points at the
commit it is expected to (`update-ref -d <ref> <old>`, atomic in git) and is checked out
nowhere: a commit made meanwhile keeps it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cc_executor.protocol import ErrorCode, ProtocolError
from cc_executor.workspaces.git import Git, GitError
from cc_executor.workspaces.registry import Workspace


def _refuse(message: str, **data: object) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_PARAMS, message, data or None)


@dataclass(frozen=True, slots=True)
class Source:
    """The repository a request's cwd is in."""

    toplevel: str  # the top of the work tree holding cwd
    common_dir: str  # the repository's git dir
    prefix: str  # cwd relative to toplevel ("" at the top, else ending in "/")


async def locate(git: Git, cwd: str) -> Source:
    """The repository holding `cwd`, or INVALID_PARAMS saying why there is none."""
    res = await git.run(
        ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"], cwd
    )
    if not res.ok:
        why = res.reason()
        if "must be run in a work tree" in why:
            raise _refuse(f"cwd {cwd!r} is inside a git directory, not a work tree", cwd=cwd)
        if "not a git repository" in why:
            raise _refuse(
                f'cwd {cwd!r} is not inside a git repository: workspace "worktree" needs one',
                cwd=cwd,
            )
        raise GitError(f"cannot read the repository of {cwd!r}: {why}", {"cwd": cwd})
    toplevel, common_dir = res.text().split("\n")[:2]
    prefix = (await git.out(["rev-parse", "--show-prefix"], cwd)).strip()
    if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
        raise _refuse(f"cwd {cwd!r} is not inside the work tree {toplevel}", cwd=cwd)
    return Source(toplevel, common_dir, prefix)


async def base_commit(git: Git, src: Source, base_ref: str | None) -> str:
    """The commit a new worktree starts from: `base_ref`, or HEAD with a clean index."""
    top = src.toplevel
    if base_ref is not None:
        res = await git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{base_ref}^{{commit}}"],
            top,
        )
        if not res.ok:
            raise _refuse(f"base_ref {base_ref!r} names no commit in {top}", base_ref=base_ref)
        return res.text()
    res = await git.run(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], top)
    if not res.ok:
        raise _refuse(f"the repository {top} has no commit yet: commit something first", cwd=top)
    staged = await git.run(["diff", "--cached", "--quiet", "--no-ext-diff", "HEAD", "--"], top)
    if staged.code == 1:
        raise _refuse(
            f"the repository {top} has staged changes, which a worktree from HEAD would not "
            "hold: commit or unstage them, or give base_ref",
            cwd=top,
        )
    if not staged.ok:
        raise GitError(f"cannot read the index of {top}: {staged.reason()}")
    return res.text()


async def check_new_branch(git: Git, src: Source, branch: str) -> None:
    res = await git.run(["check-ref-format", "--branch", branch], src.toplevel)
    if not res.ok:
        raise _refuse(f"{branch!r} is not a valid branch name", branch=branch)
    res = await git.run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], src.toplevel)
    if res.ok:
        raise _refuse(
            f"branch {branch} already exists in {src.toplevel}: give it another name",
            branch=branch,
        )


async def check_subdir(git: Git, src: Source, commit: str) -> None:
    """The task runs in the worktree's copy of cwd: the base commit must hold that directory."""
    if not src.prefix:
        return
    sub = src.prefix.rstrip("/")
    res = await git.run(["cat-file", "-t", f"{commit}:{sub}"], src.toplevel)
    if res.text() != "tree":
        raise _refuse(
            f"directory {sub}/ (cwd) is not in commit {commit[:12]}: a worktree of it would "
            "not have it; run from a directory the commit holds",
            cwd=os.path.join(src.toplevel, sub),
        )


def check_location(path: Path, src: Source, configured: bool) -> None:
    """Worktrees go outside the user's repository unless `workspace_dir` says otherwise."""
    if configured:
        return
    top = Path(src.toplevel)
    if path.resolve().is_relative_to(top) or path.resolve().is_relative_to(
        Path(src.common_dir).resolve()
    ):
        raise _refuse(
            f"the worktree {path} would be inside the repository {top}: set workspace_dir "
            "(or data_dir) to a directory outside it",
            path=str(path),
        )


async def add_worktree(git: Git, ws: Workspace, src: Source) -> None:
    """`git worktree add -b <branch> -- <path> <base_commit>`: branch and worktree at once.
    The directory they go in is 0700: the user's code is theirs alone, as the data dir is."""
    await asyncio.to_thread(Path(ws.path).parent.mkdir, mode=0o700, parents=True, exist_ok=True)
    res = await git.run_locked(
        ["worktree", "add", "--quiet", "-b", ws.branch, "--", ws.path, ws.base_commit],
        src.toplevel,
    )
    if not res.ok:
        raise GitError(
            f"git could not create the worktree {ws.path}: {res.reason()}",
            {"stderr": res.stderr[-2000:]},
        )


def _repo_dir(ws: Workspace) -> str | None:
    """Where to run git about this workspace's repository: its work tree, else its git dir
    (None: the repository is gone)."""
    for d in (ws.repo, ws.common_dir):
        if os.path.isdir(d):
            return d
    return None


async def remove_worktree(git: Git, ws: Workspace, root: Path) -> None:
    """Remove the worktree (its uncommitted files too) and git's record of it."""
    where = await asyncio.to_thread(_repo_dir, ws)
    if where is None:
        # The repository itself is gone: only our directory is left to remove.
        await asyncio.to_thread(_rmtree_ours, ws.path, root)
        return
    res = await git.run_locked(["worktree", "remove", "--force", "--force", "--", ws.path], where)
    if res.ok:
        return
    # Not a worktree git could remove (a creation cut short, a directory removed by hand):
    # remove what is ours; if git still lists it, let git forget worktrees that are gone.
    names = await asyncio.to_thread(_rmtree_ours, ws.path, root)
    listed = await git.out(["worktree", "list", "--porcelain"], where)
    if not {f"worktree {n}" for n in names} & set(listed.splitlines()):
        return
    prune = await git.run_locked(["worktree", "prune"], where)
    if not prune.ok:
        raise GitError(f"git could not forget the worktree {ws.path}: {prune.reason()}")


def _rmtree_ours(path: str, root: Path) -> set[str]:
    """Remove `path` if it is there and under the workspace root (never anything else);
    the names git may know it by (as given, and with symlinks resolved)."""
    p = Path(path)
    names = {path, str(p.resolve())}
    if p.exists() and p.resolve().is_relative_to(root.resolve()):
        shutil.rmtree(p)
    return names


async def branch_tip(git: Git, ws: Workspace) -> str | None:
    where = await asyncio.to_thread(_repo_dir, ws)
    if where is None:
        return None
    res = await git.run(["rev-parse", "--verify", "--quiet", f"refs/heads/{ws.branch}"], where)
    return res.text() if res.ok else None


async def checked_out(git: Git, ws: Workspace) -> bool:
    """Whether some worktree (the main one included) has the branch checked out."""
    where = await asyncio.to_thread(_repo_dir, ws)
    if where is None:
        return False
    out = await git.out(["worktree", "list", "--porcelain"], where)
    return f"branch refs/heads/{ws.branch}" in out.splitlines()


async def delete_branch(git: Git, ws: Workspace, expected: str) -> bool:
    """Delete the branch if it still points at `expected` and no worktree has it out."""
    where = await asyncio.to_thread(_repo_dir, ws)
    if where is None or await checked_out(git, ws):
        return False
    res = await git.run_locked(["update-ref", "-d", f"refs/heads/{ws.branch}", expected], where)
    return res.ok
