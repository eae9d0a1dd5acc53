"""Every method on every node: control, output and subscribe of a task another node runs."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path
from typing import Any

from cc_executor.engine import process

from .support import claude_env, client

BLOB = (
    "import sys, random; r = random.Random(7); w = sys.stdout.buffer.write\n"
    "for i in range({n}): w(r.randbytes(65536)); w('é€\\n'.encode() * 50)\n"
)


def blob_command(chunks: int) -> list[str]:
    return [sys.executable, "-c", BLOB.format(n=chunks)]


def members(pid: int) -> dict[int, str]:
    return {p: s for p, s in process.group_members(pid).items() if s not in "ZX"}


async def read_all(cl: Any, task_id: str, limit: int = 300_000) -> bytes:
    out, pos = [], 0
    while True:
        r = await cl.result("output", {"task_id": task_id, "offset": pos, "limit": limit})
        data = base64.b64decode(r["data"]) if r["encoding"] == "base64" else r["data"].encode()
        assert r["offset"] == pos and r["size"] == len(data)
        out.append(data)
        pos += len(data)
        if r["eof"]:
            return b"".join(out)
        assert data, r


async def test_any_node_controls_a_task_on_another(nodes: Any, tmp_path: Path) -> None:
    _a, b, c = [await nodes(n) for n in ("node-a", "node-b", "node-c")]
    gate = tmp_path / "gate"
    async with client(c) as cl:
        started = await cl.result(
            "execute",
            {"command": f"while [ ! -e {gate} ]; do sleep 0.02; done", "node": "node-b"},
        )
        tid = started["task_id"]
        assert (await cl.until("process.started", tid))["task_id"] == tid
        rec = await cl.result("status", {"task_id": tid})
        assert rec["node"] == "node-b" and rec["status"] == "running"
        pid = rec["pid"]
        paused = await cl.result("control", {"task_id": tid, "action": "PAUSE"})
        assert paused["status"] == "paused"
        states = members(pid)
        assert states and all(s == "T" for s in states.values()), states  # really stopped
        assert (await cl.until("process.paused", tid))["status"] == "paused"
        again = await cl.call("control", {"task_id": tid, "action": "PAUSE"})
        assert again["error"]["code"] == -32003  # INVALID_STATE, from node-b
        resumed = await cl.result("control", {"task_id": tid, "action": "RESUME"})
        assert resumed["status"] == "running"
        assert all(s != "T" for s in members(pid).values())
        cancelled = await cl.result("control", {"task_id": tid, "action": "CANCEL"})
        assert cancelled["status"] == "cancelled"
        assert not members(pid)  # the reply came once the group was gone
        done = await cl.until("process.completed", tid)
        assert done["status"] == "cancelled"
    async with client(b) as cb:  # the owner agrees
        assert (await cb.result("status", {"task_id": tid}))["status"] == "cancelled"


async def test_a_queued_task_is_cancelled_from_any_node(nodes: Any, tmp_path: Path) -> None:
    env = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "1"}
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    gate = tmp_path / "gate"
    block = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    async with client(a) as ca, client(b) as cb:
        await ca.result("execute", {"command": block})
        await cb.result("execute", {"command": block})
        waiting = (await ca.result("execute", {"command": "echo never"}))["task_id"]
        assert (await cb.result("status", {"task_id": waiting}))["status"] == "queued"
        res = await cb.result("control", {"task_id": waiting, "action": "CANCEL"})
        assert res["status"] == "cancelled"
        done = await ca.until("process.completed", waiting)  # its creator hears of it
        assert done["status"] == "cancelled"
        gate.touch()
        assert (await ca.result("status", {"task_id": waiting}))["pid"] is None


async def test_output_reads_byte_exact_from_any_node_even_after_its_node_is_gone(
    nodes: Any,
) -> None:
    retention = 1_000_000
    env = {"CC_EXECUTOR_OUTPUT_RETENTION_BYTES": str(retention)}
    a, b = await nodes("node-a", **env), await nodes("node-b", **env)
    async with client(a) as ca:
        tid = (await ca.result("execute", {"command": blob_command(40), "node": "node-b"}))[
            "task_id"
        ]
        done = await ca.until("process.completed", tid)
        assert done["status"] == "completed"
        truth = (b.data_dir / "logs" / f"{tid}.stdout").read_bytes()
        assert len(truth) == done["stdout_bytes"] > 2_000_000
        assert ca.output_of(tid) == truth  # the live delivery, from node-b's Redis stream
        assert await read_all(ca, tid) == truth  # old ranges from node-b, the rest from Redis
        b.stop()  # node-b leaves: what Redis retains still reads from node-a
        tail_from = len(truth) - retention * 15 // 16  # Redis keeps at least 15/16 of it
        r = await ca.result("output", {"task_id": tid, "offset": tail_from, "limit": retention})
        data = base64.b64decode(r["data"]) if r["encoding"] == "base64" else r["data"].encode()
        assert (len(data), r["eof"]) == (len(truth) - tail_from, True), r["total"]
        assert data == truth[tail_from:]
        gone = await ca.call("output", {"task_id": tid, "offset": 0})
        assert gone["error"]["code"] == -32009  # OUTPUT_UNAVAILABLE
        assert "node-b" in gone["error"]["message"]


async def test_subscribe_from_another_node_is_lossless_with_a_slow_reader(nodes: Any) -> None:
    small = {"CC_EXECUTOR_SUBSCRIBER_QUEUE_BYTES": "65536"}
    a, b = await nodes("node-a", **small), await nodes("node-b")
    async with client(b) as cb:
        tid = (await cb.result("execute", {"command": blob_command(60), "node": "node-b"}))[
            "task_id"
        ]
        async with client(a, max_queue=1) as ca:
            await ca.result("subscribe", {"task_id": tid, "from_offset": 0})
            ca.paused.clear()  # the client stops reading: node-a's cursor falls behind
            await cb.until("process.completed", tid)
            await asyncio.sleep(0.5)  # let node-a's socket fill while the client sleeps
            ca.paused.set()
            done = await ca.until("process.completed", tid)
            truth = (b.data_dir / "logs" / f"{tid}.stdout").read_bytes()
            got = ca.output_of(tid)
            assert len(got) == len(truth) == done["stdout_bytes"]
            assert got == truth
            assert not [n for n in ca.notifications if n["method"] == "process.dropped"]
            # the completion came after the last byte
            methods = [n["method"] for n in ca.notifications if n["params"]["task_id"] == tid]
            assert methods[-1] == "process.completed"


async def test_a_claude_tasks_events_reach_a_subscriber_on_another_node(
    nodes: Any, tmp_path: Path
) -> None:
    """`claude.event` is the task's own (not a control event): it reaches a subscriber on
    another node too, and dashboards listening anywhere do not get it."""
    env = claude_env(tmp_path)
    a = await nodes("node-a", **env)
    await nodes("node-b", **env)
    async with client(a) as ca, client(a) as listener:
        await listener.result("listen", {})
        started = await ca.result(
            "execute_claude",
            {
                "prompt": "FAKE_SLOW=0.3 FAKE_TOOL_USE say hi",
                "node": "node-b",
                "cwd": str(tmp_path),
            },
        )
        tid = started["task_id"]
        await ca.result("subscribe", {"task_id": tid, "from_offset": 0})
        done = await ca.until("process.completed", tid)
        assert done["status"] == "completed"
        events = [
            n["params"]["event"]
            for n in ca.notifications
            if n["method"] == "claude.event" and n["params"]["task_id"] == tid
        ]
        assert events, [n["method"] for n in ca.notifications]
        assert events[-1]["type"] == "result"
        await listener.until("process.completed", tid)
        assert not [n for n in listener.notifications if n["method"] == "claude.event"]
