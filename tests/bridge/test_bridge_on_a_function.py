"""The bridge's logic on a transport made of one function: what it sends, what it answers.

The function plays the service: it answers each call and sends notifications the way a
real transport does, after the reply that names their task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cc_executor.protocol import (
    ErrorCode,
    ExecuteParams,
    Method,
    Notification,
    ProtocolError,
)
from cc_executor.transport import (
    CHANNEL_LOST,
    FunctionTransport,
    NotificationSink,
    ServiceUnavailable,
)
from mcp_bridge.bridge import Bridge, ToolFailure
from mcp_bridge.sessions import SessionTools
from mcp_bridge.settings import BridgeSettings
from tests.support import eventually

Handler = Callable[[Method, dict[str, Any]], Awaitable[dict[str, Any]]]


class FakeService:
    """A handler and the sink it was given; `later` sends notifications once the current
    reply has been handed back, as real transports do."""

    def __init__(self, serve: Callable[[FakeService, Method, dict[str, Any]], dict[str, Any]]):
        self.serve = serve
        self.calls: list[tuple[Method, dict[str, Any]]] = []
        self.sink: NotificationSink | None = None

    async def __call__(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        return self.serve(self, method, params)

    def connect(self, sink: NotificationSink) -> FunctionTransport:
        self.sink = sink
        return FunctionTransport(self, sink, name="fake")

    def later(self, *notes: tuple[str, dict[str, Any]]) -> None:
        def send() -> None:
            assert self.sink is not None
            for method, params in notes:
                self.sink(method, params)

        asyncio.get_running_loop().call_soon(send)

    def methods(self) -> list[Method]:
        return [m for m, _ in self.calls]


def _out(task_id: str, offset: int, data: str) -> tuple[str, dict[str, Any]]:
    return Notification.OUTPUT, {
        "task_id": task_id,
        "stream": "stdout",
        "offset": offset,
        "data": data,
    }


def _done(task_id: str, stdout_bytes: int, status: str = "completed") -> tuple[str, dict[str, Any]]:
    return Notification.COMPLETED, {
        "task_id": task_id,
        "status": status,
        "exit_code": 0,
        "signal": None,
        "duration_s": 0.01,
        "stdout_bytes": stdout_bytes,
        "stderr_bytes": 0,
    }


def _started(task_id: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": "running", "pid": 4242}


def _settings(**kw: Any) -> BridgeSettings:
    return BridgeSettings(progress_interval=0.01, heartbeat_interval=0.05, **kw)


async def test_a_waited_task_is_answered_from_its_notifications() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        assert method == Method.EXECUTE and params == {"command": "echo hello"}
        svc.later(
            (Notification.STARTED, {"task_id": "t1", "pid": 4242, "status": "running"}),
            _out("t1", 0, "hello\n"),
            _done("t1", 6),
        )
        return _started("t1")

    svc = FakeService(serve)
    bridge = Bridge(_settings(), svc.connect)
    r = await bridge.run_task(ExecuteParams(command="echo hello"), wait=True)
    assert r["status"] == "completed" and r["output"] == "hello\n"
    assert r["backend"] == "fake" and r["output_truncated"] is False
    assert svc.methods() == [Method.EXECUTE]  # the whole output came with the task
    await bridge.close()


async def test_a_lost_channel_is_followed_again_from_the_bytes_it_had() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        if method == Method.EXECUTE:
            svc.later(_out("t2", 0, "a\n"), (CHANNEL_LOST, {"task_id": "t2", "error": "gone"}))
            return _started("t2")
        assert method == Method.SUBSCRIBE
        svc.later(_out("t2", params["from_offset"], "b\n"), _done("t2", 4))
        return {"task_id": "t2", "status": "running", "stdout_bytes": 2, "stderr_bytes": 0}

    svc = FakeService(serve)
    bridge = Bridge(_settings(), svc.connect)
    r = await bridge.run_task(ExecuteParams(command="x"), wait=True)
    assert r["output"] == "a\nb\n"
    assert svc.calls[1] == (
        Method.SUBSCRIBE,
        {"task_id": "t2", "from_offset": 2, "stderr_from_offset": 0},
    )
    await bridge.close()


async def test_past_the_wait_limit_it_answers_running_and_stops_the_stream() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        if method == Method.EXECUTE:
            svc.later(_out("t3", 0, "working\n"))
            return _started("t3")
        assert method == Method.UNSUBSCRIBE
        return {"task_id": "t3", "unsubscribed": True}

    svc = FakeService(serve)
    bridge = Bridge(_settings(wait_timeout=0.2), svc.connect)
    progress: list[str] = []

    async def report(message: str) -> None:
        progress.append(message)

    r = await bridge.run_task(ExecuteParams(command="x"), wait=True, report=report)
    assert r["status"] == "running" and r["last_output"] == "working"
    assert "Do not start it again" in r["hint"]
    assert "working" in progress
    await eventually(lambda: _async(svc.methods()), lambda m: m[-1] == Method.UNSUBSCRIBE)
    await bridge.close()


async def test_not_waiting_stops_the_stream_at_once() -> None:
    svc = FakeService(lambda svc, m, p: _started("t4") if m == Method.EXECUTE else {})
    bridge = Bridge(_settings(), svc.connect)
    r = await bridge.run_task(ExecuteParams(command="x"), wait=False)
    assert r["task_id"] == "t4" and "Poll get_execution_status" in r["hint"]
    await eventually(
        lambda: _async(svc.methods()), lambda m: m == [Method.EXECUTE, Method.UNSUBSCRIBE]
    )
    await bridge.close()


async def test_a_client_cancelling_the_call_cancels_the_task() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        if method == Method.EXECUTE:
            return _started("t5")
        if method == Method.CONTROL:
            svc.later(_done("t5", 0, status="cancelled"))
            return {"task_id": "t5", "action": params["action"], "status": "cancelled"}
        return {"task_id": "t5", "unsubscribed": False}

    svc = FakeService(serve)
    bridge = Bridge(_settings(), svc.connect)
    call = asyncio.ensure_future(bridge.run_task(ExecuteParams(command="x"), wait=True))
    await eventually(lambda: _async(svc.methods()), lambda m: m == [Method.EXECUTE])
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (Method.CONTROL, {"task_id": "t5", "action": "CANCEL"}) in svc.calls
    await bridge.close()


async def test_errors_reach_the_agent_as_tool_failures() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        if method == Method.EXECUTE:
            raise ProtocolError(ErrorCode.COMMAND_NOT_ALLOWED, "command 'rm' is not allowed")
        raise ServiceUnavailable("cannot reach the service at ws://x")

    svc = FakeService(serve)
    bridge = Bridge(_settings(), svc.connect)
    with pytest.raises(ProtocolError, match="not allowed"):
        await bridge.run_task(ExecuteParams(command="rm -rf /"), wait=True)
    sessions = SessionTools(bridge.settings, bridge.transport)
    with pytest.raises(ToolFailure) as failed:
        await sessions.list_sessions(include_ended=False)
    assert failed.value.code == ErrorCode.SERVICE_UNAVAILABLE
    assert "sessions need the executor service" in failed.value.message
    assert svc.calls[-1] == (Method.SESSION_LIST, {"include_ended": False})
    await bridge.close()


async def test_listings_say_who_ran_each_task() -> None:
    def serve(svc: FakeService, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        assert (method, params) == (Method.STATUS, {"limit": 5})
        tasks = [{"task_id": "a", "status": "completed", "kind": "command", "command": "ls"}]
        return {"tasks": tasks, "stats": {"running": 0}}

    bridge = Bridge(_settings(), FakeService(serve).connect)
    listing = await bridge.status(None, 5)
    assert listing["tasks"] == [
        {"task_id": "a", "status": "completed", "kind": "command", "backend": "fake", "what": "ls"}
    ]
    await bridge.close()


async def _async(value: Any) -> Any:
    return value
