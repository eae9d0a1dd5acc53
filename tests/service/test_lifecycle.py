"""The service as a real process: SIGKILL and restart (records kept, `lost`, no survivor),
SIGTERM/SIGINT (every group ended before exit)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.engine import SqliteTaskStore
from tests.support import ServiceProcess, live_members, wait_until

from .conftest import MakeService, raw_connect

TREE = "echo hello; sh -c 'sleep 300; true' & sleep 300 & wait"


async def test_restart_after_sigkill_marks_lost_and_kills_survivors(
    service_process: Callable[..., Any],
) -> None:
    sp: ServiceProcess = await service_process(CC_EXECUTOR_MAX_CONCURRENT_TASKS="1")
    async with ExecutorClient(sp.url, sp.token) as c:
        running = await c.execute(TREE, name="victim")
        queued = await c.execute(["echo", "never"])
        assert queued.info["status"] == "queued"
        pgid = running.pid
        assert pgid is not None
        assert await wait_until(lambda: len(live_members(pgid)) == 4)
        seen = 0
        async for ev in running.events():
            if ev["method"] == "process.output":
                seen += len(output_bytes(ev["params"]))
                if seen == 6:
                    break
        await c.status()  # the store answers after every earlier write: records are on disk
        sp.kill9()
    # The crash left the task's processes behind, orphaned.
    assert len(live_members(pgid)) == 4

    again: ServiceProcess = await service_process(sp.data_dir)
    assert again.token == sp.token
    assert not live_members(pgid), live_members(pgid)  # reaped during start-up
    async with ExecutorClient(again.url, again.token) as c:
        rec = await c.status(running.task_id)
        assert rec["status"] == "lost" and rec["name"] == "victim"
        assert "killed" in rec["error"]
        assert rec["pid"] == pgid and rec["ended_at"] is not None
        assert rec["stdout_bytes"] == 6
        assert await c.read_output(running.task_id) == b"hello\n"
        q = await c.status(queued.task_id)
        assert q["status"] == "cancelled" and q["pid"] is None
        stats = (await c.status())["stats"]
        assert stats["lost_on_start"] == 1 and stats["running"] == 0
        # Lost is final: control says so.
        with pytest.raises(Exception) as info:
            await c.control(running.task_id, "CANCEL")
        assert getattr(info.value, "code", None) == -32003


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_ends_every_group_before_exit(
    service_process: Callable[..., Any], sig: signal.Signals
) -> None:
    sp: ServiceProcess = await service_process()
    async with ExecutorClient(sp.url, sp.token) as c, raw_connect(sp.url, sp.token) as idle:
        plain = await c.execute(TREE)
        stubborn = await c.execute("trap '' TERM; " + TREE)
        assert plain.pid is not None and stubborn.pid is not None
        pgids: list[int] = [plain.pid, stubborn.pid]
        for pgid in pgids:
            assert await wait_until(lambda pgid=pgid: len(live_members(pgid)) == 4)  # type: ignore[misc]
        sp.send_signal(sig)
        # Wait without blocking the loop: this client must answer the close handshake.
        assert await wait_until(lambda: not sp.alive(), timeout=30)
        assert sp.returncode == 0
        # Connected clients were told: a close frame "going away", not a dropped socket.
        await idle.ws.wait_closed()
        assert idle.ws.close_code == 1001
    for pgid in pgids:
        assert not live_members(pgid), live_members(pgid)
    logs = sp.log_records()  # structured: one JSON object per line, task ids included
    assert any(r.get("msg", "").startswith("shutting down") for r in logs)
    finished = {r.get("task_id") for r in logs if r.get("msg") == "task finished"}
    assert {plain.task_id, stubborn.task_id} <= finished
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in logs)
    store = SqliteTaskStore(sp.data_dir / "tasks.sqlite3")
    await store.open()
    try:
        recs = {r.task_id: r for r in await store.list()}
    finally:
        await store.close()
    assert str(recs[plain.task_id].status) == "cancelled"
    assert str(recs[stubborn.task_id].status) == "cancelled"
    assert recs[stubborn.task_id].signal == signal.SIGKILL


async def test_in_process_stop_closes_connections_cleanly(make_service: MakeService) -> None:
    svc = await make_service()
    async with raw_connect(svc.url, svc.token) as r:
        tid = (await r.result("execute", {"command": ["sleep", "300"]}))["task_id"]
        live = svc.engine.live_task(tid)
        assert live is not None and live.record.pid is not None
        pid = live.record.pid
        await svc.stop()
        assert svc.stopped.is_set()
        assert not live_members(pid)
        await r.ws.wait_closed()
        assert r.ws.close_code == 1001
        # It had seen its task end before the close.
        while True:
            msg = await r.recv()
            if msg.get("method") == "process.completed":
                assert msg["params"]["status"] == "cancelled"
                break
