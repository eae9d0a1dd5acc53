"""Bad inputs get one clear error naming what is wrong, and leave nothing behind: no
worktree, no branch, no directory, no workspace record, no task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.server import ExecutorService
from tests.workspaces.conftest import assert_clean, ccx_branches, git, worktrees


async def _refused(client: ExecutorClient, **params: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await client.execute(["true"], workspace="worktree", **params)
    return info.value


async def _nothing_left(client: ExecutorClient, repo: Path, settings: Settings) -> None:
    assert_clean(repo, settings.data_dir)
    assert (await client.status())["tasks"] == []


async def test_a_cwd_outside_any_repository(
    client: ExecutorClient, repo: Path, tmp_path: Path, settings: Settings
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    err = await _refused(client, cwd=str(plain))
    assert err.code == ErrorCode.INVALID_PARAMS
    assert err.message == (
        f'cwd {str(plain)!r} is not inside a git repository: workspace "worktree" needs one'
    )
    err = await _refused(client, cwd=str(repo / ".git"))
    assert err.message == f"cwd {str(repo / '.git')!r} is inside a git directory, not a work tree"
    await _nothing_left(client, repo, settings)


async def test_a_dirty_index(client: ExecutorClient, repo: Path, settings: Settings) -> None:
    """Staged work would silently be missing from a worktree made from HEAD."""
    (repo / "README.md").write_text("# staged\n")
    git(repo, "add", "README.md")
    err = await _refused(client, cwd=str(repo))
    assert err.code == ErrorCode.INVALID_PARAMS
    assert err.message == (
        f"cwd {str(repo)!r} is in a repository with staged changes ({repo}), which a worktree "
        "from HEAD would not hold: commit or unstage them, or give base_ref"
    )
    assert err.data == [{"loc": "cwd", "msg": err.message.removeprefix("cwd ")}]
    await _nothing_left(client, repo, settings)
    assert git(repo, "diff", "--cached", "--name-only") == "README.md\n"  # left as it was


async def test_an_existing_branch_name(
    client: ExecutorClient, repo: Path, settings: Settings
) -> None:
    git(repo, "branch", "ccx/taken")
    tip = git(repo, "rev-parse", "ccx/taken")
    err = await _refused(client, cwd=str(repo), name="taken")
    assert err.code == ErrorCode.INVALID_PARAMS
    assert err.message == (
        f"name 'taken' cannot name the branch: branch ccx/taken already exists in {repo}: "
        "give another name"
    )
    assert [d["loc"] for d in err.data] == ["name"]
    assert ccx_branches(repo) == ["ccx/taken"] and git(repo, "rev-parse", "ccx/taken") == tip
    git(repo, "branch", "-D", "ccx/taken")
    await _nothing_left(client, repo, settings)


async def test_names_and_refs_that_could_reach_git_as_options_or_paths(
    client: ExecutorClient, repo: Path, settings: Settings
) -> None:
    for params, words in (
        ({"name": "--force"}, "name '--force' cannot name the branch ccx/--force"),
        ({"name": "../../escape"}, "name '../../escape' cannot name the branch"),
        ({"name": "a b"}, "name 'a b' cannot name the branch"),
        ({"name": "x.lock"}, "no part may end in '.' or '.lock'"),
        ({"base_ref": "--output=/tmp/x"}, "base_ref '--output=/tmp/x' cannot be used"),
        ({"base_ref": "--upload-pack=x"}, "base_ref '--upload-pack=x' cannot be used"),
        ({"base_ref": "-b"}, "it may not start with '-'"),
        ({"base_ref": "main..HEAD"}, "it names one commit, not a range"),
    ):
        err = await _refused(client, cwd=str(repo), **params)
        assert err.code == ErrorCode.INVALID_PARAMS, params
        assert words in str(err.data), (params, err.data)
    with pytest.raises(ProtocolError) as info:
        await client.execute(["true"], cwd=str(repo), base_ref="main")
    assert 'base_ref needs workspace "worktree"' in str(info.value.data)
    err = await _refused(client, cwd=str(repo), base_ref="no-such-branch")
    assert err.message == f"base_ref 'no-such-branch' names no commit in {repo}"
    await _nothing_left(client, repo, settings)


async def test_a_path_outside_the_repository(
    client: ExecutorClient, repo: Path, tmp_path: Path, settings: Settings
) -> None:
    """A cwd that leaves the repository, by `..` or by a symlink inside it, is where it
    leads: outside any repository."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (repo / "out").symlink_to(plain)
    dotted = f"{repo}/src/../../plain"
    err = await _refused(client, cwd=dotted)
    assert err.message == (  # the service normalised the path it was given
        f'cwd {str(plain)!r} is not inside a git repository: workspace "worktree" needs one'
    )
    err = await _refused(client, cwd=str(repo / "out"))
    assert err.message == (
        f"cwd {str(repo / 'out')!r} is not inside a git repository (it is {plain}): "
        'workspace "worktree" needs one'
    )
    (repo / "out").unlink()
    await _nothing_left(client, repo, settings)


