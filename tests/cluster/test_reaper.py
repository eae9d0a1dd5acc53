"""What a dead node had taken from the queue but not started goes back and runs elsewhere;
what it had claimed is declared lost, never run a second time."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from cc_executor.cluster import keys
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import record_to_row

from .support import client


def _plant_dead_node(r: redis.Redis, taken_id: str, claimed_id: str) -> None:
    """A node that died after taking two entries: one claimed (about to spawn), one not."""
    dead = "node-dead"
    info = {"node": dead, "ttl": 1.0, "at": time.time() - 60, "running": 0, "capacity": 2}
    r.hset(keys.NODES, dead, orjson.dumps(info))
    for tid in (taken_id, claimed_id):
        rec = TaskRecord(task_id=tid, command=f"echo {tid}", argv=["/bin/sh", "-c", f"echo {tid}"])
        _, created, _, blob = record_to_row(rec)
        request = orjson.dumps({"method": "execute", "params": {"command": f"echo {tid}"}})
        r.hset(keys.task(tid), mapping={"s": "queued", "d": blob, "q": request})
        r.zadd(keys.TASKS, {tid: created})
        r.sadd(keys.UNFINISHED, tid)
    r.lpush(keys.taken(dead), taken_id)
    r.hset(keys.task(claimed_id), "n", dead)
    r.sadd(keys.node_tasks(dead), claimed_id)
    r.set(keys.QUEUED_COUNT, 1)


async def test_taken_entries_of_a_dead_node_go_back_and_claimed_ones_are_lost(
    nodes: Any, redis_server: Any
) -> None:
    r = redis.Redis(port=redis_server.port)
    _plant_dead_node(r, "takenbutnotstarted", "claimedbutunknown")
    a = await nodes("node-a", CC_EXECUTOR_NODE_TTL="1")
    async with client(a) as cl:
        await cl.result("subscribe", {"task_id": "takenbutnotstarted", "from_offset": 0})
        done = await cl.until("process.completed", "takenbutnotstarted", timeout=20)
        assert done["status"] == "completed"
        assert cl.output_of("takenbutnotstarted") == b"takenbutnotstarted\n"
        rec = await cl.result("status", {"task_id": "takenbutnotstarted"})
        assert rec["node"] == "node-a"
        lost = await cl.result("status", {"task_id": "claimedbutunknown"})
        assert lost["status"] == "lost" and lost["node"] == "node-dead"
        assert "node node-dead was lost" in lost["error"] and lost["pid"] is None
    assert r.llen(keys.taken("node-dead")) == 0 and r.scard(keys.node_tasks("node-dead")) == 0
    assert int(r.get(keys.QUEUED_COUNT) or 0) == 0
