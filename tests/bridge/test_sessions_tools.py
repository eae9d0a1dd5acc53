"""The session tools of the bridge over real stdio, in front of a real service.

The fake `claude` answers `Fake Claude answer to: <prompt>` and honours `--resume`, so a
conversation that continues says `remembers N earlier prompts`; `FAKE_HANG` in a prompt
makes a turn hang until it is cancelled (how a wait limit is reached without sleeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from cc_executor.server import ExecutorService
from tests.support import live_members, wait_until

from .conftest import call, call_error, final, poll, read_all

ROOT = Path(__file__).resolve().parents[2]
SESSION_TOOLS = {
    "list_sessions": ("reads", set()),
    "get_session_status": ("reads", {"session_id"}),
    "get_session_logs": ("reads", {"session_id"}),
    "send_message_to_session": ("runs", {"session_id", "message"}),
    "create_session": ("runs", {"working_dir"}),
    "kill_session": ("kills", {"session_id"}),
    "spawn_temp_session": ("runs", {"working_dir"}),
    "coordinate_sessions": ("runs", {"task_description", "session_assignments"}),
}
DESIGN_NOTE_PARAMS = {  # the original CCMaster names, kept
    "list_sessions": {"include_ended"},
    "get_session_status": {"session_id"},
    "send_message_to_session": {"session_id", "message", "wait_for_response"},
    "create_session": {"working_dir", "watch_mode", "max_turns"},
    "kill_session": {"session_id"},
    "spawn_temp_session": {"command", "working_dir", "timeout"},
    "coordinate_sessions": {"task_description", "session_assignments"},
    "get_session_logs": {"session_id", "lines"},
}


def _doc_bridge_config() -> dict[str, Any]:
    """The `bridge.json` example of docs/sessions.md, parsed."""
    doc = (ROOT / "docs" / "sessions.md").read_text()
    section = doc.split("## Letting sessions message each other", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None, "docs/sessions.md lost its bridge.json example"
    cfg: dict[str, Any] = json.loads(block.group(1))
    return cfg


@contextlib.asynccontextmanager
async def bridge_from_config(
    server: dict[str, Any], inherited: dict[str, str], log: Path
) -> AsyncIterator[Client]:
    """Start a bridge the way Claude Code starts an `mcpServers` entry: its command and
    args, with the inherited environment plus the entry's `env`."""
    path = f"{Path(sys.executable).parent}:{inherited.get('PATH', '')}"
    command = shutil.which(server["command"], path=path)
    assert command is not None, f"{server['command']} is not installed"
    params = StdioServerParameters(
        command=command,
        args=server.get("args", []),
        env={**inherited, **server.get("env", {})},
        cwd=str(ROOT),
    )
    with open(log, "a") as errlog:  # noqa: ASYNC230
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            yield client


async def _resource(bridge: Client, uri: str) -> dict[str, Any]:
    res = await bridge.read_resource(uri)
    data: dict[str, Any] = json.loads(res.contents[0].text)  # type: ignore[union-attr]
    return data


def _mkdir(p: Path) -> str:
    p.mkdir(parents=True, exist_ok=True)
    return str(p)


async def test_session_tools_have_titles_annotations_and_design_note_params(
    bridge: Client,
) -> None:
    tools = {t.name: t for t in (await bridge.list_tools()).tools}
    assert set(SESSION_TOOLS) <= set(tools)
    for name, (kind, required) in SESSION_TOOLS.items():
        t = tools[name]
        a = t.annotations
        assert a is not None and t.title and a.title == t.title, name
        assert t.description and len(t.description) > 200, name  # teaches when and how
        if kind == "reads":
            assert (a.read_only_hint, a.idempotent_hint, a.destructive_hint) == (True, True, False)
        elif kind == "runs":
            assert (a.read_only_hint, a.destructive_hint, a.open_world_hint) == (False, True, True)
        else:
            assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint) == (False, True, True)
        props = t.input_schema["properties"]
        for pname, schema in props.items():
            assert schema.get("description"), f"{name}.{pname} has no description"
        assert set(t.input_schema.get("required", [])) == required, name
        assert DESIGN_NOTE_PARAMS[name] <= set(props), name


