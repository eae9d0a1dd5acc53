"""Hot sessions through the real service: one live fake `claude` per session, its turns
written to its stdin as stream-json (see cc_executor/sessions/hot.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.config import Settings
from cc_executor.protocol import ErrorCode
from tests.sessions.conftest import ANSWER, call, call_error, turns_of
from tests.support import eventually, pid_alive

pytestmark = pytest.mark.usefixtures("fake_claude_state")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings (tests/conftest.py) with room for two hot sessions."""
    return settings.model_copy(update={"max_hot_sessions": 2})


async def create(client: ExecutorClient, workdir: Path, **params: Any) -> str:
    s = await call(client, "session.create", working_dir=str(workdir), hot=True, **params)
    assert s["hot"] is True
    sid: str = s["session_id"]
    return sid


async def send_wait(client: ExecutorClient, session: str, message: str) -> Any:
    return await call(client, "session.send", session_id=session, message=message, wait=True)


async def pid_of(client: ExecutorClient, task_id: str) -> int:
    pid: int = (await client.status(task_id))["pid"]
    return pid


async def ended(client: ExecutorClient, task_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: client.status(task_id), lambda r: r["status"] not in ("running", "paused")
    )


async def test_hot_turns_reuse_one_process_and_keep_context(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = await create(client, workdir)
    first = await send_wait(client, sid, "hello")
    second = await send_wait(client, sid, "and then?")
    third = await send_wait(client, sid, "last")
    assert [t["status"] for t in (first, second, third)] == ["completed"] * 3
    assert first["result"] == ANSWER + "hello"
    assert second["result"] == ANSWER + "and then? (turn 2, remembers 1 earlier prompts)"
    assert third["result"].endswith("(turn 3, remembers 2 earlier prompts)")
    assert first["task_id"] == second["task_id"] == third["task_id"]
    rec = await client.status(first["task_id"])
    assert rec["status"] == "running" and pid_alive(rec["pid"])  # still there for turn 4
    assert len({first["claude_session_id"], third["claude_session_id"]}) == 1

    # Each turn's output is its own slice of the process's stdout, ending at its result.
    turns = await turns_of(client, sid)
    for t, answer in zip(turns, (first, second, third), strict=True):
        assert t["hot"] is True
        size = t["output_to"] - t["output_from"]
        page = await client.output(t["task_id"], offset=t["output_from"], limit=size)
        lines = [json.loads(x) for x in output_bytes(page).splitlines()]
        assert lines[0]["type"] == "system" and lines[-1]["type"] == "result"
        assert lines[-1]["result"] == answer["result"]

    killed = await call(client, "session.kill", session_id=sid)
    assert killed["killed"] is True
    final = await ended(client, first["task_id"])
    assert not pid_alive(final["pid"])


async def test_idle_hot_process_closes_and_next_turn_resumes(
    client: ExecutorClient, workdir: Path, service: Any
) -> None:
    service.sessions.turns.hot.settings.hot_idle_seconds = 0.3
    sid = await create(client, workdir)
    first = await send_wait(client, sid, "one")
    final = await ended(client, first["task_id"])
    assert final["status"] == "completed" and final["exit_code"] == 0  # stdin EOF: it exited
    second = await send_wait(client, sid, "two")
    assert second["task_id"] != first["task_id"]
    assert second["result"] == ANSWER + "two (turn 2, remembers 1 earlier prompts)"


async def test_max_hot_sessions_closes_the_least_recently_used(
    client: ExecutorClient, workdir: Path
) -> None:
    a, b, c = [await create(client, workdir) for _ in range(3)]
    ta = (await send_wait(client, a, "a1"))["task_id"]
    tb = (await send_wait(client, b, "b1"))["task_id"]
    await send_wait(client, a, "a2")  # a is now the most recently used
    tc = (await send_wait(client, c, "c1"))["task_id"]  # a third: b makes room
    await ended(client, tb)
    assert (await client.status(ta))["status"] == "running"
    assert (await client.status(tc))["status"] == "running"
    again = await send_wait(client, b, "b2")  # b comes back: a new process resumes it
    assert again["task_id"] not in (ta, tb, tc)
    assert again["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    await ended(client, ta)  # and a (least recently used now) made room for it


async def test_crash_of_a_hot_process_then_the_next_turn_works(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = await create(client, workdir)
    first = await send_wait(client, sid, "remember this")
    crashed = await send_wait(client, sid, "FAKE_CRASH now")
    assert crashed["status"] == "failed" and crashed["error_kind"] == "crashed"
    assert crashed["task_id"] == first["task_id"]
    after = await send_wait(client, sid, "still there?")
    assert after["status"] == "completed"
    assert after["task_id"] != first["task_id"]
    assert after["result"].endswith("(turn 2, remembers 1 earlier prompts)")


async def test_pause_resume_and_cancel_of_a_hot_turn(client: ExecutorClient, workdir: Path) -> None:
    sid = await create(client, workdir)
    first = await send_wait(client, sid, "warm up")
    started = await call(client, "session.send", session_id=sid, message="FAKE_HANG")
    task_id = started["task_id"]
    assert task_id == first["task_id"]
    assert (await client.control(task_id, "PAUSE"))["status"] == "paused"
    assert (await client.control(task_id, "RESUME"))["status"] == "running"
    assert (await client.control(task_id, "CANCEL"))["status"] == "cancelled"
    turns = await eventually(lambda: turns_of(client, sid), lambda t: t[-1]["status"] != "running")
    assert turns[-1]["status"] == "cancelled"
    after = await send_wait(client, sid, "go on")  # the conversation was not lost
    assert after["status"] == "completed" and after["task_id"] != task_id
    assert after["result"].endswith("(turn 2, remembers 1 earlier prompts)")


async def test_a_rate_limited_hot_turn_holds_its_account(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = await create(client, workdir)
    limited = await send_wait(client, sid, "FAKE_ERROR=rate_limit FAKE_RESET_IN=3 hit it")
    assert limited["status"] == "failed" and limited["error_kind"] == "rate_limit"
    limits = (await client.status())["stats"]["rate_limits"]["default"]
    assert limits["held"] is True and limits["last_event"]["status"] == "rejected"
    held = (await client.call("execute_claude", {"prompt": "waits"}))["task_id"]
    assert (await client.status(held))["waiting_for"] == "rate_limit"
    assert (await client.control(held, "CANCEL"))["status"] == "cancelled"


async def test_a_hot_turn_of_a_held_account_waits_cold_then_goes_on(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = await create(client, workdir)
    limited = await send_wait(client, sid, "FAKE_ERROR=rate_limit FAKE_RESET_IN=2 hit it")
    hot_task = limited["task_id"]
    waiting = await call(client, "session.send", session_id=sid, message="after the window")
    assert waiting["status"] == "queued" and waiting["task_id"] != hot_task
    rec = await client.status(waiting["task_id"])
    assert rec["waiting_for"] == "rate_limit" and rec["pid"] is None
    assert (await ended(client, hot_task))["status"] == "completed"  # closed, not left idle
    turns = await eventually(lambda: turns_of(client, sid), lambda t: t[-1]["status"] != "queued")
    assert turns[-1]["status"] == "completed", turns[-1]
    assert turns[-1]["hot"] is False
    assert turns[-1]["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    again = await send_wait(client, sid, "hot again")
    assert again["status"] == "completed" and again["task_id"] not in (hot_task, rec["task_id"])
    assert (await client.status(again["task_id"]))["hot_session"] == sid
    await call(client, "session.kill", session_id=sid)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hot": "yes"}, "hot"),
        ({"hot": 1}, "hot"),
        ({"retries": -1}, "retries"),
        ({"retry_on": ["bogus"]}, "retry_on.0"),
    ],
)
async def test_bad_hot_and_retry_params_name_the_field_and_leave_nothing(
    client: ExecutorClient, workdir: Path, params: dict[str, Any], field: str
) -> None:
    exc = await call_error(client, "session.create", working_dir=str(workdir), **params)
    assert exc.code == ErrorCode.INVALID_PARAMS
    assert [e["loc"] for e in exc.data] == [field]
    assert (await call(client, "session.list", include_ended=True))["total"] == 0
