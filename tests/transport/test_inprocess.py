"""The in-process transport: the service's handlers on an engine in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cc_executor.config import Settings
from cc_executor.protocol import ErrorCode, Method, Notification, ProtocolError
from cc_executor.server import ExecutorService
from cc_executor.transport.inprocess import InProcessTransport
from tests.support import live_members, wait_until

from .conftest import Recorder


@pytest.fixture
async def transport(settings: Settings, recorder: Recorder) -> AsyncIterator[InProcessTransport]:
    t = InProcessTransport(settings, recorder)
    try:
        yield t
    finally:
        await t.aclose()


async def test_it_starts_on_first_use(transport: InProcessTransport) -> None:
    assert transport.info() == {"started": False, "data_dir": None, "stats": None, "ready": False}
    pong = await transport.call(Method.PING)
    assert pong["pong"] is True
    info = transport.info()
    assert info["started"] and info["ready"] and info["stats"]["tasks_started"] == 0


async def test_results_come_before_their_tasks_notifications_even_concurrently(
    transport: InProcessTransport, recorder: Recorder
) -> None:
    async def run(command: str) -> str:
        started = await transport.call(Method.EXECUTE, {"command": command})
        recorder.follow(started["task_id"])  # the caller's next step after the result
        await recorder.completed(started["task_id"])
        return str(started["task_id"])

    for _ in range(3):
        ids = await asyncio.gather(*(run(f"echo {i}") for i in range(20)))
        for i, task_id in enumerate(ids):
            methods = recorder.methods(task_id)
            assert methods[0] == Notification.STARTED and methods[-1] == Notification.COMPLETED
            out = [p["data"] for m, p in recorder.events[task_id] if m == Notification.OUTPUT]
            assert out == [f"{i}\n"]
    assert recorder.early == []


async def test_errors_are_the_handlers_errors(transport: InProcessTransport) -> None:
    with pytest.raises(ProtocolError) as bad:
        await transport.call(Method.EXECUTE, {"command": "echo", "timeuot": 3})
    assert bad.value.code == ErrorCode.INVALID_PARAMS
    assert bad.value.data == [{"loc": "timeuot", "msg": "Extra inputs are not permitted"}]
    with pytest.raises(ProtocolError) as missing:
        await transport.call(Method.OUTPUT, {"task_id": "nope"})
    assert missing.value.code == ErrorCode.TASK_NOT_FOUND
    with pytest.raises(ProtocolError) as unknown:
        await transport.call("no.such.method")  # type: ignore[arg-type]
    assert unknown.value.code == ErrorCode.METHOD_NOT_FOUND


async def test_replies_are_the_services(recorder: Recorder, service: ExecutorService) -> None:
    """The same handlers shape the same replies: what the in-process engine answers for a
    command is what the service answers for it."""
    from cc_executor.client import ExecutorClient

    command = {"command": ["sh", "-c", "echo out; exit 3"], "name": "same"}
    async with ExecutorClient(service.url, service.token) as client:
        remote = await client.execute(command["command"], name="same")
        await remote.wait(30)
        wire = await client.status(remote.task_id)
    transport = InProcessTransport(
        service.settings, recorder, data_dirs=[service.settings.data_dir / "beside"]
    )
    try:
        started = await transport.call(Method.EXECUTE, command)
        recorder.follow(started["task_id"])
        assert set(started) == set(remote.info)
        await recorder.completed(started["task_id"])
        here = await transport.call(Method.STATUS, {"task_id": started["task_id"]})
    finally:
        await transport.aclose()
    assert set(here) == set(wire)
    for key in ("status", "exit_code", "name", "kind", "command", "stdout_bytes"):
        assert here[key] == wire[key], key


async def test_session_methods_run_on_its_session_manager(
    transport: InProcessTransport, tmp_path: Path, fake_claude_state: Path
) -> None:
    s = await transport.call(Method.SESSION_CREATE, {"working_dir": str(tmp_path), "name": "a"})
    r = await transport.call(
        Method.SESSION_SEND, {"session_id": "a", "message": "hello", "wait": True}
    )
    assert r["status"] == "completed" and "hello" in r["result"]
    listed = await transport.call(Method.SESSION_LIST)
    assert [x["session_id"] for x in listed["sessions"]] == [s["session_id"]]
    assert transport.runtime is not None  # sessions are stored beside its engine's records
    assert (transport.runtime.settings.data_dir / "sessions.sqlite3").exists()


async def test_each_transport_takes_the_first_free_data_dir(
    settings: Settings, recorder: Recorder
) -> None:
    slots = [settings.data_dir / f"slot-{n}" for n in range(2)]
    first = InProcessTransport(settings, recorder, data_dirs=slots)
    second = InProcessTransport(settings, recorder, data_dirs=slots)
    third = InProcessTransport(settings, recorder, data_dirs=slots)
    try:
        await first.call(Method.PING)
        await second.call(Method.PING)
        assert first.info()["data_dir"] == str(slots[0])
        assert second.info()["data_dir"] == str(slots[1])
        with pytest.raises(ProtocolError) as full:
            await third.call(Method.PING)
        assert full.value.code == ErrorCode.INTERNAL_ERROR
        assert "cannot start the local engine" in full.value.message
        assert str(slots[1]) in full.value.message
    finally:
        for t in (first, second, third):
            await t.aclose()


async def test_closing_ends_every_task_and_the_sink_hears_it(
    settings: Settings, recorder: Recorder
) -> None:
    t = InProcessTransport(settings, recorder)
    started = await t.call(Method.EXECUTE, {"command": "sleep 300 & sleep 300; wait"})
    recorder.follow(started["task_id"])
    pgid = started["pid"]
    assert await wait_until(lambda: len(live_members(pgid)) >= 2)
    await t.aclose()
    done = await recorder.completed(started["task_id"], timeout=0.1)
    assert done["status"] == "cancelled"
    assert not live_members(pgid)
    with pytest.raises(ProtocolError) as closed:
        await t.call(Method.PING)
    assert closed.value.code == ErrorCode.INVALID_STATE
