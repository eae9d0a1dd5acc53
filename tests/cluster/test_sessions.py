"""Sessions across nodes: a session's turns run on the node that holds its transcript,
from whichever node they are sent; if that node is gone, the next turn says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import wait_until

from .support import claude_env, client


async def test_a_session_is_driven_from_any_node_and_runs_where_it_lives(
    nodes: Any, tmp_path: Path
) -> None:
    env = claude_env(tmp_path)
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    async with client(b) as cb:
        s = await cb.result("session.create", {"working_dir": str(tmp_path), "name": "keeper"})
        assert s["node"] == "node-b"
    async with client(a) as ca:
        first = await ca.result(
            "session.send", {"session_id": s["session_id"], "message": "hello", "wait": True}
        )
        second = await ca.result(
            "session.send", {"session_id": "keeper", "message": "again", "wait": True}
        )
        for turn in (first, second):
            assert (await ca.result("status", {"task_id": turn["task_id"]}))["node"] == "node-b"
        status = await ca.result("session.status", {"session_id": "keeper"})
        assert status["node"] == "node-b" and status["session_id"] == s["session_id"]
        listed = await ca.result("session.list", {})
        assert [(x["session_id"], x["node"]) for x in listed["sessions"]] == [
            (s["session_id"], "node-b")
        ]
        b.stop()
        gone = await ca.call(
            "session.send", {"session_id": "keeper", "message": "still there?", "wait": True}
        )
        assert gone["error"]["code"] == -32000, gone
        assert "node-b" in gone["error"]["message"] and "transcript" in gone["error"]["message"]


async def test_an_active_sessions_name_is_unique_across_the_cluster(
    nodes: Any, tmp_path: Path
) -> None:
    env = claude_env(tmp_path)
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    create = {"working_dir": str(tmp_path), "name": "builder"}
    async with client(b) as cb, client(a) as ca:
        first = await cb.result("session.create", create)
        refused = await ca.call("session.create", create)
        assert refused["error"]["code"] == -32602, refused
        assert "builder" in refused["error"]["message"] and "node-b" in refused["error"]["message"]
        assert refused["error"]["data"]["session_id"] == first["session_id"]
        # Once that one has ended, the name is free again, on any node.
        await cb.result("session.kill", {"session_id": first["session_id"]})
        again = await ca.result("session.create", create)
        assert again["node"] == "node-a" and again["name"] == "builder"
        status = await cb.result("session.status", {"session_id": "builder"})
        assert status["session_id"] == again["session_id"]  # the active one, wherever it is


async def test_session_updates_reach_listeners_on_every_node(nodes: Any, tmp_path: Path) -> None:
    env = claude_env(tmp_path)
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    async with client(a) as listener, client(b) as cb:
        await listener.result("listen", {})
        s = await cb.result("session.create", {"working_dir": str(tmp_path), "name": "remote"})
        turn = await cb.result(
            "session.send", {"session_id": s["session_id"], "message": "hi", "wait": True}
        )
        assert turn["status"] == "completed"

        def updates() -> list[dict[str, Any]]:
            return [
                n["params"]
                for n in listener.notifications
                if n["method"] == "session.updated" and n["params"]["session_id"] == s["session_id"]
            ]

        await wait_until(lambda: any(u["turns"] == 1 and u["status"] == "idle" for u in updates()))
        assert updates()[0]["name"] == "remote"


async def test_sessions_on_two_nodes_message_each_other_and_coordinate_where_they_live(
    nodes: Any, tmp_path: Path
) -> None:
    env = claude_env(tmp_path)
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    async with client(a) as ca, client(b) as cb:
        alpha = await ca.result("session.create", {"working_dir": str(tmp_path), "name": "alpha"})
        beta = await cb.result("session.create", {"working_dir": str(tmp_path), "name": "beta"})
        gamma = await cb.result("session.create", {"working_dir": str(tmp_path), "name": "gamma"})
        # A message from a session on node-a to one on node-b, sent through node-a.
        turn = await ca.result(
            "session.send",
            {
                "session_id": "beta",
                "message": "the schema is ready",
                "from_session": "alpha",
                "wait": True,
            },
        )
        assert turn["status"] == "completed", turn
        assert f"[Message from cc-executor session {alpha['session_id']} (alpha)]" in turn["result"]
        logs = await ca.result("session.logs", {"session_id": "beta"})
        received = [e for e in logs["entries"] if e["type"] == "message"]
        assert [(e["from_session"], e["direction"]) for e in received] == [
            (alpha["session_id"], "in")
        ]
        # Coordinating beta and gamma (both on node-b) from node-a: served where they live.
        res = await ca.result(
            "session.coordinate",
            {
                "task_description": "Ship it",
                "assignments": {"beta": "docs", "gamma": "tests"},
                "timeout": 60,
            },
        )
        assert res["completed"] == 2, res
        assert set(res["results"]) == {beta["session_id"], gamma["session_id"]}
        # Sessions on two nodes cannot be coordinated in one call: it says where each is.
        split = await ca.call(
            "session.coordinate",
            {"task_description": "Ship it", "assignments": {"alpha": "x", "beta": "y"}},
        )
        assert split["error"]["code"] == -32602, split
        assert "alpha on node-a" in split["error"]["message"]
        assert "beta on node-b" in split["error"]["message"]