async def test_create_message_status_logs_list_kill(bridge: Client, tmp_path: Path) -> None:
    work = _mkdir(tmp_path / "api")
    s = await call(bridge, "create_session", {"working_dir": work, "name": "backend"})
    sid = s["session_id"]
    assert s["status"] == "idle" and s["working_dir"] == work and sid in s["hint"]

    r = await call(
        bridge,
        "send_message_to_session",
        {"session_id": "backend", "message": "Add a login endpoint", "wait_for_response": True},
    )
    assert r["status"] == "completed" and r["turn"] == 1
    assert r["result"].startswith("Fake Claude answer to: Add a login endpoint")
    first_conversation = r["claude_session_id"]
    # The next message continues the same conversation.
    r = await call(
        bridge,
        "send_message_to_session",
        {"session_id": sid, "message": "Now rate-limit it", "wait_for_response": True},
    )
    assert "remembers 1 earlier prompts" in r["result"]
    assert r["claude_session_id"] == first_conversation
    # Without waiting: the turn starts, the answer is polled.
    r = await call(bridge, "send_message_to_session", {"session_id": sid, "message": "Third"})
    assert r["turn"] == 3 and r["task_id"] and "get_session_status" in r["hint"]
    st = await poll(
        lambda: call(bridge, "get_session_status", {"session_id": sid}),
        lambda d: d["status"] == "idle",
    )
    assert st["turns"] == 3 and st["last_status"] == "completed"
    assert "remembers 2 earlier prompts" in st["last_result"]
    assert st["claude_session_id"] == first_conversation

    logs = await call(bridge, "get_session_logs", {"session_id": sid, "lines": 2})
    assert [e["turn"] for e in logs["entries"]] == [2, 3]  # newest last
    assert logs["entries"][0]["message"] == "Now rate-limit it"
    assert await read_all(bridge, logs["entries"][1]["task_id"])  # a turn is a task

    listing = await call(bridge, "list_sessions", {})
    assert [x["session_id"] for x in listing["sessions"]] == [sid]
    assert (listing["total"], listing["active"]) == (1, 1)

    k = await call(bridge, "kill_session", {"session_id": "backend"})
    assert k["killed"] is True and k["status"] == "ended"
    assert (await call(bridge, "kill_session", {"session_id": sid}))["killed"] is False
    assert (await call(bridge, "list_sessions", {}))["sessions"] == []
    ended = await call(bridge, "list_sessions", {"include_ended": True})
    assert [x["status"] for x in ended["sessions"]] == ["ended"]

    # Clear errors.
    msg = await call_error(bridge, "send_message_to_session", {"session_id": sid, "message": "x"})
    assert "has ended" in msg
    assert "not found" in await call_error(bridge, "get_session_status", {"session_id": "nope"})
    assert "does not exist" in await call_error(
        bridge, "create_session", {"working_dir": str(tmp_path / "missing")}
    )
    assert "command or prompt" in await call_error(
        bridge, "spawn_temp_session", {"working_dir": work}
    )


