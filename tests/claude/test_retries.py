"""Automatic retries of Claude runs (cc_executor/claude/retry.py), through the real service
with the fake `claude`: each attempt its own task record, linked to the first, resuming."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from tests.support import eventually

pytestmark = pytest.mark.usefixtures("fake_claude_state")

ONCE_OVERLOADED = "FAKE_ERROR=overloaded FAKE_ERROR_TIMES=1 do the work"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings (tests/conftest.py) with short retry back-offs."""
    return settings.model_copy(
        update={"retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 0.2}
    )


async def run_claude(client: ExecutorClient, **params: Any) -> str:
    res = await client.call("execute_claude", params)
    task_id: str = res["task_id"]
    return task_id


async def final(client: ExecutorClient, task_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: client.status(task_id), lambda r: r["status"] not in ("queued", "running")
    )


async def last_attempt(client: ExecutorClient, first_id: str) -> list[dict[str, Any]]:
    """Every attempt's final record, following `retried_by` from the first."""
    chain = [await final(client, first_id)]
    while True:
        # `attempts` marks the last one; until it is set, a retry may still be coming
        rec = await eventually(
            lambda: client.status(chain[-1]["task_id"]),
            lambda r: r.get("retried_by") or r.get("attempts"),
        )
        chain[-1] = rec
        if not rec.get("retried_by"):
            return chain
        chain.append(await final(client, rec["retried_by"]))


async def test_overloaded_run_succeeds_on_attempt_2_resuming_its_session(
    client: ExecutorClient, tmp_path: Path
) -> None:
    first_id = await run_claude(client, prompt=ONCE_OVERLOADED, retries=3, cwd=str(tmp_path))
    first, second = await last_attempt(client, first_id)
    assert first["status"] == "failed" and first["error_kind"] == "overloaded"
    assert first["retried_by"] == second["task_id"]
    assert "attempt" not in first and "attempts" not in first
    assert second["status"] == "completed" and second["error_kind"] is None
    assert second["attempt"] == 2 and second["retry_of"] == first_id and second["attempts"] == 2
    # the second attempt resumed the first's conversation: nothing was lost
    assert f"--resume={first['claude_session_id']}" in second["argv"]  # one token
    assert second["claude_session_id"] == first["claude_session_id"]
    assert second["result"].endswith("(turn 2, remembers 1 earlier prompts)")


async def test_a_kind_not_in_retry_on_is_not_retried(client: ExecutorClient) -> None:
    first_id = await run_claude(client, prompt=ONCE_OVERLOADED, retries=3, retry_on=["network"])
    (only,) = await last_attempt(client, first_id)
    assert only["status"] == "failed" and only["error_kind"] == "overloaded"
    assert only["attempts"] == 1


async def test_retries_stop_after_the_last_attempt(client: ExecutorClient) -> None:
    prompt = "FAKE_ERROR=api_error FAKE_ERROR_TIMES=5 again"
    chain = await last_attempt(client, await run_claude(client, prompt=prompt, retries=2))
    assert [r["error_kind"] for r in chain] == ["api_error"] * 3
    assert chain[-1]["attempts"] == 3 and chain[-1]["status"] == "failed"


async def test_a_rate_limited_run_is_retried_after_its_reset(client: ExecutorClient) -> None:
    began = time.time()
    prompt = "FAKE_ERROR=rate_limit FAKE_RESET_IN=2 FAKE_ERROR_TIMES=1 later"
    first, second = await last_attempt(client, await run_claude(client, prompt=prompt, retries=1))
    assert first["error_kind"] == "rate_limit" and first["reset_at"]
    assert second["status"] == "completed"
    # it waited for the reset (a whole second, as the CLI gives it), not the short back-off
    assert second["started_at"] >= int(began) + 2


async def test_a_session_turn_is_retried_and_resumes_the_session(
    client: ExecutorClient, tmp_path: Path
) -> None:
    s = await client.call("session.create", {"working_dir": str(tmp_path), "retries": 2})
    sid = s["session_id"]
    one = await client.call("session.send", {"session_id": sid, "message": "hi", "wait": True})
    two = await client.call(
        "session.send", {"session_id": sid, "message": ONCE_OVERLOADED, "wait": True}
    )
    assert two["status"] == "completed", two
    rec = await client.status(two["task_id"])
    assert rec["attempt"] == 2 and rec["attempts"] == 2
    first = await client.status(rec["retry_of"])
    assert first["error_kind"] == "overloaded" and first["session_turn"] == rec["session_turn"]
    assert two["claude_session_id"] == one["claude_session_id"]
    assert two["result"].endswith("(turn 3, remembers 2 earlier prompts)")
    logs = await client.call("session.logs", {"session_id": sid})
    turn = [e for e in logs["entries"] if e["type"] == "turn"][-1]
    assert turn["attempts"] == 2 and turn["task_id"] == two["task_id"]


async def test_the_failed_attempts_completion_names_the_next_one_already_held(
    client: ExecutorClient,
) -> None:
    began = time.time()
    prompt = "FAKE_ERROR=rate_limit FAKE_RESET_IN=2 FAKE_ERROR_TIMES=1 named"
    handle = await client.execute_claude(prompt, retries=1)
    completed = await handle.wait()
    assert completed["status"] == "failed" and completed["error_kind"] == "rate_limit"
    nxt = completed["retried_by"]  # in the event itself: a follower needs no second look
    held = await client.status(nxt)
    assert held["status"] == "queued" and held["pid"] is None
    assert held["waiting_for"] == "retry" and held["attempt"] == 2
    assert held["retry_of"] == handle.task_id
    reset = datetime.fromisoformat((await client.status(handle.task_id))["reset_at"])
    assert abs(datetime.fromisoformat(held["until"]).timestamp() - reset.timestamp()) < 0.5
    assert reset.timestamp() >= int(began) + 2  # held until the reset, not the short back-off
    follow = await client.subscribe(nxt, 0, 0)
    done = await follow.wait()
    assert done["status"] == "completed" and done["attempts"] == 2
    assert "retried_by" not in done


async def test_cancel_of_a_held_retry_ends_the_run(client: ExecutorClient) -> None:
    prompt = "FAKE_ERROR=rate_limit FAKE_RESET_IN=30 FAKE_ERROR_TIMES=1 stop it"
    handle = await client.execute_claude(prompt, retries=2)
    nxt = (await handle.wait())["retried_by"]
    assert (await client.control(nxt, "CANCEL"))["status"] == "cancelled"
    rec = await final(client, nxt)
    assert rec["status"] == "cancelled" and rec["started_at"] is None
    assert rec["attempts"] == 2 and not rec.get("retried_by")  # a cancel is never retried


async def test_a_hot_session_turn_is_retried_in_its_process(
    client: ExecutorClient, tmp_path: Path
) -> None:
    s = await client.call(
        "session.create", {"working_dir": str(tmp_path), "hot": True, "retries": 2}
    )
    sid = s["session_id"]
    one = await client.call("session.send", {"session_id": sid, "message": "hi", "wait": True})
    two = await client.call(
        "session.send", {"session_id": sid, "message": ONCE_OVERLOADED, "wait": True}
    )
    assert two["status"] == "completed", two
    assert two["task_id"] == one["task_id"]  # the same live process answered the retry
    assert two["result"].endswith("(turn 3, remembers 2 earlier prompts)")
    logs = await client.call("session.logs", {"session_id": sid})
    turn = [e for e in logs["entries"] if e["type"] == "turn"][-1]
    assert turn["attempts"] == 2 and turn["hot"] is True
    await client.call("session.kill", {"session_id": sid})
