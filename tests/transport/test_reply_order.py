"""On the wire: an `execute` reply frame comes before every notification of its task.

What lets a client register a task when its reply arrives, with no buffer of early
events: checked on raw frames, for tasks that print and exit at once, alone and batched.
"""

from __future__ import annotations

import itertools
from typing import Any

from cc_executor.protocol import Method, Notification
from cc_executor.server import ExecutorService

from ..service.conftest import RawWS, raw_connect

_ids = itertools.count(1)


def _execute(command: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": next(_ids),
        "method": Method.EXECUTE,
        "params": {"command": command},
    }


async def _frames_until_completed(raw: RawWS, task_ids: set[str]) -> list[dict[str, Any]]:
    """Every frame up to the completion of each of `task_ids`."""
    frames: list[dict[str, Any]] = []
    open_ids = set(task_ids)
    while open_ids:
        msg = await raw.recv()
        assert isinstance(msg, dict) and "method" in msg, f"unexpected frame {msg}"
        frames.append(msg)
        if msg["method"] == Notification.COMPLETED:
            open_ids.discard(msg["params"]["task_id"])
    return frames


async def test_the_reply_comes_first_for_a_task_that_exits_at_once(
    service: ExecutorService,
) -> None:
    async with raw_connect(service.url, service.token) as raw:
        for command in ("echo hi", ["echo", "hi"], ["/no/such/program"]):
            for _ in range(10):
                req = _execute(command)
                await raw.send(req)
                reply = await raw.recv()
                assert reply.get("id") == req["id"], f"a frame came before the reply: {reply}"
                task_id = reply["result"]["task_id"]
                frames = await _frames_until_completed(raw, {task_id})
                assert {f["params"]["task_id"] for f in frames} == {task_id}
                if command != ["/no/such/program"]:
                    assert frames[0]["method"] == Notification.STARTED
                    assert any(f["method"] == Notification.OUTPUT for f in frames)


async def test_a_batch_reply_comes_before_the_notifications_of_its_tasks(
    service: ExecutorService,
) -> None:
    async with raw_connect(service.url, service.token) as raw:
        for _ in range(10):
            batch = [_execute("echo hi"), _execute("echo there"), _execute(["true"])]
            await raw.send(batch)
            reply = await raw.recv()
            assert isinstance(reply, list), f"a frame came before the batch reply: {reply}"
            assert sorted(r["id"] for r in reply) == sorted(r["id"] for r in batch)
            task_ids = {r["result"]["task_id"] for r in reply}
            frames = await _frames_until_completed(raw, task_ids)
            assert {f["params"]["task_id"] for f in frames} == task_ids


async def test_pipelined_requests_each_reply_before_its_own_tasks_events(
    service: ExecutorService,
) -> None:
    """Many `execute` frames in flight on one connection: a frame's reply releases only
    the tasks that frame created, never another frame's whose reply is not out yet."""
    async with raw_connect(service.url, service.token) as raw:
        for _ in range(5):
            reqs = [_execute("echo hi") for _ in range(20)]
            for req in reqs:
                await raw.send(req)
            replied: dict[int, str] = {}
            seen_tasks: set[str] = set()
            completed: set[str] = set()
            while len(replied) < len(reqs) or completed != set(replied.values()):
                msg = await raw.recv()
                if "id" in msg:
                    replied[msg["id"]] = msg["result"]["task_id"]
                    continue
                task_id = msg["params"]["task_id"]
                assert task_id in replied.values(), f"{msg['method']} came before its reply"
                seen_tasks.add(task_id)
                if msg["method"] == Notification.COMPLETED:
                    completed.add(task_id)
            assert seen_tasks == set(replied.values())
