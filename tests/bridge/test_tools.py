"""Every tool of the bridge over real stdio, in front of a real service."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import Any

from mcp.client import Client

from cc_executor.server import ExecutorService
from tests.support import live_members, wait_until

from .conftest import (
    bridge_in_task,
    call,
    call_error,
    final,
    open_bridge,
    page_bytes,
    poll,
    read_all,
)

CC_EXECUTE_DOC = (Path(__file__).resolve().parents[2] / "docs" / "cc_execute.md").read_text()
TOOLS = {
    "execute_task": "runs",
    "execute_claude": "runs",
    "execute_task_list": "runs",
    "get_execution_status": "reads",
    "get_execution_output": "reads",
    "control_execution": "control",
}


async def test_tools_have_titles_annotations_and_described_params(bridge: Client) -> None:
    tools = {t.name: t for t in (await bridge.list_tools()).tools}
    assert set(tools) >= set(TOOLS)  # session tools are checked in test_sessions_tools.py
    for name, kind in TOOLS.items():
        t = tools[name]
        a = t.annotations
        assert a is not None and t.title and a.title == t.title
        assert t.description and len(t.description) > 200, name  # teaches when and how
        if kind == "runs":
            assert (a.read_only_hint, a.destructive_hint, a.open_world_hint) == (False, True, True)
            assert a.idempotent_hint is False
        elif kind == "reads":
            assert (a.read_only_hint, a.idempotent_hint, a.destructive_hint) == (True, True, False)
        else:
            assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint) == (False, True, True)
        for pname, schema in t.input_schema["properties"].items():
            assert schema.get("description"), f"{name}.{pname} has no description"
    assert set(tools["execute_task"].input_schema["required"]) == {"command"}
    assert set(tools["execute_claude"].input_schema["required"]) == {"prompt"}


async def test_execute_task_shell_command_and_argv(bridge: Client, tmp_path: Path) -> None:
    r = await call(bridge, "execute_task", {"command": "echo hi; echo oops >&2"})
    assert r["status"] == "completed" and r["exit_code"] == 0
    assert r["backend"] == "websocket"
    assert r["output"] == "hi\n" and r["output_truncated"] is False
    assert r["stderr"] == "oops\n"

    script = tmp_path / "script.py"
    script.write_text("import os, sys\nprint('cwd', os.getcwd())\nsys.exit(3)\n")
    r = await call(
        bridge, "execute_task", {"command": [sys.executable, str(script)], "cwd": str(tmp_path)}
    )
    assert r["status"] == "failed" and r["exit_code"] == 3
    assert r["output"] == f"cwd {tmp_path}\n"


async def test_execute_task_timeout(bridge: Client) -> None:
    r = await call(bridge, "execute_task", {"command": "sleep 30", "timeout": 0.3})
    assert r["status"] == "timed_out"
    assert "timed out" in r["error"]


async def test_execute_task_list_passes_results_forward(bridge: Client) -> None:
    tasks = [
        {"command": "printf 'a b'"},
        {"command": "printf '%s|' {{previous.output | shell}} {{tasks[0].exit_code}}"},
        {"command": "exit 4"},
        {"command": "echo never"},
    ]
    r = await call(bridge, "execute_task_list", {"tasks": tasks})
    assert r["status"] == "failed"
    entries = r["tasks"]
    assert [e["status"] for e in entries] == ["completed", "completed", "failed", "skipped"]
    assert entries[1]["output"] == "a b|0|"
    assert entries[2]["exit_code"] == 4
    assert all(e["backend"] == "websocket" for e in entries[:3])

    r = await call(
        bridge,
        "execute_task_list",
        {"tasks": [{"command": "exit 1"}, {"command": "echo after"}], "stop_on_failure": False},
    )
    assert [e["status"] for e in r["tasks"]] == ["failed", "completed"]
    assert r["tasks"][1]["output"] == "after\n"


async def test_execute_claude_with_retries_answers_with_the_last_attempt(bridge: Client) -> None:
    args = {"prompt": "FAKE_ERROR=network FAKE_ERROR_TIMES=1 fetch", "retries": 1}
    r = await call(bridge, "execute_claude", args)
    assert r["status"] == "completed", r
    assert r["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    assert r["attempts"] == 2 and r["retry_of"] != r["task_id"]
    first = await call(bridge, "get_execution_status", {"task_id": r["retry_of"]})
    assert first["error_kind"] == "network" and first["retried_by"] == r["task_id"]


async def test_execute_claude_fresh_and_resumed(bridge: Client) -> None:
    r = await call(bridge, "execute_claude", {"prompt": "Say hello", "max_turns": 2})
    assert r["status"] == "completed", r
    assert r["result"].startswith("Fake Claude answer to: Say hello")
    assert r["is_error"] is False and r["claude_session_id"]
    assert r["num_turns"] == 1 and r["total_cost_usd"] > 0
    again = await call(
        bridge, "execute_claude", {"prompt": "And again", "resume": r["claude_session_id"]}
    )
    assert "remembers 1 earlier prompts" in again["result"]

    tasks = [
        {"prompt": "first"},
        {"prompt": "second", "resume": "{{previous.claude_session_id}}"},
        {"command": "echo {{tasks[1].result | shell}}"},
    ]
    r = await call(bridge, "execute_task_list", {"tasks": tasks})
    assert r["status"] == "completed", r
    assert "Fake Claude answer to: second" in r["tasks"][2]["output"]
    assert "remembers 1 earlier prompts" in r["tasks"][2]["output"]


async def test_progress_notifications_while_waiting(bridge: Client, tmp_path: Path) -> None:
    go = tmp_path / "go"
    seen: list[tuple[float, str | None]] = []
    saw_line = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))
        if message and "line one" in message:
            saw_line.set()

    cmd = f"echo 'line one'; while [ ! -e {go} ]; do sleep 0.02; done; echo 'line two'"
    call_task = asyncio.ensure_future(
        call(bridge, "execute_task", {"command": cmd}, progress_callback=on_progress)
    )
    await asyncio.wait_for(saw_line.wait(), 20)
    go.touch()
    r = await call_task
    assert r["status"] == "completed" and r["output"] == "line one\nline two\n"
    counters = [p for p, _ in seen]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)


async def test_wait_limit_returns_running_and_task_finishes_later(
    service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**service_env, "CC_EXECUTOR_WAIT_TIMEOUT": "0.5"}
    async with open_bridge(env, bridge_log) as bridge:
        cmd = f"while [ ! -e {go} ]; do sleep 0.02; done; echo done"
        r = await call(bridge, "execute_task", {"command": cmd})
        assert r["status"] == "running"
        assert "get_execution_status" in r["hint"] and r["task_id"] in r["hint"]
        task_id = r["task_id"]
        # The call returned; the task did not die with it.
        s = await call(bridge, "get_execution_status", {"task_id": task_id})
        assert s["status"] == "running"
        go.touch()
        s = await poll(lambda: call(bridge, "get_execution_status", {"task_id": task_id}), final)
        assert s["status"] == "completed" and s["output_tail"] == "done\n"
        assert await read_all(bridge, task_id) == b"done\n"

        # wait=false answers at once, for lists too.
        r = await call(bridge, "execute_task", {"command": "echo quick", "wait": False})
        assert r["status"] in {"running", "queued", "completed"} and "hint" in r
        lst = await call(
            bridge, "execute_task_list", {"tasks": [{"command": "echo x"}], "wait": False}
        )
        s = await poll(
            lambda: call(bridge, "get_execution_status", {"task_id": lst["list_id"]}),
            lambda d: d["status"] != "running",
        )
        assert s["status"] == "completed" and s["tasks"][0]["output"] == "x\n"


def _expected_output() -> bytes:
    """200 KB of mixed ASCII, multi-byte UTF-8, and a few bytes that are not UTF-8."""
    parts = []
    for i in range(2500):
        parts.append(f"line {i:05d} ünïcödé ✓ 漢字 ".encode())
        if i % 500 == 7:
            parts.append(b"\xff\xfe")
        parts.append(b"x" * (i % 13) + b"\n")
    return b"".join(parts)


async def test_truncation_and_paging_give_back_every_byte(
    service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    expected = _expected_output()
    src = tmp_path / "data.bin"
    src.write_bytes(expected)
    env = {**service_env, "CC_EXECUTOR_MAX_OUTPUT_CHARS": "1000"}
    async with open_bridge(env, bridge_log) as bridge:
        cmd = [
            sys.executable,
            "-c",
            f"import sys; sys.stdout.buffer.write(open({str(src)!r}, 'rb').read())",
        ]
        r = await call(bridge, "execute_task", {"command": cmd})
        assert r["status"] == "completed"
        assert r["output_truncated"] is True and r["stdout_bytes"] == len(expected)
        omitted = r["output_omitted"]
        head, _, tail = r["output"].partition("\n\n[... ")
        tail = tail.split("...]\n\n", 1)[1]
        assert len(head) == 500 and len(tail) == 500
        start, size = omitted["offset"], omitted["limit"]
        assert expected[:start].decode("utf-8", "replace") == head  # \xff\xfe shown as U+FFFD
        assert expected[start + size :].decode("utf-8", "replace") == tail
        assert f"offset={start}" in r["output"] and f"limit={size}" in r["output"]
        # The omitted middle, then the whole stream, page by page: byte-exact.
        middle = b""
        while len(middle) < size:
            page = await call(
                bridge,
                "get_execution_output",
                {
                    "task_id": r["task_id"],
                    "offset": start + len(middle),
                    "limit": size - len(middle),
                },
            )
            middle += page_bytes(page)
        assert expected[:start] + middle + expected[start + size :] == expected
        whole = await read_all(bridge, r["task_id"], limit=7001)
        assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(expected).hexdigest()
        res = await bridge.read_resource(f"cc-executor://tasks/{r['task_id']}/output")
        blob = res.contents[0]
        assert getattr(blob, "blob", None) is not None  # not valid UTF-8: served as bytes


async def test_bad_params_come_back_as_clear_errors(bridge: Client, tmp_path: Path) -> None:
    assert "command must not be empty" in await call_error(bridge, "execute_task", {"command": ""})
    assert "command" in await call_error(bridge, "execute_task", {})
    assert "greater than 0" in await call_error(
        bridge, "execute_task", {"command": "true", "timeout": -1}
    )
    missing = tmp_path / "nope"
    assert "does not exist" in await call_error(
        bridge, "execute_task", {"command": "true", "cwd": str(missing)}
    )
    assert "action" in await call_error(
        bridge, "control_execution", {"task_id": "x", "action": "STOP"}
    )
    assert "not found" in await call_error(bridge, "get_execution_status", {"task_id": "nope"})
    assert "not found" in await call_error(bridge, "get_execution_output", {"task_id": "nope"})
    assert "not found" in await call_error(
        bridge, "control_execution", {"task_id": "nope", "action": "cancel"}
    )
    msg = await call_error(
        bridge, "execute_task_list", {"tasks": [{"command": "echo {{previus.output}}"}]}
    )
    assert "unknown placeholder" in msg and "previus" in msg
    msg = await call_error(
        bridge,
        "execute_task_list",
        {"tasks": [{"command": "echo {{tasks[1].output}}"}, {"command": "true"}]},
    )
    assert "runs later" in msg
    assert "fork_session requires resume" in await call_error(
        bridge, "execute_claude", {"prompt": "x", "fork_session": True}
    )
    done = await call(bridge, "execute_task", {"command": "true"})
    assert "already completed" in await call_error(
        bridge, "control_execution", {"task_id": done["task_id"], "action": "PAUSE"}
    )
    # The server is fine after all of that.
    assert (await call(bridge, "execute_task", {"command": "echo ok"}))["output"] == "ok\n"


async def test_status_list_resources_and_prompt(bridge: Client, service: ExecutorService) -> None:
    done = await call(bridge, "execute_task", {"command": "echo listed", "name": "my-task"})
    task_id = done["task_id"]
    listing = await call(bridge, "get_execution_status", {})
    mine = [t for t in listing["tasks"] if t["task_id"] == task_id]
    assert mine and mine[0]["name"] == "my-task" and mine[0]["backend"] == "websocket"
    assert "websocket" in listing["stats"]
    one = await call(bridge, "get_execution_status", {"task_id": task_id})
    assert one["status"] == "completed" and one["command"] == "echo listed"

    import json

    res = await bridge.list_resources()
    assert {str(r.uri) for r in res.resources} >= {"cc-executor://status", "cc-executor://tasks"}
    templates = {
        t.uri_template for t in (await bridge.list_resource_templates()).resource_templates
    }
    assert templates == {"cc-executor://tasks/{task_id}", "cc-executor://tasks/{task_id}/output"}

    def text(r: Any) -> str:
        return str(r.contents[0].text)

    status = json.loads(text(await bridge.read_resource("cc-executor://status")))
    assert status["server"] == "cc_executor" and status["backends"]["service_reachable"] is True
    tasks = json.loads(text(await bridge.read_resource("cc-executor://tasks")))
    assert any(t["task_id"] == task_id for t in tasks["tasks"])
    rec = json.loads(text(await bridge.read_resource(f"cc-executor://tasks/{task_id}")))
    assert rec["status"] == "completed"
    out = await bridge.read_resource(f"cc-executor://tasks/{task_id}/output")
    assert text(out) == "listed\n"
    try:
        await bridge.read_resource("cc-executor://tasks/nope")
    except Exception as exc:
        assert "not found" in str(exc)
    else:
        raise AssertionError("reading an unknown task should fail")

    prompts = (await bridge.list_prompts()).prompts
    assert [p.name for p in prompts] == ["cc_execute"]
    got = await bridge.get_prompt("cc_execute", {})
    assert got.messages[0].content.text == CC_EXECUTE_DOC  # type: ignore[union-attr]
    got = await bridge.get_prompt("cc_execute", {"goal": "Build a CLI"})
    assert got.messages[0].content.text.endswith("Build a CLI\n")  # type: ignore[union-attr]


async def test_pause_resume_cancel(bridge: Client) -> None:
    r = await call(
        bridge, "execute_task", {"command": "sleep 300 & sleep 300; wait", "wait": False}
    )
    task_id, pgid = r["task_id"], r["pid"]
    assert await wait_until(lambda: len(live_members(pgid)) >= 2)
    p = await call(bridge, "control_execution", {"task_id": task_id, "action": "PAUSE"})
    assert p["status"] == "paused"
    assert set(live_members(pgid).values()) == {"T"}
    assert (await call(bridge, "get_execution_status", {"task_id": task_id}))["status"] == "paused"
    p = await call(bridge, "control_execution", {"task_id": task_id, "action": "resume"})
    assert p["status"] == "running"
    assert "T" not in set(live_members(pgid).values())
    p = await call(bridge, "control_execution", {"task_id": task_id, "action": "Cancel"})
    assert p["status"] == "cancelled"
    assert await wait_until(lambda: not live_members(pgid))


async def _started_pid(progress_messages: list[str], event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 20)


async def test_client_cancel_kills_the_task_group(bridge: Client, tmp_path: Path) -> None:
    started = asyncio.Event()
    pid_file = tmp_path / "pid"

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    cmd = f"echo $$ > {pid_file}; sleep 300 & sleep 300; wait"
    pending = asyncio.ensure_future(
        bridge.call_tool("execute_task", {"command": cmd}, progress_callback=on_progress)
    )
    await asyncio.wait_for(started.wait(), 20)
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    pgid = int(pid_file.read_text())
    assert len(live_members(pgid)) >= 2
    pending.cancel()  # the SDK client sends notifications/cancelled for the request
    with_exc = await asyncio.gather(pending, return_exceptions=True)
    assert isinstance(with_exc[0], asyncio.CancelledError)
    assert await wait_until(lambda: not live_members(pgid), timeout=15)
    listing = await call(bridge, "get_execution_status", {})
    assert any(t["pid"] == pgid and t["status"] == "cancelled" for t in listing["tasks"])


async def test_client_cancel_of_a_list_cancels_running_and_pending(
    bridge: Client, tmp_path: Path
) -> None:
    started = asyncio.Event()
    pid_file = tmp_path / "pid"

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    tasks = [
        {"command": "echo first"},
        {"command": f"echo $$ > {pid_file}; sleep 300"},
        {"command": f"touch {tmp_path / 'never'}"},
    ]
    pending = asyncio.ensure_future(
        bridge.call_tool("execute_task_list", {"tasks": tasks}, progress_callback=on_progress)
    )
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    await asyncio.wait_for(started.wait(), 20)
    pgid = int(pid_file.read_text())
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    assert await wait_until(lambda: not live_members(pgid), timeout=15)
    listing = await call(bridge, "get_execution_status", {})
    (run,) = listing["lists"]
    s = await poll(
        lambda: call(bridge, "get_execution_status", {"task_id": run["list_id"]}),
        lambda d: d["status"] == "cancelled",
    )
    assert s["status"] == "cancelled"
    # Every task is listed: the one it ran, the one cancelled, the one it never started.
    assert [t["status"] for t in s["tasks"]] == ["completed", "cancelled", "skipped"]
    assert [t["index"] for t in s["tasks"]] == [0, 1, 2]
    assert not (tmp_path / "never").exists()


async def test_keep_running_setting_leaves_task_alone(
    service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    env = {**service_env, "CC_EXECUTOR_CANCEL_ON_CLIENT_CANCEL": "false"}
    pid_file = tmp_path / "pid"
    async with open_bridge(env, bridge_log) as bridge:
        pending = asyncio.ensure_future(
            bridge.call_tool("execute_task", {"command": f"echo $$ > {pid_file}; sleep 300"})
        )
        assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        pgid = int(pid_file.read_text())
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        listing = await call(bridge, "get_execution_status", {})
        (task,) = [t for t in listing["tasks"] if t.get("pid") == pgid]
        assert task["status"] == "running" and live_members(pgid)
        r = await call(
            bridge, "control_execution", {"task_id": task["task_id"], "action": "CANCEL"}
        )
        assert r["status"] == "cancelled" and not live_members(pgid)


async def test_handshake_era_client_gets_progress_and_cancellation(
    service_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    """The initialize-handshake protocol (Claude Code's) gets the same progress and cancel."""
    pid_file = tmp_path / "pid"
    messages: list[str] = []
    got_line = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        if message and "ready" in message:
            got_line.set()

    async with bridge_in_task(service_env, bridge_log, mode="legacy") as bridge:
        assert (await call(bridge, "execute_task", {"command": "echo hi"}))["output"] == "hi\n"
        cmd = f"echo $$ > {pid_file}; echo ready; sleep 300"
        pending = asyncio.ensure_future(
            bridge.call_tool("execute_task", {"command": cmd}, progress_callback=on_progress)
        )
        await asyncio.wait_for(got_line.wait(), 20)
        pgid = int(pid_file.read_text())
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        assert await wait_until(lambda: not live_members(pgid), timeout=15)
