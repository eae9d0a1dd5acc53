"""Tasks in worktrees, through the real service: each gets its own worktree and branch,
sees only its own changes, and its record says what it changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cc_executor.client import ExecutorClient, TaskHandle
from cc_executor.config import Settings
from cc_executor.protocol import Method
from tests.workspaces.conftest import (
    ccx_branches,
    files_in,
    git,
    git_bytes,
    gone,
    mode_of,
    worktrees,
)


async def _finish(client: ExecutorClient, handle: TaskHandle) -> dict:
    await asyncio.wait_for(handle.wait(), 30)
    return await client.status(handle.task_id)


async def test_two_claude_tasks_at_once_each_in_its_own_worktree(
    client: ExecutorClient, repo: Path, settings: Settings, fake_claude_state: Path
) -> None:
    """Two fake Claudes start at once in worktrees of one repo, each told to write a file:
    each worktree holds only its own file, each record shows its own diff, the user's
    work tree is untouched and both worktrees are kept (they changed something)."""
    a, b = await asyncio.gather(
        client.execute_claude(
            "add a file FAKE_WRITE=notes/a.txt", cwd=str(repo), workspace="worktree", name="agent-a"
        ),
        client.execute_claude(
            "add a file FAKE_WRITE=notes/b.txt", cwd=str(repo), workspace="worktree", name="agent-b"
        ),
    )
    ra, rb = await _finish(client, a), await _finish(client, b)
    for rec, mine, branch in ((ra, "a", "ccx/agent-a"), (rb, "b", "ccx/agent-b")):
        assert rec["status"] == "completed", rec
        ws = rec["workspace"]
        wt = Path(ws["path"])
        assert ws["branch"] == branch and ws["state"] == "kept"
        assert ws["base_commit"] == git(repo, "rev-parse", "HEAD").strip()
        assert rec["cwd"] == str(wt)
        assert wt.is_relative_to(settings.data_dir / "worktrees")
        assert files_in(wt) == {
            "README.md": "# demo\n",
            "src/app.py": "print('hello')\nprint('again')\n",
            f"notes/{mine}.txt": f"notes/{mine}.txt written by fake claude\n",
        }
        assert ws["files"] == [
            {"path": f"notes/{mine}.txt", "uncommitted": True, "added": 1, "removed": 0}
        ]
        assert ws["commits"] == {"count": 0, "subjects": []}
        assert ws["uncommitted"] is True and ws["changed"] is True
        assert git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch
    assert set(files_in(repo)) == {"README.md", "src/app.py"}
    assert git(repo, "status", "--porcelain") == ""
    assert sorted(ccx_branches(repo)) == ["ccx/agent-a", "ccx/agent-b"]
    assert len(worktrees(repo)) == 3
    # The user's code and the records are theirs alone, like the rest of the data dir.
    assert mode_of(settings.data_dir / "worktrees") == 0o700
    assert mode_of(settings.data_dir / "workspaces") == 0o700
    assert mode_of(settings.data_dir / "workspaces" / f"{a.task_id}.json") == 0o600

    diff = await client.call(Method.WORKSPACE_DIFF, {"task_id": a.task_id})
    assert "+notes/a.txt written by fake claude" in diff["data"]
    assert "b.txt" not in diff["data"] and diff["eof"] and diff["source"] == "worktree"


async def test_on_change_removes_a_worktree_that_changed_nothing(
    client: ExecutorClient, repo: Path, settings: Settings
) -> None:
    h = await client.execute(["git", "status", "--short"], cwd=str(repo), workspace="worktree")
    rec = await _finish(client, h)
    ws = rec["workspace"]
    assert rec["status"] == "completed"
    assert ws["state"] == "removed" and ws["changed"] is False and ws["branch_deleted"] is True
    assert ws["branch"] == f"ccx/{h.task_id}"
    assert gone(ws["path"])
    assert worktrees(repo) == [str(repo)]
    assert ccx_branches(repo) == []
    listed = await client.call(Method.WORKSPACE_LIST, {})
    assert listed["workspaces"] == []
    listed = await client.call(Method.WORKSPACE_LIST, {"include_removed": True})
    assert [w["id"] for w in listed["workspaces"]] == [h.task_id]


async def test_commits_are_recorded_and_a_branch_with_commits_outlives_its_worktree(
    client: ExecutorClient, repo: Path
) -> None:
    """keep "never": the worktree goes when the task ends, but its branch holds a commit,
    so it stays (until asked); the diff saved at removal is still served."""
    script = (
        "echo one > one.txt && git add one.txt && git commit -q -m 'add one' && "
        "echo two >> src/app.py && git commit -q -am 'extend app' && echo wip > wip.txt"
    )
    h = await client.execute(
        ["sh", "-c", script],
        cwd=str(repo),
        workspace="worktree",
        workspace_keep="never",
        name="committer",
    )
    rec = await _finish(client, h)
    ws = rec["workspace"]
    assert rec["status"] == "completed", rec
    assert ws["commits"] == {"count": 2, "subjects": ["extend app", "add one"]}
    files = {f["path"]: f for f in ws["files"]}
    assert files == {
        "one.txt": {"path": "one.txt", "added": 1, "removed": 0, "uncommitted": False},
        "src/app.py": {"path": "src/app.py", "added": 1, "removed": 0, "uncommitted": False},
        "wip.txt": {"path": "wip.txt", "added": 1, "removed": 0, "uncommitted": True},
    }
    assert ws["state"] == "removed" and ws["branch_deleted"] is False
    assert worktrees(repo) == [str(repo)]
    assert ccx_branches(repo) == ["ccx/committer"]
    assert git(repo, "log", "--format=%s", "main..ccx/committer").split("\n")[:2] == [
        "extend app",
        "add one",
    ]
    diff = await client.call(Method.WORKSPACE_DIFF, {"task_id": h.task_id})
    assert diff["source"] == "saved" and "+wip" in diff["data"] and "+two" in diff["data"]

    res = await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id})
    assert res["removed"] is False and res["branch_deleted"] is False
    assert ccx_branches(repo) == ["ccx/committer"]  # not without delete_branch
    res = await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id, "delete_branch": True})
    assert res["branch_deleted"] is True
    assert ccx_branches(repo) == []


async def test_a_task_runs_in_the_worktrees_copy_of_its_cwd_from_base_ref(
    client: ExecutorClient, repo: Path
) -> None:
    first = git(repo, "rev-parse", "HEAD~1").strip()
    h = await client.execute(
        ["sh", "-c", "pwd; cat app.py"],
        cwd=str(repo / "src"),
        workspace="worktree",
        base_ref="HEAD~1",
        workspace_keep="always",
    )
    rec = await _finish(client, h)
    ws = rec["workspace"]
    out = (await client.output(h.task_id))["data"]
    assert out == f"{ws['path']}/src\nprint('hello')\n"
    assert rec["cwd"] == f"{ws['path']}/src"
    assert ws["base_ref"] == "HEAD~1" and ws["base_commit"] == first
    assert ws["state"] == "kept" and ws["changed"] is False  # kept: "always"
    res = await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id})
    assert res["removed"] is True and res["branch_deleted"] is True
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []


async def test_a_worktree_is_removed_only_once_its_task_ended(
    client: ExecutorClient, repo: Path
) -> None:
    h = await client.execute(
        ["sh", "-c", "echo x > x.txt; exec sleep 60"], cwd=str(repo), workspace="worktree"
    )
    listed = await client.call(Method.WORKSPACE_LIST, {})
    [entry] = listed["workspaces"]
    assert entry["id"] == h.task_id and entry["state"] == "active"
    assert entry["task_status"] == "running" and entry["exists"] is True
    try:
        await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id})
    except Exception as exc:
        assert getattr(exc, "code", None) == -32003 and "running" in str(exc)
    else:
        raise AssertionError("a running task's worktree was removed")
    await client.control(h.task_id, "CANCEL")
    rec = await _finish(client, h)
    assert rec["status"] == "cancelled" and rec["workspace"]["state"] == "kept"
    res = await client.call(Method.WORKSPACE_REMOVE, {"task_id": h.task_id})
    assert res["removed"] is True and res["branch_deleted"] is True  # no commit on it
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
    assert gone(entry["path"])


async def test_the_diff_pages_byte_exact(client: ExecutorClient, repo: Path) -> None:
    """A diff of megabytes (committed, uncommitted, untracked, binary and non-ASCII text)
    read in pages is byte for byte what git says about the same worktree."""
    script = (
        'python3 -c "\n'
        "lines = (f'ligne {i} é→😀 ' * 3 + chr(10) for i in range(40000))\n"
        "open('big.txt', 'w').write(''.join(lines))\n"
        "open('blob.bin', 'wb').write(bytes(range(256)) * 64)\"\n"
        "git add big.txt && git commit -q -m big && "
        "echo changed >> README.md && echo new > untracked.txt"
    )
    h = await client.execute(["sh", "-c", script], cwd=str(repo), workspace="worktree")
    rec = await _finish(client, h)
    ws = rec["workspace"]
    assert rec["status"] == "completed", rec
    pages, offset, sizes = [], 0, set()
    while True:
        page = await client.call(
            Method.WORKSPACE_DIFF, {"task_id": h.task_id, "offset": offset, "limit": 100_000}
        )
        assert page["encoding"] == "utf-8"
        pages.append(page["data"].encode())
        sizes.add(page["size"])
        offset += page["size"]
        if page["eof"]:
            break
    got = b"".join(pages)
    assert len(got) == page["total"] > 2_000_000 and len(pages) > 20
    assert sizes != {100_000}  # some pages ended before a character cut in two
    wt = Path(ws["path"])
    git(wt, "add", "-A")  # the test's own view of the same state
    expected = git_bytes(wt, "diff", "--cached", "--binary", "--no-renames", ws["base_commit"])
    assert got == expected