async def test_agents_message_each_other(
    bridge: Client, service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    front = await call(
        bridge, "create_session", {"working_dir": _mkdir(tmp_path / "web"), "name": "frontend"}
    )
    back = await call(
        bridge, "create_session", {"working_dir": _mkdir(tmp_path / "api"), "name": "backend"}
    )
    fid, bid = front["session_id"], back["session_id"]

    # frontend asks backend, naming itself: recorded on both sides, delivered with a header.
    r = await call(
        bridge,
        "send_message_to_session",
        {
            "session_id": "backend",
            "message": "What does POST /login return?",
            "from_session": "frontend",
            "wait_for_response": True,
        },
    )
    assert r["status"] == "completed" and r["message_id"]
    assert f"[Message from cc-executor session {fid} (frontend)]" in r["result"]
    inbox = (await call(bridge, "get_session_logs", {"session_id": bid}))["entries"]
    outbox = (await call(bridge, "get_session_logs", {"session_id": fid}))["entries"]
    msg_in = [e for e in inbox if e["type"] == "message"]
    msg_out = [e for e in outbox if e["type"] == "message"]
    assert [(m["direction"], m["from_session"], m["to_session"]) for m in msg_in] == [
        ("in", fid, bid)
    ]
    assert [(m["direction"], m["text"]) for m in msg_out] == [
        ("out", "What does POST /login return?")
    ]
    msg = await call_error(
        bridge,
        "send_message_to_session",
        {"session_id": "backend", "message": "hi", "from_session": "nobody"},
    )
    assert "sending session 'nobody'" in msg
    assert (await call(bridge, "get_session_status", {"session_id": bid}))["messages_in"] == 1
    assert (await call(bridge, "get_session_status", {"session_id": fid}))["messages_out"] == 1

    # backend answers from inside its turn: the bridge its Claude starts (the documented
    # bridge.json, with the turn's CC_EXECUTOR_SESSION_ID inherited) sends from backend
    # without being told.
    server = _doc_bridge_config()["mcpServers"]["cc_executor"]
    server["env"]["CC_EXECUTOR_WEBSOCKET_URL"] = service_env["CC_EXECUTOR_WEBSOCKET_URL"]
    turn_env = {**service_env, "CC_EXECUTOR_SESSION_ID": bid, "CC_EXECUTOR_SESSION_NAME": "backend"}
    async with bridge_from_config(server, turn_env, bridge_log) as agent:
        r = await call(
            agent,
            "send_message_to_session",
            {"session_id": "frontend", "message": "It returns a JWT cookie"},
        )
        assert r["turn"] == 1 and r["message_id"] and bid in r["hint"]
        msg = await call_error(
            agent,
            "send_message_to_session",
            {"session_id": bid, "message": "me?", "wait_for_response": True},
        )
        assert "cannot wait for its own answer" in msg
    st = await poll(
        lambda: call(bridge, "get_session_status", {"session_id": fid}),
        lambda d: d["status"] == "idle",
    )
    assert st["messages_in"] == 1 and f"session {bid} (backend)" in st["last_result"]
    inbox = (await call(bridge, "get_session_logs", {"session_id": fid}))["entries"]
    assert [(e["direction"], e["from_session"]) for e in inbox if e["type"] == "message"] == [
        ("out", fid),
        ("in", bid),
    ]


async def test_coordinate_temp_sessions_resources_and_counts(
    bridge: Client, service: ExecutorService, tmp_path: Path
) -> None:
    a = await call(bridge, "create_session", {"working_dir": _mkdir(tmp_path / "a"), "name": "a"})
    b = await call(bridge, "create_session", {"working_dir": _mkdir(tmp_path / "b"), "name": "b"})
    r = await call(
        bridge,
        "coordinate_sessions",
        {
            "task_description": "Add password login",
            "session_assignments": {"a": "the login form", "b": "the /login endpoint"},
        },
    )
    assert r["status"] == "completed" and r["timed_out"] == []
    results = r["results"]
    assert set(results) == {a["session_id"], b["session_id"]}
    assert "Your part:\n\nthe login form" in results[a["session_id"]]["result"]
    assert "Add password login" in results[b["session_id"]]["result"]

    t = await call(
        bridge,
        "spawn_temp_session",
        {"command": "echo temp-out; echo temp-err >&2", "working_dir": str(tmp_path)},
    )
    assert t["status"] == "completed" and t["exit_code"] == 0 and t["cleaned_up"] is True
    assert t["output"] == "temp-out\n" and t["stderr"] == "temp-err\n" and "result" not in t
    assert [e["kind"] for e in t["logs"]] == ["command"]

    await call(bridge, "kill_session", {"session_id": "b"})
    sessions = await _resource(bridge, "cc-executor://sessions")
    by_id = {x["session_id"]: x for x in sessions["sessions"]}
    assert by_id[a["session_id"]]["status"] == "idle"
    assert by_id[b["session_id"]]["status"] == "ended"
    assert by_id[t["session_id"]]["temp"] is True
    assert (sessions["total"], sessions["active"]) == (3, 1)
    counts = (await _resource(bridge, "cc-executor://status"))["sessions"]
    assert counts == {"available": True, "total": 3, "active": 1, "running": 0}
    assert service.sessions.counts()["active"] == 1  # the service's own view agrees


async def test_long_waits_end_at_the_wait_limit(
    service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    from .conftest import bridge_in_task

    env = {**service_env, "CC_EXECUTOR_WAIT_TIMEOUT": "1"}
    async with bridge_in_task(env, bridge_log) as bridge:
        ok = await call(bridge, "create_session", {"working_dir": _mkdir(tmp_path / "ok")})
        hung = await call(bridge, "create_session", {"working_dir": _mkdir(tmp_path / "hung")})
        oid, hid = ok["session_id"], hung["session_id"]

        # coordinate: one session finishes, one hangs: the call returns at the wait limit.
        r = await call(
            bridge,
            "coordinate_sessions",
            {
                "task_description": "Split work",
                "session_assignments": {oid: "quick part", hid: "slow part FAKE_HANG"},
            },
        )
        assert r["status"] == "running" and "get_session_status" in r["hint"]
        assert set(r["sessions"]) == {oid, hid}
        assert r["sessions"][hid]["status"] == "running"
        st = await poll(
            lambda: call(bridge, "get_session_status", {"session_id": oid}),
            lambda d: d["status"] == "idle",
        )
        assert st["last_status"] == "completed" and "quick part" in st["last_result"]

        # A waited message to the hung session: queued behind its hanging turn.
        r = await call(
            bridge,
            "send_message_to_session",
            {"session_id": hid, "message": "still there?", "wait_for_response": True},
        )
        assert r["wait_timed_out"] is True and r["status"] == "queued"
        assert "Do not send the message again" in r["hint"]
        k = await call(bridge, "kill_session", {"session_id": hid})
        assert k["cancelled_task_id"] and k["dropped_turns"] == [r["turn"]]
        task = await call(bridge, "get_execution_status", {"task_id": k["cancelled_task_id"]})
        assert task["status"] == "cancelled"

        # A temp run longer than the wait: running, then found by its name.
        go = tmp_path / "go"
        t = await call(
            bridge,
            "spawn_temp_session",
            {
                "command": f"while [ ! -e {go} ]; do sleep 0.02; done; echo finished",
                "working_dir": str(tmp_path),
                "timeout": 60,
            },
        )
        assert t["status"] == "running" and t["name"].startswith("temp-") and t["task_id"]
        assert t["name"] in t["hint"]
        go.touch()
        done = await poll(
            lambda: call(bridge, "get_execution_status", {"task_id": t["task_id"]}), final
        )
        assert done["status"] == "completed"
        assert await read_all(bridge, t["task_id"]) == b"finished\n"
        logs = await poll(
            lambda: call(bridge, "get_session_logs", {"session_id": t["name"]}),
            lambda d: d["status"] == "ended",
        )
        assert logs["status"] == "ended" and logs["entries"][-1]["status"] == "completed"


async def test_sessions_fall_back_with_the_tasks_and_stay_where_they_live(
    bridge_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    from cc_executor.config import Settings
    from tests.support import FAKE_CLAUDE, free_port

    from .conftest import bridge_in_task

    port = free_port()
    down = {**bridge_env, "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{port}/ws"}
    async with bridge_in_task(down, bridge_log) as bridge:
        # The service is down: sessions run on the bridge's local engine, like tasks.
        assert (await call(bridge, "list_sessions", {}))["sessions"] == []
        solo = await call(bridge, "create_session", {"working_dir": str(tmp_path), "name": "solo"})
        assert solo["backend"] == "local"
        r = await call(
            bridge,
            "send_message_to_session",
            {"session_id": "solo", "message": "hello", "wait_for_response": True},
        )
        assert r["status"] == "completed" and "hello" in r["result"]
        turn = await call(bridge, "get_execution_status", {"task_id": r["task_id"]})
        assert turn["backend"] == "local" and turn["status"] == "completed"
        counts = (await _resource(bridge, "cc-executor://status"))["sessions"]
        assert counts == {"available": True, "total": 1, "active": 1, "running": 0}

        service = ExecutorService(
            Settings(
                data_dir=Path(bridge_env["CC_EXECUTOR_DATA_DIR"]),
                port=port,
                kill_grace_seconds=1.0,
                claude_bin=str(FAKE_CLAUDE),
                log_format="text",
            )
        )
        await service.start()
        try:
            # Back: new sessions go to the service; the local one stays reachable, by its
            # id and by its name, and it remembers its conversation.
            shared = await poll(
                lambda: call(bridge, "create_session", {"working_dir": str(tmp_path)}),
                lambda d: d["backend"] == "websocket",
            )
            assert service.sessions.counts()["active"] >= 1
            for ref in (solo["session_id"], "solo"):
                again = await call(
                    bridge,
                    "send_message_to_session",
                    {"session_id": ref, "message": "still you?", "wait_for_response": True},
                )
                assert again["backend"] == "local" and "remembers" in again["result"]
            listed = await call(bridge, "list_sessions", {})
            where = {x["session_id"]: x["backend"] for x in listed["sessions"]}
            assert where[solo["session_id"]] == "local"
            assert where[shared["session_id"]] == "websocket"
            k = await call(bridge, "kill_session", {"session_id": "solo"})
            assert k["killed"] and k["backend"] == "local"
        finally:
            await service.stop()


async def test_sessions_need_the_service_in_websocket_mode_and_run_locally_in_local_mode(
    bridge_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    from tests.support import free_port

    from .conftest import bridge_in_task

    down = {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{free_port()}/ws",
        "CC_EXECUTOR_BRIDGE_MODE": "websocket",
        "CC_EXECUTOR_CONNECT_RETRY_FOR": "0",
    }
    async with bridge_in_task(down, bridge_log) as bridge:
        msg = await call_error(bridge, "list_sessions", {})
        assert "sessions need the executor service" in msg and "cc-executor start" in msg
        counts = (await _resource(bridge, "cc-executor://status"))["sessions"]
        assert counts["available"] is None  # reading the resource connects nothing

    local = {**down, "CC_EXECUTOR_BRIDGE_MODE": "local"}
    async with bridge_in_task(local, bridge_log) as bridge:
        s = await call(bridge, "create_session", {"working_dir": str(tmp_path), "name": "solo"})
        r = await call(
            bridge,
            "send_message_to_session",
            {"session_id": "solo", "message": "hello", "wait_for_response": True},
        )
        assert r["status"] == "completed" and "hello" in r["result"]
        counts = (await _resource(bridge, "cc-executor://status"))["sessions"]
        assert (counts["total"], counts["active"]) == (1, 1)
        assert (await call(bridge, "kill_session", {"session_id": s["session_id"]}))["killed"]


async def test_cancelling_spawn_temp_kills_its_run(bridge: Client, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    pending = asyncio.ensure_future(
        bridge.call_tool(
            "spawn_temp_session",
            {
                "command": f"echo $$ > {pid_file}; sleep 300",
                "working_dir": str(tmp_path),
                "name": "doomed",
            },
        )
    )
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    pgid = int(pid_file.read_text())
    pending.cancel()  # notifications/cancelled: the temp session is killed, not left running
    await asyncio.gather(pending, return_exceptions=True)
    assert await wait_until(lambda: not live_members(pgid), timeout=15)
    logs = await poll(
        lambda: call(bridge, "get_session_logs", {"session_id": "doomed"}),
        lambda d: d["status"] == "ended",
    )
    assert logs["entries"][-1]["status"] == "cancelled"
