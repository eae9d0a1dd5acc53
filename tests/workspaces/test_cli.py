"""`cc-executor run --workspace worktree` and `cc-executor workspaces list|diff|remove`,
the real console script against the real service."""

from __future__ import annotations

import json
from pathlib import Path

from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.cli.conftest import Cli
from tests.workspaces.conftest import ccx_branches, git, worktrees


async def test_run_in_a_worktree_then_list_diff_and_remove_it(
    service: ExecutorService, settings: Settings, repo: Path
) -> None:
    cli = Cli(service, settings)
    r = await cli(
        "run",
        "--json",
        "--workspace",
        "worktree",
        "--name",
        "from-cli",
        "--cwd",
        str(repo),
        "--",
        "sh",
        "-c",
        "printf 'hi\\n' > hi.txt",
    )
    assert r.rc == 0, r.stderr
    rec = json.loads(r.stdout)
    task_id, ws = rec["task_id"], rec["workspace"]
    assert ws["branch"] == "ccx/from-cli" and ws["state"] == "kept"

    r = await cli("workspaces", "list")
    assert r.rc == 0, r.stderr
    assert task_id in r.stdout and "ccx/from-cli" in r.stdout
    assert "1 files +1 -0, uncommitted" in r.stdout

    r = await cli("workspaces", "diff", task_id)
    assert r.rc == 0, r.stderr
    assert r.out.startswith(b"diff --git a/hi.txt b/hi.txt\n") and r.out.endswith(b"+hi\n")
    applied = repo.parent / "applied"
    git(repo.parent, "clone", "-q", str(repo), str(applied))
    (applied / "patch").write_bytes(r.out)
    git(applied, "apply", "patch")
    assert (applied / "hi.txt").read_text() == "hi\n"

    r = await cli("workspaces", "diff")
    assert r.rc == 2 and "give a TASK or --session SESSION" in r.stderr

    r = await cli("workspaces", "remove", task_id)
    assert r.rc == 0, r.stderr
    assert r.stdout == f"worktree {ws['path']} removed; branch ccx/from-cli deleted\n"
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []

    r = await cli(
        "run", "--workspace", "worktree", "--name", "a b", "--cwd", str(repo), "--", "true"
    )
    assert r.rc == 5 and "name 'a b' cannot name the branch ccx/a b" in r.stderr
