"""One view: three node processes on one Redis list each other's tasks and each other."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from .support import client


def _health(node: Any) -> dict[str, Any]:
    url = node.url.replace("ws://", "http://").replace("/ws", "/health")
    return httpx.get(url, timeout=5, trust_env=False).json()


async def test_three_nodes_see_each_others_tasks_and_nodes(nodes: Any, redis_server: Any) -> None:
    a, b, c = [await nodes(n) for n in ("node-a", "node-b", "node-c")]
    assert a.token == b.token == c.token  # one token for the cluster
    ids = {}
    for n in (a, b, c):
        async with client(n) as cl:
            started = await cl.result("execute", {"command": f"echo hello from {n.node_id}"})
            ids[n.node_id] = started["task_id"]
            done = await cl.until("process.completed", started["task_id"])
            assert done["status"] == "completed"
    async with client(c) as cl:
        listed = await cl.result("status", {})
        by_id = {t["task_id"]: t for t in listed["tasks"]}
        for node_id, task_id in ids.items():
            assert by_id[task_id]["node"] == node_id
            assert by_id[task_id]["status"] == "completed"
        nodes_seen = {n["node"]: n for n in listed["stats"]["nodes"]}
        assert set(nodes_seen) == {"node-a", "node-b", "node-c"}
        for info in nodes_seen.values():
            assert info["alive"] is True
            assert info["capacity"] == 32
            assert 0 <= info["heartbeat_age_s"] < 10
        one = await cl.result("status", {"task_id": ids["node-a"]})
        assert one["node"] == "node-a" and one["stdout_bytes"] == len("hello from node-a\n")
    health = await asyncio.to_thread(_health, b)
    assert health["node"] == "node-b"
    assert health["cluster"]["redis"] == redis_server.url  # no credentials in this one
    assert health["cluster"]["connected"] is True
