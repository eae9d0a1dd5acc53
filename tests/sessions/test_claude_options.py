"""A session's Claude options: the whole `ClaudeOptions` set, kept as one value, given to
every turn; and records stored before that shape are read and migrated."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.protocol import ClaudeOptions, SessionCreateParams
from cc_executor.server import ExecutorService
from cc_executor.sessions import SqliteSessionStore
from tests.sessions.conftest import call
from tests.support import FAKE_CLAUDE

pytestmark = pytest.mark.usefixtures("fake_claude_state")

MCP = {"mcpServers": {}}
EVERY_OPTION: dict[str, Any] = {
    "model": "sonnet",
    "allowed_tools": ["Read", "Bash(git log:*)"],
    "disallowed_tools": ["WebFetch"],
    "permission_mode": "plan",
    "skip_permissions": True,
    "max_budget_usd": 2.5,
    "mcp_config": MCP,
    "append_system_prompt": "You are the backend.",
    "add_dirs": ["/tmp", "/var/tmp"],
}
"""Every Claude option but max_turns (a session's max_turns is watch mode's)."""


async def echoed_options(client: ExecutorClient, session: str) -> dict[str, Any]:
    """The options the fake `claude` of one turn was started with."""
    r = await call(
        client, "session.send", session_id=session, message="FAKE_ECHO_OPTIONS", wait=True
    )
    assert r["status"] == "completed", r
    opts: dict[str, Any] = json.loads(r["result"])["options"]
    return opts


def test_the_params_cover_every_claude_option() -> None:
    assert set(ClaudeOptions.model_fields) <= set(SessionCreateParams.model_fields)
    p = SessionCreateParams(working_dir="/", max_turns=2, turn_max_turns=5, **EVERY_OPTION)
    assert p.claude_options() == ClaudeOptions(**EVERY_OPTION, max_turns=5)


async def test_every_claude_option_reaches_every_turn(
    client: ExecutorClient, tmp_path: Path
) -> None:
    s = await call(
        client,
        "session.create",
        working_dir=str(tmp_path),
        max_turns=2,  # watch mode's limit: not the turns' --max-turns
        turn_max_turns=4,
        **EVERY_OPTION,
    )
    assert s["claude_options"] == {**ClaudeOptions().model_dump(), **EVERY_OPTION, "max_turns": 4}
    assert s["max_turns"] == 2
    for turn in (1, 2):
        opts = await echoed_options(client, s["session_id"])
        assert opts["model"] == "sonnet"
        assert opts["allowed_tools"] == ["Read,Bash(git log:*)"]
        assert opts["disallowed_tools"] == ["WebFetch"]
        assert opts["permission_mode"] == "plan"
        assert opts["skip_permissions"] is True
        assert opts["max_turns"] == "4"
        assert float(opts["max_budget_usd"]) == 2.5
        assert [json.loads(c) for c in opts["mcp_config"]] == [MCP]
        assert opts["append_system_prompt"] == "You are the backend."
        assert opts["add_dirs"] == ["/tmp", "/var/tmp"]
        assert ("resume" in opts) is (turn == 2)


async def test_a_record_stored_before_claude_options_is_migrated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    workdir = tmp_path / "w"
    workdir.mkdir()
    db = data / "sessions.sqlite3"
    store = SqliteSessionStore(db)  # only to create the tables
    await store.open()
    await store.close()
    now = time.time()
    legacy = {  # what a session record held when each option was a field of its own
        "session_id": "s-0123456789ab",
        "working_dir": str(workdir),
        "name": "old",
        "model": "opus",
        "allowed_tools": ["Read"],
        "disallowed_tools": None,
        "permission_mode": "acceptEdits",
        "skip_permissions": False,
        "append_system_prompt": "Be terse.",
        "mcp_config": None,
        "watch_mode": False,
        "max_turns": 3,
        "continuation_prompt": "continue",
        "turn_timeout": None,
        "temp": False,
        "status": "idle",
        "claude_session_id": None,
        "created_at": now,
        "updated_at": now,
        "turns": 0,
        "is_active": True,
    }
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO sessions(session_id, created_at, status, data) VALUES (?,?,?,?)",
            (legacy["session_id"], now, "idle", json.dumps(legacy)),
        )
    conn.close()

    settings = Settings(data_dir=data, port=0, claude_bin=str(FAKE_CLAUDE), log_format="text")
    svc = ExecutorService(settings)
    await svc.start()
    try:
        async with ExecutorClient(svc.url, svc.token) as c:
            s = await call(c, "session.status", session_id="old")
            assert s["claude_options"] == {
                **ClaudeOptions().model_dump(),
                "model": "opus",
                "allowed_tools": ["Read"],
                "permission_mode": "acceptEdits",
                "append_system_prompt": "Be terse.",
            }
            assert s["max_turns"] == 3
            assert "model" not in s and "allowed_tools" not in s
            opts = await echoed_options(c, "old")  # its turns get the migrated options
            assert opts["model"] == "opus" and opts["allowed_tools"] == ["Read"]
            assert opts["permission_mode"] == "acceptEdits"
            assert "max_turns" not in opts  # the old max_turns stays watch mode's
            fresh = await call(c, "session.create", working_dir=str(workdir), name="new")
            assert fresh["claude_options"] == ClaudeOptions().model_dump()
    finally:
        await svc.stop()
    # The migrated shape is what is stored now.
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT data FROM sessions WHERE session_id=?", (legacy["session_id"],)
        ).fetchone()
    conn.close()
    stored = json.loads(row[0])
    assert stored["claude_options"]["model"] == "opus" and "model" not in stored
