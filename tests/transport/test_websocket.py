"""The WebSocket transport against the real service: order, lost channels, no service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cc_executor.protocol import ErrorCode, Method, Notification, ProtocolError
from cc_executor.server import ExecutorService
from cc_executor.transport import CHANNEL_LOST, ServiceUnavailable
from cc_executor.transport.websocket import WebSocketTransport
from tests.support import eventually, free_port

from .conftest import Recorder


@pytest.fixture
async def transport(
    service: ExecutorService, recorder: Recorder
) -> AsyncIterator[WebSocketTransport]:
    t = WebSocketTransport(service.url, service.token, recorder, pool_size=2)
    try:
        yield t
    finally:
        await t.aclose()


async def test_a_task_started_on_the_reply_misses_none_of_its_notifications(
    transport: WebSocketTransport, recorder: Recorder
) -> None:
    # `echo` prints and exits at once: its notifications are on the wire right behind the
    # reply, and the caller registers the task only when it has resumed with the reply.
    for _ in range(30):
        started = await transport.call(Method.EXECUTE, {"command": "echo hi"})
        recorder.follow(started["task_id"])
        done = await recorder.completed(started["task_id"])
        assert done["status"] == "completed"
        methods = recorder.methods(started["task_id"])
        assert methods[0] == Notification.STARTED and Notification.OUTPUT in methods
    assert recorder.early == []


async def test_errors_are_protocol_errors(transport: WebSocketTransport) -> None:
    with pytest.raises(ProtocolError) as bad:
        await transport.call(Method.EXECUTE, {"command": "echo", "timeuot": 3})
    assert bad.value.code == ErrorCode.INVALID_PARAMS
    assert "timeuot" in str(bad.value.data)
    with pytest.raises(ProtocolError) as missing:
        await transport.call(Method.STATUS, {"task_id": "nope"})
    assert missing.value.code == ErrorCode.TASK_NOT_FOUND


async def test_a_closed_connection_is_reported_per_task_and_subscribe_goes_on(
    transport: WebSocketTransport, service: ExecutorService, recorder: Recorder, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    cmd = f"echo before; while [ ! -e {gate} ]; do sleep 0.02; done; echo after"
    started = await transport.call(Method.EXECUTE, {"command": cmd})
    task_id = started["task_id"]
    recorder.follow(task_id)
    await recorder.until(task_id, lambda m, p: m == Notification.OUTPUT)
    assert service._server is not None
    for ws in list(service._server.connections):
        await ws.close()
    lost = await recorder.until(task_id, lambda m, p: m == CHANNEL_LOST)
    assert lost["task_id"] == task_id and lost["error"]

    again = await transport.call(
        Method.SUBSCRIBE, {"task_id": task_id, "from_offset": len(b"before\n")}
    )
    assert again["status"] == "running"
    gate.touch()
    done = await recorder.completed(task_id)
    assert done["status"] == "completed"
    replayed = [p["data"] for m, p in recorder.events[task_id] if m == Notification.OUTPUT]
    assert replayed == ["before\n", "after\n"]  # nothing twice, nothing missing
    assert transport.info()["connections_opened"] == 2


async def test_unsubscribe_stops_the_task_s_notifications(
    transport: WebSocketTransport, recorder: Recorder
) -> None:
    started = await transport.call(
        Method.EXECUTE, {"command": "while :; do echo tick; sleep 0.02; done"}
    )
    task_id = started["task_id"]
    recorder.follow(task_id)
    await recorder.until(task_id, lambda m, p: m == Notification.OUTPUT)
    r = await transport.call(Method.UNSUBSCRIBE, {"task_id": task_id})
    assert r["unsubscribed"] is True  # sent over the connection that carries them
    seen = len(recorder.events[task_id])
    # The task goes on printing (its log grows) while none of it reaches the sink.
    page = await transport.call(Method.OUTPUT, {"task_id": task_id, "limit": 0})
    await eventually(
        lambda: transport.call(Method.OUTPUT, {"task_id": task_id, "limit": 0}),
        lambda later: later["total"] >= page["total"] + 5 * len(b"tick\n"),
    )
    await transport.call(Method.CONTROL, {"task_id": task_id, "action": "CANCEL"})
    await transport.call(Method.PING)
    assert len(recorder.events[task_id]) == seen


async def test_no_service_is_service_unavailable(recorder: Recorder) -> None:
    t = WebSocketTransport(f"ws://127.0.0.1:{free_port()}/ws", "x", recorder, connect_timeout=1)
    try:
        with pytest.raises(ServiceUnavailable, match="cc-executor start"):
            await t.call(Method.PING)
        assert t.info()["ready"] is False
    finally:
        await t.aclose()
    with pytest.raises(ServiceUnavailable):
        await t.call(Method.PING)
