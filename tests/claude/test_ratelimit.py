"""Rate-limit windows (cc_executor/claude/ratelimit.py), through the real service with the
fake `claude`: after a rate-limited run with a known reset, the account's Claude tasks wait
`queued` until the reset, then all run; plain commands and other accounts are not held."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.server import ExecutorService
from tests.support import eventually

pytestmark = pytest.mark.usefixtures("fake_claude_state")

RESET_IN = 3


async def run_claude(client: ExecutorClient, prompt: str, **params: Any) -> str:
    res = await client.call("execute_claude", {"prompt": prompt, **params})
    task_id: str = res["task_id"]
    return task_id


async def final(client: ExecutorClient, task_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: client.status(task_id), lambda r: r["status"] not in ("queued", "running")
    )


async def rate_limit_now(client: ExecutorClient) -> float:
    """One rate-limited run resetting in RESET_IN s; returns the reset's unix time."""
    prompt = f"FAKE_ERROR=rate_limit FAKE_RESET_IN={RESET_IN} FAKE_ERROR_TIMES=1 hit it"
    rec = await final(client, await run_claude(client, prompt))
    assert rec["error_kind"] == "rate_limit" and rec["reset_at"]
    return datetime.fromisoformat(rec["reset_at"]).timestamp()


def health(service: ExecutorService) -> dict[str, Any]:
    url = service.url.replace("ws://", "http://").rsplit("/", 1)[0] + "/health"
    with urllib.request.urlopen(url, timeout=10) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


async def test_a_rate_limit_holds_the_accounts_claude_tasks_until_its_reset(
    client: ExecutorClient, service: ExecutorService, tmp_path: Path
) -> None:
    reset = await rate_limit_now(client)
    held = [await run_claude(client, f"task {i}") for i in range(3)]
    other = await run_claude(client, "other account", env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    plain = (await client.call("execute", {"command": ["echo", "not held"]}))["task_id"]

    for task_id in held:  # they wait, saying why and until when
        rec = await client.status(task_id)
        assert rec["status"] == "queued" and rec["pid"] is None
        assert rec["waiting_for"] == "rate_limit" and rec["account"] == "default"
        assert datetime.fromisoformat(rec["until"]).timestamp() == reset
    assert (await final(client, plain))["status"] == "completed"  # plain commands run
    assert (await final(client, other))["status"] == "completed"  # another account runs

    listing = await client.status()
    limits = listing["stats"]["rate_limits"]
    assert limits["default"]["held"] is True
    assert limits["default"]["last_event"]["status"] == "rejected"
    assert limits["default"]["last_event"]["type"] == "five_hour"
    seen = await asyncio.to_thread(health, service)
    assert seen["rate_limits"]["default"]["held"] is True

    for task_id in held:  # after the reset, every one runs
        rec = await final(client, task_id)
        assert rec["status"] == "completed", rec
        assert rec["started_at"] >= reset
        assert "waiting_for" not in rec
    after = (await client.status())["stats"]["rate_limits"]["default"]
    assert after["held"] is False and after["until"] is None


async def test_cancel_of_a_held_task(client: ExecutorClient) -> None:
    await rate_limit_now(client)
    task_id = await run_claude(client, "never runs")
    assert (await client.status(task_id))["waiting_for"] == "rate_limit"
    reply = await client.control(task_id, "CANCEL")
    assert reply["status"] == "cancelled"
    rec = await client.status(task_id)
    assert rec["status"] == "cancelled" and rec["pid"] is None and rec["started_at"] is None
    later = await final(client, await run_claude(client, "after the window"))
    assert later["status"] == "completed"  # the window passed; the cancelled one never ran
    assert (await client.status(task_id))["started_at"] is None
