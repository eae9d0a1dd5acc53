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

    r = await cli(
        "run",
        "--json",
        "--workspace",
        "worktree",
        "--name",
        "committer",
        "--cwd",
        str(repo),
        "--",
        "sh",
        "-c",
        "echo c > c.txt && git add c.txt && git commit -q -m c",
    )
    task_id, path = json.loads(r.stdout)["task_id"], json.loads(r.stdout)["workspace"]["path"]
    r = await cli("workspaces", "remove", task_id)
    assert r.stdout == (
        f"worktree {path} removed; branch ccx/committer kept\n"
        "branch ccx/committer holds work (or is checked out): --delete-branch deletes it\n"
    )
    r = await cli("workspaces", "remove", task_id, "--delete-branch")
    assert r.stdout == f"worktree {path} was already removed; branch ccx/committer deleted\n"
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []


async def test_bad_inputs_read_as_one_line_naming_the_option(
    service: ExecutorService, settings: Settings, repo: Path, tmp_path: Path
) -> None:
    """Each refusal is one line on stderr naming the option (or argument) as it was typed,
    exit 5; nothing is left behind and the service goes on serving."""
    cli = Cli(service, settings)
    plain = tmp_path / "plain"
    plain.mkdir()
    git(repo, "branch", "ccx/taken")
    run = ("run", "--workspace", "worktree")
    for argv, line in (
        (
            (*run, "--cwd", str(plain), "--", "true"),
            f'--cwd: {str(plain)!r} is not inside a git repository: workspace "worktree" needs one',
        ),
        (
            (*run, "--name", "taken", "--cwd", str(repo), "--", "true"),
            f"--name: 'taken' cannot name the branch: branch ccx/taken already exists in {repo}: "
            "give another name",
        ),
        (
            (*run, "--base-ref=--upload-pack=x", "--cwd", str(repo), "--", "true"),
            "--base-ref: base_ref '--upload-pack=x' cannot be used: it may not start with '-'",
        ),
        (
            (*run, "--name", "a..b", "--cwd", str(repo), "--", "true"),
            "--name: name 'a..b' cannot name the branch ccx/a..b: no '..', and no part may end "
            "in '.' or '.lock'",
        ),
        (
            (*run, "--base-ref", "nope", "--cwd", str(repo), "--", "true"),
            f"--base-ref: 'nope' names no commit in {repo}",
        ),
        (
            ("run", "--workspace-keep", "never", "--cwd", str(repo), "--", "true"),
            '--workspace-keep: workspace_keep needs workspace "worktree"',
        ),
        (
            ("sessions", "create", str(plain), "--workspace", "worktree"),
            f'DIR: {str(plain)!r} is not inside a git repository: workspace "worktree" needs one',
        ),
    ):
        r = await cli(*argv)
        assert (r.rc, r.stderr) == (5, f"error: {line}\n"), argv
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    r = await cli(*run, "--cwd", str(repo), "--", "true")
    assert r.rc == 5 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --cwd: {str(repo)!r} is in a repository with staged")

    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == ["ccx/taken"]
    r = await cli("tasks", "--json")
    assert r.rc == 0 and json.loads(r.stdout)["tasks"] == []
    r = await cli("workspaces", "list", "--all")
    assert (r.rc, r.stdout) == (0, "no workspaces\n")
