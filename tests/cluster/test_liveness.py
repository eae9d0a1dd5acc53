"""Liveness: a node's loss is declared by one survivor within its TTL, its running tasks
`lost`, what it took but never started run by others; Redis restarted under a running
cluster: nodes reconnect, tasks keep running, records catch up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from .support import client

TTL = 2.0


def _blocked(gate: Path, ran: Path) -> str:
    return (
        f'touch {ran}/"$CC_EXECUTOR_TASK_ID".$$; '
        f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done"
    )


@pytest.mark.usefixtures("need_pid_namespaces")
async def test_a_killed_node_s_tasks_read_lost_and_the_rest_run_once(
    nodes: Any, tmp_path: Path
) -> None:
    env = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "2", "CC_EXECUTOR_NODE_TTL": str(TTL)}
    a = await nodes("node-a", **env)
    b = await nodes("node-b", isolate=True, **env)
    c = await nodes("node-c", **env)
    gate, ran = tmp_path / "gate", tmp_path / "ran"
    ran.mkdir()
    async with client(a) as cl:
        ids = [
            (await cl.result("execute", {"command": _blocked(gate, ran)}))["task_id"]
            for _ in range(8)
        ]

        async def where() -> dict[str, str | None]:
            st = await cl.result("status", {})
            return {t["task_id"]: t["node"] for t in st["tasks"] if t["task_id"] in ids}

        deadline = time.monotonic() + 30
        while True:
            placed = await where()
            if list(placed.values()).count("node-b") == 2 and len(list(ran.iterdir())) == 6:
                break
            assert time.monotonic() < deadline, placed
            await asyncio.sleep(0.02)
        on_b = [t for t, n in placed.items() if n == "node-b"]
        killed_at = time.monotonic()
        b.kill()  # the whole pid namespace goes: the node and every task it ran
        for tid in on_b:
            lost = await cl.until("process.completed", tid, timeout=TTL + 10)
            assert lost["status"] == "lost"
            assert "node-b" in lost["error"]
        detected = time.monotonic() - killed_at
        assert detected < TTL + 5, detected
        async with client(c) as other:
            for tid in on_b:
                rec = await other.result("status", {"task_id": tid})
                assert rec["status"] == "lost" and rec["node"] == "node-b"
            st = await other.result("status", {})
            b_info = next(n for n in st["stats"]["nodes"] if n["node"] == "node-b")
            assert b_info["alive"] is False
        gate.touch()
        others = [t for t in ids if t not in on_b]
        finals = [await cl.until("process.completed", t) for t in others]
        assert [f["status"] for f in finals] == ["completed"] * len(others), finals
        st = await cl.result("status", {})
        assert {t["node"] for t in st["tasks"] if t["task_id"] in others} <= {"node-a", "node-c"}
    runs = sorted(p.name.split(".")[0] for p in ran.iterdir())
    assert runs == sorted(ids)  # each ran exactly once, the lost ones included
    # node-b comes back under its own id: what was declared lost stays lost
    b2 = await nodes("node-b", **env)
    async with client(b2) as cb:
        for tid in on_b:
            assert (await cb.result("status", {"task_id": tid}))["status"] == "lost"
    print(f"node loss detected in {detected:.2f}s (ttl {TTL}s)")


async def test_redis_restart_under_a_running_cluster(
    nodes: Any, redis_server: Any, tmp_path: Path
) -> None:
    env = {"CC_EXECUTOR_NODE_TTL": str(TTL)}
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    gate = tmp_path / "gate"
    block = f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done"
    async with client(a) as cl:
        on_a = (await cl.result("execute", {"command": block}))["task_id"]
        on_b = (await cl.result("execute", {"command": block, "node": "node-b"}))["task_id"]
        await cl.until("process.started", on_b)
        redis_server.stop()  # and its data with it: no persistence
        await asyncio.sleep(TTL)  # down for a whole TTL
        redis_server.start()
        async with client(b) as cb:
            deadline = time.monotonic() + 20
            while True:  # the records catch up: each node wrote its own back
                st_b = await cb.call("status", {})
                seen_b = {t["task_id"]: t for t in st_b.get("result", {}).get("tasks", [])}
                alive = {
                    n["node"]
                    for n in st_b.get("result", {}).get("stats", {}).get("nodes", [])
                    if n["alive"]
                }
                if on_a in seen_b and alive == {"node-a", "node-b"}:
                    break
                assert time.monotonic() < deadline, st_b
                await asyncio.sleep(0.1)
            assert seen_b[on_a]["status"] == "running"  # kept running, and node-b knows
            assert seen_b[on_a]["node"] == "node-a"
            assert (await cl.result("status", {"task_id": on_b}))["status"] == "running"
        gate.touch()
        for tid in (on_a, on_b):
            assert (await cl.until("process.completed", tid))["status"] == "completed"
        async with client(b) as cb:
            for tid in (on_a, on_b):
                rec = await cb.result("status", {"task_id": tid})
                assert rec["status"] == "completed" and rec["stdout_bytes"] == 5
