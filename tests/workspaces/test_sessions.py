"""A session created with workspace "worktree" keeps one worktree for all its turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from tests.workspaces.conftest import ccx_branches, git, worktrees


async def _turn(client: ExecutorClient, session: str, message: str) -> dict:
    reply = await client.call(
        Method.SESSION_SEND,
        {"session_id": session, "message": message, "wait": True, "timeout": 30},
    )
    assert reply["status"] == "completed", reply
    rec: dict = await client.status(reply["task_id"])
    return rec


async def test_the_turns_of_a_session_share_its_worktree(
    client: ExecutorClient, repo: Path, fake_claude_state: Path
) -> None:
    s = await client.call(
        Method.SESSION_CREATE,
        {"working_dir": str(repo / "src"), "name": "backend", "workspace": "worktree"},
    )
    ws = s["workspace"]
    wt = Path(ws["path"])
    assert ws["branch"] == "ccx/backend" and ws["owner"] == "session" and ws["state"] == "active"
    assert s["working_dir"] == str(repo / "src") and ws["cwd"] == str(wt / "src")

    first = await _turn(client, "backend", "start FAKE_WRITE=log.txt")
    second = await _turn(client, "backend", "go on FAKE_WRITE=log.txt")
    assert first["cwd"] == second["cwd"] == str(wt / "src")
    assert (wt / "src" / "log.txt").read_text() == "log.txt written by fake claude\n" * 2
    # Each turn's record shows the session's worktree as that turn left it.
    assert [f["added"] for f in first["workspace"]["files"]] == [1]
    assert [f["added"] for f in second["workspace"]["files"]] == [2]
    assert second["workspace"]["files"][0]["path"] == "src/log.txt"
    assert not (repo / "src" / "log.txt").exists()

    by_name = await client.call(Method.WORKSPACE_DIFF, {"session_id": "backend"})
    by_turn = await client.call(Method.WORKSPACE_DIFF, {"task_id": first["task_id"]})
    assert by_name["data"] == by_turn["data"] and by_name["session_id"] == s["session_id"]
    assert by_name["data"].count("+log.txt written by fake claude") == 2

    with pytest.raises(ProtocolError) as info:
        await client.call(Method.WORKSPACE_REMOVE, {"session_id": "backend"})
    assert info.value.code == ErrorCode.INVALID_STATE and "kill it first" in info.value.message

    await client.call(Method.SESSION_KILL, {"session_id": "backend"})
    ended = await client.call(Method.SESSION_STATUS, {"session_id": s["session_id"]})
    assert ended["workspace"]["state"] == "kept"  # it changed something (on_change)
    assert ended["workspace"]["files_changed"] == 1
    res = await client.call(Method.WORKSPACE_REMOVE, {"session_id": s["session_id"]})
    assert res["removed"] is True and res["branch_deleted"] is True
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
    assert git(repo, "status", "--porcelain") == ""


async def test_a_session_that_changed_nothing_leaves_no_worktree(
    client: ExecutorClient, repo: Path, fake_claude_state: Path
) -> None:
    s = await client.call(
        Method.SESSION_CREATE, {"working_dir": str(repo), "workspace": "worktree"}
    )
    assert s["workspace"]["branch"] == f"ccx/{s['session_id']}"
    await _turn(client, s["session_id"], "just answer")
    await client.call(Method.SESSION_KILL, {"session_id": s["session_id"]})
    ended = await client.call(Method.SESSION_STATUS, {"session_id": s["session_id"]})
    assert ended["workspace"]["state"] == "removed" and ended["workspace"]["changed"] is False
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
