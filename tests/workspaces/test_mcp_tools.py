"""docs/workspaces.md's example through the real MCP bridge: an orchestrator fans three
sub-agents out into worktrees of one repository, reviews their diffs, takes one agent's
work into its own tree and removes every worktree."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp.client import Client

from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.bridge.conftest import bridge_in_task, call, call_error
from tests.support import FAKE_CLAUDE
from tests.workspaces.conftest import ccx_branches, git, git_bytes, worktrees

AGENTS = ("api", "ui", "docs")


@pytest.fixture
async def bridge(
    service: ExecutorService, settings: Settings, fake_claude_state: Path, tmp_path: Path
) -> AsyncIterator[Client]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CC_EXECUTOR_DATA_DIR": str(settings.data_dir),
        "CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE),
        "CC_EXECUTOR_WEBSOCKET_URL": service.url,
        "CC_EXECUTOR_TOKEN": service.token,
    }
    async with bridge_in_task(env, tmp_path / "bridge.log") as client:
        yield client


async def test_an_orchestrator_fans_out_reviews_and_cleans_up(bridge: Client, repo: Path) -> None:
    runs = await asyncio.gather(
        *(
            call(
                bridge,
                "execute_claude",
                {
                    "prompt": f"Build the {a} part. FAKE_WRITE={a}/README.md",
                    "cwd": str(repo),
                    "name": a,
                    "workspace": "worktree",
                },
            )
            for a in AGENTS
        )
    )
    assert [r["status"] for r in runs] == ["completed"] * 3, runs

    listed = await call(bridge, "list_workspaces", {})
    by_branch = {w["branch"]: w for w in listed["workspaces"]}
    assert set(by_branch) == {f"ccx/{a}" for a in AGENTS}
    for w in by_branch.values():
        assert w["state"] == "kept" and w["owner"] == "task" and w["task_status"] == "completed"
        assert w["files_changed"] == 1 and w["uncommitted"] is True

    diffs = {}
    for r, a in zip(runs, AGENTS, strict=True):
        d = await call(bridge, "get_workspace_diff", {"task_id": r["task_id"]})
        assert d["eof"] and d["branch"] == f"ccx/{a}"
        assert f"+{a}/README.md written by fake claude" in d["data"]
        assert all(f"{o}/README.md" not in d["data"] for o in AGENTS if o != a)
        diffs[a] = d["data"]

    # The orchestrator takes the api agent's work into its own tree.
    git_bytes(repo, "apply", "--index", stdin=diffs["api"].encode())
    assert (repo / "api" / "README.md").read_text() == "api/README.md written by fake claude\n"

    err = await call_error(bridge, "remove_workspace", {})
    assert "give exactly one of task_id or session_id" in err
    for r in runs:
        res = await call(bridge, "remove_workspace", {"task_id": r["task_id"]})
        assert res["removed"] is True and res["branch_deleted"] is True
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
    assert (await call(bridge, "list_workspaces", {}))["workspaces"] == []
    assert git(repo, "status", "--porcelain") == "A  api/README.md\n"


async def test_a_refused_worktree_reads_as_one_line_naming_the_argument(
    bridge: Client, repo: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    err = await call_error(
        bridge, "execute_claude", {"prompt": "x", "cwd": str(plain), "workspace": "worktree"}
    )
    assert err == (
        f"Error: invalid arguments: cwd: {str(plain)!r} is not inside a git repository: "
        'workspace "worktree" needs one'
    )
    err = await call_error(
        bridge, "create_session", {"working_dir": str(plain), "workspace": "worktree"}
    )
    assert err.startswith(f"Error: invalid arguments: working_dir: {str(plain)!r} is not inside")
    err = await call_error(
        bridge,
        "execute_task",
        {"command": "true", "cwd": str(repo), "workspace": "worktree", "base_ref": "-x"},
    )
    assert "base_ref" in err and "it may not start with '-'" in err and "\n" not in err
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
