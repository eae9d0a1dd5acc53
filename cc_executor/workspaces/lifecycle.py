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


def refuse(field: str, value: str | None, problem: str) -> ProtocolError:
    """INVALID_PARAMS about one request field, as the service's -32602 details say it
    (`[{loc, msg}]`): the CLI names the field by its option (`--cwd: ...`), the bridge by
    its argument; the message reads alone: `<field> <value> <problem>`."""
    shown = f"{value!r} {problem}" if value is not None else problem
    return ProtocolError(
        ErrorCode.INVALID_PARAMS, f"{field} {shown}", [{"loc": field, "msg": shown}]
    )


@dataclass(frozen=True, slots=True)
class Source:
    """The repository a request's cwd is in."""

    toplevel: str  # the top of the work tree holding cwd
    common_dir: str  # the repository's git dir
    prefix: str  # cwd relative to toplevel ("" at the top, else ending in "/")
    cwd: str  # as the request gave it
    field: str  # the request's name for it: "cwd", or session.create's "working_dir"


async def locate(git: Git, cwd: str, field: str = "cwd") -> Source:
    """The repository holding `cwd`, or INVALID_PARAMS saying why there is none."""
    res = await git.run(
        ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"], cwd
    )
    if not res.ok:
        why = res.reason()
        if "must be run in a work tree" in why:
            raise refuse(field, cwd, "is inside a git directory, not a work tree")
        if "not a git repository" in why:
            real = await asyncio.to_thread(os.path.realpath, cwd)  # a symlink leads out
            via = f" (it is {real})" if real != cwd.rstrip("/") else ""
            raise refuse(
                field, cwd, f'is not inside a git repository{via}: workspace "worktree" needs one'
            )
        raise GitError(f"cannot read the repository of {cwd!r}: {why}", {"cwd": cwd})
    toplevel, common_dir = res.text().split("\n")[:2]
    prefix = (await git.out(["rev-parse", "--show-prefix"], cwd)).strip()
    if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
        raise refuse(field, cwd, f"is not inside the work tree {toplevel}")
    return Source(toplevel, common_dir, prefix, cwd, field)


async def base_commit(git: Git, src: Source, base_ref: str | None) -> str:
    """The commit a new worktree starts from: `base_ref`, or HEAD with a clean index."""
    top = src.toplevel
    if base_ref is not None:
        res = await git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{base_ref}^{{commit}}"],
            top,
        )
        if not res.ok:
            raise refuse("base_ref", base_ref, f"names no commit in {top}")
        return res.text()
    res = await git.run(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], top)
    if not res.ok:
        raise refuse(
            src.field, src.cwd, f"is in a repository with no commit yet ({top}): commit first"
        )
    staged = await git.run(["diff", "--cached", "--quiet", "--no-ext-diff", "HEAD", "--"], top)
    if staged.code == 1:
        raise refuse(
            src.field,
            src.cwd,
            f"is in a repository with staged changes ({top}), which a worktree from HEAD "
            "would not hold: commit or unstage them, or give base_ref",
        )
    if not staged.ok:
        raise GitError(f"cannot read the index of {top}: {staged.reason()}")
    return res.text()


async def check_new_branch(git: Git, src: Source, branch: str, name: str | None) -> None:
    """`branch` (ccx/<name>, or ccx/<owner id> when no name was given) can be created."""
    res = await git.run(["check-ref-format", "--branch", branch], src.toplevel)
    if not res.ok:
        raise refuse("name", name, f"cannot name the branch {branch}: git refuses it")
    res = await git.run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], src.toplevel)
    if res.ok:
        raise refuse(
            "name",
            name,
            f"{'' if name is None else 'cannot name the branch: '}branch {branch} already "
            f"exists in {src.toplevel}: give {'another' if name else 'a'} name",
        )


async def check_subdir(git: Git, src: Source, commit: str) -> None:
    """The task runs in the worktree's copy of cwd: the base commit must hold that directory."""
    if not src.prefix:
        return
    sub = src.prefix.rstrip("/")
    res = await git.run(["cat-file", "-t", f"{commit}:{sub}"], src.toplevel)
    if res.text() != "tree":
        raise refuse(
            src.field,
            src.cwd,
            f"is not in commit {commit[:12]} (no directory {sub}/ there): a worktree of it "
            "would not have it; run from a directory the commit holds",
        )


def check_location(path: Path, src: Source, configured: bool) -> None:
    """Worktrees go outside the user's repository unless `workspace_dir` says otherwise."""
    if configured:
        return
    top = Path(src.toplevel)
    if path.resolve().is_relative_to(top) or path.resolve().is_relative_to(
        Path(src.common_dir).resolve()
    ):
        raise refuse(
            src.field,
            src.cwd,
            f"is in the repository {top}, and the worktree would be inside it ({path}): "
            "set workspace_dir (or data_dir) to a directory outside the repository",
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
