"""Backends over real stdio: local fallback and return to the service, the connection pool."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp.client import Client

from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.support import FAKE_CLAUDE, free_port, live_members, wait_until

from .conftest import bridge_in_task, call, call_error, final, poll, read_all


async def _status(bridge: Client) -> dict[str, Any]:
    res = await bridge.read_resource("cc-executor://status")
    data: dict[str, Any] = json.loads(res.contents[0].text)  # type: ignore[union-attr]
    return data


async def test_fallback_runs_locally_then_returns_to_the_service(
    bridge_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {**bridge_env, "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{port}/ws"}
    async with bridge_in_task(env, bridge_log) as bridge:
        # The service is down: tasks run inside the bridge, through the same engine.
        local = await call(bridge, "execute_task", {"command": "echo local"})
        assert local["backend"] == "local" and local["output"] == "local\n"
        paused = await call(bridge, "execute_task", {"command": "sleep 300", "wait": False})
        assert paused["backend"] == "local"
        assert await wait_until(lambda: set(live_members(paused["pid"]).values()) == {"S"})
        r = await call(
            bridge, "control_execution", {"task_id": paused["task_id"], "action": "PAUSE"}
        )
        assert r["status"] == "paused" and r["backend"] == "local"
        assert set(live_members(paused["pid"]).values()) == {"T"}
        claude = await call(bridge, "execute_claude", {"prompt": "hi from local"})
        assert claude["backend"] == "local" and "hi from local" in claude["result"]

        # The service comes up on that port. It generates its token in the data dir on
        # first start; the bridge, given no token, reads it from there when it connects.
        svc_settings = Settings(
            data_dir=Path(bridge_env["CC_EXECUTOR_DATA_DIR"]),
            port=port,
            kill_grace_seconds=1.0,
            claude_bin=str(FAKE_CLAUDE),
            log_format="text",
        )
        assert not svc_settings.token_file.exists()
        service = ExecutorService(svc_settings)
        await service.start()
        try:
            remote = await poll(
                lambda: call(bridge, "execute_task", {"command": "echo remote"}),
                lambda r: r["backend"] == "websocket",
            )
            assert remote["backend"] == "websocket" and remote["output"] == "remote\n"
            assert (await _status(bridge))["backends"]["service_reachable"] is True

            # Tasks stay with the backend that runs them.
            s = await call(bridge, "get_execution_status", {"task_id": local["task_id"]})
            assert s["backend"] == "local" and s["status"] == "completed"
            assert await read_all(bridge, local["task_id"]) == b"local\n"
            s = await call(bridge, "get_execution_status", {"task_id": remote["task_id"]})
            assert s["backend"] == "websocket"
            r = await call(
                bridge, "control_execution", {"task_id": paused["task_id"], "action": "CANCEL"}
            )
            assert r["status"] == "cancelled" and r["backend"] == "local"
            assert not live_members(paused["pid"])
            listing = await call(bridge, "get_execution_status", {})
            backends = {t["task_id"]: t["backend"] for t in listing["tasks"]}
            assert backends[local["task_id"]] == "local"
            assert backends[remote["task_id"]] == "websocket"
            assert set(listing["stats"]) == {"websocket", "local"}
        finally:
            await service.stop()


async def test_websocket_mode_reports_an_unreachable_service(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    env = {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{free_port()}/ws",
        "CC_EXECUTOR_BRIDGE_MODE": "websocket",
        "CC_EXECUTOR_CONNECT_RETRY_FOR": "0",
    }
    async with bridge_in_task(env, bridge_log) as bridge:
        msg = await call_error(bridge, "execute_task", {"command": "echo never"})
        assert "unreachable" in msg and "cc-executor start" in msg


async def test_local_mode_never_touches_the_service(
    service_env: dict[str, str], service: ExecutorService, bridge_log: Path
) -> None:
    env = {**service_env, "CC_EXECUTOR_BRIDGE_MODE": "local"}
    async with bridge_in_task(env, bridge_log) as bridge:
        r = await call(bridge, "execute_task", {"command": "echo here"})
        assert r["backend"] == "local" and r["output"] == "here\n"
        assert service.health()["connections"] == 0


async def test_pooled_connection_closed_by_the_service_is_replaced(
    bridge: Client, service: ExecutorService, tmp_path: Path
) -> None:
    first = await call(bridge, "execute_task", {"command": "echo one"})
    assert first["backend"] == "websocket"
    assert service.health()["connections"] == 1
    assert service._server is not None
    for ws in list(service._server.connections):
        await ws.close()
    assert await wait_until(lambda: service.health()["connections"] == 0)
    # Once the bridge has seen the close (an idle pooled connection closed by the
    # service), the next call opens a fresh one. (A call already sent when the close
    # crosses it cannot know whether the service ran it: execute then reports the lost
    # connection rather than risk running the command twice.)
    await poll(lambda: _status(bridge), lambda d: d["backends"]["websocket"]["connections"] == 0)

    second = await call(bridge, "execute_task", {"command": "echo two"})
    assert second["backend"] == "websocket" and second["output"] == "two\n"  # no fallback
    assert service.health()["connections"] == 1
    ws_info = (await _status(bridge))["backends"]["websocket"]
    assert ws_info["connections_opened"] == 2 and ws_info["connections"] == 1

    # A call waiting on a task when its connection drops follows it on a new one. The task
    # waits on a FIFO that is written only after the connection was dropped.
    import asyncio

    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    waiting_on_task = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        waiting_on_task.set()  # progress comes only once the execute reply is in

    waiting = bridge.call_tool(
        "execute_task",
        {"command": f"read x < {fifo}; echo survived"},
        progress_callback=on_progress,
    )
    pending = asyncio.ensure_future(waiting)
    await asyncio.wait_for(waiting_on_task.wait(), 30)
    assert service.health()["running"] == 1
    for ws in list(service._server.connections):
        await ws.close()
    # The waiting call reconnects by itself to follow its task.
    await poll(
        lambda: _status(bridge), lambda d: d["backends"]["websocket"]["connections_opened"] >= 3
    )
    # Opening the FIFO for writing blocks until the task's shell has opened it to read.
    await asyncio.to_thread(fifo.write_text, "go\n")
    r = await asyncio.wait_for(pending, 30)
    assert not r.is_error, r.content
    assert r.structured_content is not None
    assert r.structured_content["output"] == "survived\n"


async def test_concurrent_calls_share_the_pool(bridge: Client, service: ExecutorService) -> None:
    import asyncio

    results = await asyncio.gather(
        *(call(bridge, "execute_task", {"command": f"sleep 0.2; echo {i}"}) for i in range(12))
    )
    assert [r["output"] for r in results] == [f"{i}\n" for i in range(12)]
    ws_info = (await _status(bridge))["backends"]["websocket"]
    assert 1 <= ws_info["connections"] <= 4  # pool_size
    listing = await call(bridge, "get_execution_status", {})
    assert sum(1 for t in listing["tasks"] if final(t)) >= 12
