"""Worktrees in cluster mode: a worktree lives on the node that runs its task (or holds its
session) and the records name that node; the `workspace.*` methods work from any node.
Real nodes (`python -m cc_executor.server` processes) on a private redis-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cluster.conftest import nodes, redis_server  # noqa: F401 (fixtures)
from tests.cluster.support import claude_env, client
from tests.workspaces.conftest import ccx_branches, gone, worktrees


async def test_a_worktree_task_waits_for_the_node_that_made_its_worktree(
    nodes: Any,  # noqa: F811
    repo: Path,
) -> None:
    """node-a is busy and node-b is free: a worktree task sent to node-a still runs on
    node-a, where its worktree is, not on node-b; both records say so."""
    one = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "1"}
    a, _b = await nodes("node-a", **one), await nodes("node-b", **one)
    async with client(a) as ca:
        busy = await ca.result("execute", {"command": ["sleep", "60"]})
        started = await ca.result(
            "execute",
            {
                "command": ["sh", "-c", "echo x > x.txt; pwd"],
                "cwd": str(repo),
                "workspace": "worktree",
                "name": "on-a",
            },
        )
        assert started["status"] == "queued"  # node-a's one slot is taken
        ws = (await ca.result("status", {"task_id": started["task_id"]}))["workspace"]
        assert ws["node"] == "node-a" and ws["branch"] == "ccx/on-a"
        assert Path(ws["path"]).is_relative_to(a.data_dir / "worktrees")
        await ca.result("control", {"task_id": busy["task_id"], "action": "CANCEL"})
        done = await ca.until("process.completed", started["task_id"])
        rec = await ca.result("status", {"task_id": started["task_id"]})
        assert done["status"] == "completed" and rec["node"] == "node-a", rec
        assert rec["workspace"]["node"] == "node-a" and rec["workspace"]["files_changed"] == 1
        assert rec["cwd"] == ws["path"]


async def test_the_workspace_methods_work_from_any_node(
    nodes: Any,  # noqa: F811
    repo: Path,
    tmp_path: Path,
) -> None:
    """A task's and a session's worktrees on node-a are listed, diffed and removed through
    node-b; once node-a is gone, node-b says where the worktree is."""
    env = claude_env(tmp_path)
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    async with client(a) as ca, client(b) as cb:
        h = await ca.result(
            "execute",
            {
                "command": ["sh", "-c", "echo from-a > a.txt"],
                "cwd": str(repo),
                "workspace": "worktree",
                "name": "task-on-a",
            },
        )
        await ca.until("process.completed", h["task_id"])
        s = await ca.result(
            "session.create", {"working_dir": str(repo), "name": "sess", "workspace": "worktree"}
        )
        turn = await ca.result(
            "session.send",
            {"session_id": "sess", "message": "write FAKE_WRITE=s.txt", "wait": True},
        )
        assert turn["status"] == "completed", turn

        listed = await cb.result("workspace.list", {})
        assert sorted((w["branch"], w["node"]) for w in listed["workspaces"]) == [
            ("ccx/sess", "node-a"),
            ("ccx/task-on-a", "node-a"),
        ]

        diff = await cb.result("workspace.diff", {"task_id": h["task_id"]})
        assert diff["eof"] and "+from-a" in diff["data"] and diff["branch"] == "ccx/task-on-a"
        by_name = await cb.result("workspace.diff", {"session_id": "sess"})
        assert "+s.txt written by fake claude" in by_name["data"]
        assert by_name["session_id"] == s["session_id"]
        by_turn = await cb.result("workspace.diff", {"task_id": turn["task_id"]})
        assert by_turn["data"] == by_name["data"]

        res = await cb.result("workspace.remove", {"task_id": h["task_id"]})
        assert res["removed"] is True and res["branch_deleted"] is True
        await cb.result("session.kill", {"session_id": "sess"})
        res = await cb.result("workspace.remove", {"session_id": s["session_id"]})
        assert res["removed"] is True and res["branch_deleted"] is True
        assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []

        unknown = await cb.call("workspace.diff", {"task_id": "no-such-task"})
        assert unknown["error"]["code"] == -32001, unknown

        kept = await ca.result(
            "execute",
            {
                "command": ["sh", "-c", "echo more > more.txt"],
                "cwd": str(repo),
                "workspace": "worktree",
            },
        )
        await ca.until("process.completed", kept["task_id"])
        path = (await ca.result("status", {"task_id": kept["task_id"]}))["workspace"]["path"]
    a.stop()
    async with client(b) as cb:
        refused = await cb.call("workspace.diff", {"task_id": kept["task_id"]})
        err = refused["error"]
        assert err["code"] == -32000 and err["data"]["node"] == "node-a", refused
        assert err["message"] == (
            f"the worktree of task {kept['task_id']} is on node node-a, which is gone: "
            "it is on that host's disk"
        )
    assert not gone(path)