async def test_a_cwd_the_base_commit_does_not_hold(
    client: ExecutorClient, repo: Path, settings: Settings
) -> None:
    (repo / "scratch").mkdir()  # untracked: a worktree of HEAD would not have it
    err = await _refused(client, cwd=str(repo / "scratch"))
    assert err.code == ErrorCode.INVALID_PARAMS
    assert err.message.startswith(f"cwd {str(repo / 'scratch')!r} is not in commit ")
    assert "(no directory scratch/ there)" in err.message
    await _nothing_left(client, repo, settings)


async def test_worktrees_never_go_inside_the_repository_unless_configured(
    repo: Path, settings: Settings
) -> None:
    inside = repo / ".cc-data"
    inside.mkdir()
    svc = ExecutorService(settings.model_copy(update={"data_dir": inside}))
    await svc.start()
    try:
        async with ExecutorClient(svc.url, svc.token) as client:
            err = await _refused(client, cwd=str(repo))
            assert err.code == ErrorCode.INVALID_PARAMS
            assert err.message.startswith(
                f"cwd {str(repo)!r} is in the repository {repo}, and the worktree would be "
                f"inside it ({inside}/worktrees/repo-"
            )
            assert err.message.endswith(
                "): set workspace_dir (or data_dir) to a directory outside the repository"
            )
            assert ccx_branches(repo) == [] and not (inside / "worktrees").exists()
            listed = await client.call(Method.WORKSPACE_LIST, {"include_removed": True})
            assert listed["workspaces"] == []
    finally:
        await svc.stop()


async def test_a_session_in_no_repository_is_not_created(
    client: ExecutorClient, repo: Path, tmp_path: Path, settings: Settings
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ProtocolError) as info:
        await client.call(
            Method.SESSION_CREATE, {"working_dir": str(plain), "workspace": "worktree"}
        )
    assert info.value.message == (
        f'working_dir {str(plain)!r} is not inside a git repository: workspace "worktree" needs one'
    )
    assert [d["loc"] for d in info.value.data] == ["working_dir"]  # the field as given
    assert (await client.call(Method.SESSION_LIST, {"include_ended": True}))["sessions"] == []
    await _nothing_left(client, repo, settings)


async def test_worktrees_go_inside_the_repository_when_configured(
    repo: Path, settings: Settings
) -> None:
    inside = repo / ".worktrees"
    svc = ExecutorService(settings.model_copy(update={"workspace_dir": inside}))
    await svc.start()
    try:
        async with ExecutorClient(svc.url, svc.token) as client:
            h = await client.execute(
                ["sh", "-c", "echo x > x.txt"], cwd=str(repo), workspace="worktree"
            )
            assert (await h.wait(30))["status"] == "completed"
            ws = (await client.status(h.task_id))["workspace"]
            assert Path(ws["path"]).parent == inside and ws["state"] == "kept"
            assert (Path(ws["path"]) / "x.txt").read_text() == "x\n"
            await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id})
        assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
        assert list(inside.iterdir()) == []
    finally:
        await svc.stop()
