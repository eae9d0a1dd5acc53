"""One queue: tasks spread over the nodes within each one's capacity, the rest queued for
everyone, every task run once, every completion delivered to the client that asked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .support import client


async def test_tasks_spread_within_capacity_and_the_rest_wait_cluster_wide(
    nodes: Any, tmp_path: Path
) -> None:
    cap = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "2"}
    a, _b, c = [await nodes(n, **cap) for n in ("node-a", "node-b", "node-c")]
    gate = tmp_path / "gate"
    ran = tmp_path / "ran"
    ran.mkdir()
    script = (
        f'touch {ran}/"$CC_EXECUTOR_TASK_ID".$$; '
        f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done"
    )
    async with client(a) as cl:
        ids = [(await cl.result("execute", {"command": script}))["task_id"] for _ in range(9)]

        async def running_where() -> dict[str, list[str]]:
            st = await cl.result("status", {})
            by_node: dict[str, list[str]] = {}
            for t in st["tasks"]:
                if t["task_id"] in ids:
                    by_node.setdefault(t["node"] or "queued", []).append(t["status"])
            return by_node

        for _ in range(500):
            seen = await running_where()
            if all(seen.get(n, []).count("running") == 2 for n in ("node-a", "node-b", "node-c")):
                break
            await asyncio.sleep(0.02)
        assert seen.get("queued", []) == ["queued"] * 3, seen
        for n in ("node-a", "node-b", "node-c"):
            assert seen[n] == ["running", "running"], seen
        async with client(c) as other:  # queued is queued for every node
            st = await other.result("status", {})
            assert st["stats"]["queued"] == 3
            queued = [t for t in st["tasks"] if t["status"] == "queued"]
            assert len(queued) == 3 and all(t["node"] is None for t in queued)
        gate.touch()
        done = [await cl.until("process.completed", t) for t in ids]
        assert all(d["status"] == "completed" for d in done), done
        assert all(d["stdout_bytes"] == len("done\n") for d in done)
        st = await cl.result("status", {})
        nodes_used = {t["node"] for t in st["tasks"] if t["task_id"] in ids}
        assert nodes_used == {"node-a", "node-b", "node-c"}
        # each task's output reached this client, though most ran elsewhere
        for t in ids:
            assert cl.output_of(t) == b"done\n"
    runs = sorted(p.name.split(".")[0] for p in ran.iterdir())
    assert runs == sorted(ids)  # every task ran, and ran once


async def test_max_queued_tasks_holds_cluster_wide(nodes: Any, tmp_path: Path) -> None:
    env = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "1", "CC_EXECUTOR_MAX_QUEUED_TASKS": "2"}
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    gate = tmp_path / "gate"
    script = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    async with client(a) as ca, client(b) as cb:
        await ca.result("execute", {"command": script})
        await cb.result("execute", {"command": script})
        await ca.result("execute", {"command": script})  # queued 1
        await cb.result("execute", {"command": script})  # queued 2
        refused = await ca.call("execute", {"command": script})
        assert refused["error"]["code"] == -32004, refused  # CAPACITY_EXCEEDED
        assert "queued in the cluster" in refused["error"]["message"]
        pinned = await ca.call("execute", {"command": "true", "node": "nowhere"})
        assert pinned["error"]["code"] == -32602 and "node" in pinned["error"]["message"]
        gate.touch()
