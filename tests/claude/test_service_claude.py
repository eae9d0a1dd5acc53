"""execute_claude through the real service, with the fake `claude` CLI as claude_bin.

Every test goes over the WebSocket protocol (service + client fixtures) and runs the fake as
a real child process; nothing of the service is mocked.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cc_executor.claude.errors import HINTS, TITLES, ErrorKind
from cc_executor.claude.runner import EVENT_TEXT_MAX_CHARS
from cc_executor.claude.stream import TOOL_RESULT_MAX_CHARS
from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.engine.process import group_members
from cc_executor.protocol import ErrorCode, Notification, ProtocolError
from tests.claude.conftest import (
    StartService,
    collect,
    next_claude_event,
    run_claude,
    write_script,
)
from tests.support import FAKE_CLAUDE, live_members, wait_until

pytestmark = pytest.mark.usefixtures("fake_claude_state")

BASE_OPTIONS = {"print": True, "output_format": "stream-json", "verbose": True}
MCP = {"mcpServers": {"s": {"command": "npx", "args": ["-y", "some-server"]}}}
ANSWER = "Fake Claude answer to: "


# ------------------------------------------------------------------------ params -> argv


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "claude-sonnet-4-5"}, {"model": "claude-sonnet-4-5"}),
        (
            {"allowed_tools": ["Bash(git log:*)", "Read"]},
            {"allowed_tools": ["Bash(git log:*),Read"]},
        ),
        ({"disallowed_tools": ["WebFetch", "Write"]}, {"disallowed_tools": ["WebFetch,Write"]}),
        ({"permission_mode": "acceptEdits"}, {"permission_mode": "acceptEdits"}),
        ({"skip_permissions": True}, {"skip_permissions": True}),
        ({"max_turns": 7}, {"max_turns": "7"}),
        ({"max_budget_usd": 2.5}, {"max_budget_usd": "2.5"}),
        ({"mcp_config": MCP}, {"mcp_config": [orjson.dumps(MCP).decode()]}),
        ({"mcp_config": "/etc/mcp servers.json"}, {"mcp_config": ["/etc/mcp servers.json"]}),
        (
            {"append_system_prompt": "-be terse\nand 'exact'"},
            {"append_system_prompt": "-be terse\nand 'exact'"},
        ),
        ({"add_dirs": ["/tmp/a", "-weird dir"]}, {"add_dirs": ["/tmp/a", "-weird dir"]}),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) and v else None,
)
async def test_each_param_reaches_argv_alone(
    client: ExecutorClient, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    run = await run_claude(client, "FAKE_ECHO_OPTIONS", **params)
    assert run.record["status"] == "completed", run.record
    assert run.answer_json() == {
        "options": {**BASE_OPTIONS, **expected},
        "prompt": "FAKE_ECHO_OPTIONS",
    }
    assert run.record["argv"][-2:] == ["--", "FAKE_ECHO_OPTIONS"]


async def test_all_params_together_and_the_exact_argv(
    client: ExecutorClient, tmp_path: Path
) -> None:
    prompt = (
        "--model evil -p \"double\" 'single' $HOME `id` \\n ünïcødé €\n"
        "second line\n\n  FAKE_ECHO_OPTIONS --"
    )
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "allowed_tools": ["Read", "Grep"],
        "disallowed_tools": ["WebFetch"],
        "permission_mode": "plan",
        "skip_permissions": True,
        "max_turns": 5,
        "max_budget_usd": 2.5,
        "mcp_config": MCP,
        "append_system_prompt": "-be terse",
        "add_dirs": [str(tmp_path), "-odd dir"],
    }
    run = await run_claude(client, prompt, **params)
    assert run.record["status"] == "completed", run.record
    got = run.answer_json()
    assert got["prompt"] == prompt  # starts with '-', quotes, newlines: intact
    assert got["options"] == {
        **BASE_OPTIONS,
        "model": "claude-sonnet-4-5",
        "allowed_tools": ["Read,Grep"],
        "disallowed_tools": ["WebFetch"],
        "permission_mode": "plan",
        "skip_permissions": True,
        "max_turns": "5",
        "max_budget_usd": "2.5",
        "mcp_config": [orjson.dumps(MCP).decode()],
        "append_system_prompt": "-be terse",
        "add_dirs": [str(tmp_path), "-odd dir"],
    }
    assert run.record["model"] == "claude-sonnet-4-5"  # the model the CLI reported in init

    # FAKE_ECHO_ARGV: what the child got is exactly the argv on the record.
    echo = await run_claude(client, prompt.replace("FAKE_ECHO_OPTIONS", "FAKE_ECHO_ARGV"), **params)
    argv = echo.record["argv"]
    assert echo.answer_json() == argv[1:]
    assert argv[:5] == [str(FAKE_CLAUDE), "-p", "--output-format", "stream-json", "--verbose"]
    assert argv[-2] == "--" and argv.count("--") == 1


@pytest.mark.parametrize(
    "prompt", ["-p", "--help", "--version", "--", 'it\'s "quoted"\n\n\ttabbed\\ `$(x)`; €']
)
async def test_prompt_arrives_intact(client: ExecutorClient, prompt: str) -> None:
    # Taken as an option, "--version" or "--help" would end the run without a result.
    run = await run_claude(client, prompt)
    assert run.record["status"] == "completed", run.record
    assert run.record["result"] == ANSWER + prompt


async def test_params_that_do_not_go_to_argv(client: ExecutorClient, tmp_path: Path) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    run = await run_claude(
        client,
        "FAKE_PRINT_ENV=MY_VAR",
        cwd=str(work),
        env={"MY_VAR": "from params"},
        name="my claude task",
        timeout=60,
        idle_timeout=50,
    )
    rec = run.record
    assert rec["status"] == "completed", rec
    assert rec["result"].endswith("\nMY_VAR=from params")
    assert run.claude_events("system")[0]["session_id"] == rec["claude_session_id"]
    assert rec["cwd"] == str(work)
    init_line = orjson.loads((await client.output(run.task_id, limit=65536))["data"].split("\n")[0])
    assert init_line["cwd"] == str(work)
    assert (rec["name"], rec["timeout"], rec["idle_timeout"]) == ("my claude task", 60, 50)
    assert rec["kind"] == "claude"
    assert rec["prompt"] == "FAKE_PRINT_ENV=MY_VAR"
    started = next(e["params"] for e in run.events if e["method"] == Notification.STARTED)
    assert started["kind"] == "claude" and started["name"] == "my claude task"


async def test_oversized_or_nul_prompt_is_refused_as_invalid_params(
    client: ExecutorClient,
) -> None:
    for prompt in ("x" * (128 * 1024), "a\x00b"):
        with pytest.raises(ProtocolError) as info:
            await client.execute_claude(prompt)
        assert info.value.code == ErrorCode.INVALID_PARAMS
        assert "prompt" in info.value.message
    longest = "y" * (128 * 1024 - 1)  # the NUL terminator makes 128 KiB
    ok = await run_claude(client, longest)
    assert ok.record["status"] == "completed"
    assert ok.record["result"] == ANSWER + longest


# ------------------------------------------------------------------------ record and events


async def test_record_fields_and_claude_events(client: ExecutorClient) -> None:
    run = await run_claude(client, "list files FAKE_TOOL_USE")
    rec = run.record
    answer = ANSWER + "list files FAKE_TOOL_USE"
    assert rec["status"] == "completed" and rec["exit_code"] == 0
    assert rec["error_kind"] is None and rec["error"] is None
    assert rec["result"] == answer
    assert re.fullmatch(r"[0-9a-f-]{36}", rec["claude_session_id"])
    assert rec["is_error"] is False
    assert rec["subtype"] == "success"
    assert rec["num_turns"] == 2
    assert isinstance(rec["duration_ms"], int) and rec["duration_ms"] > 0
    assert rec["total_cost_usd"] == pytest.approx(0.0246)
    assert rec["usage"]["input_tokens"] == 24 and rec["usage"]["output_tokens"] == 34
    assert rec["model"] == "claude-opus-4-8[1m]"
    assert rec["permission_denials"] == []
    assert rec["partial"] is False
    assert "verification" not in rec  # the UUID hook is off by default

    init, tool_msg, tool_res, final, result = run.claude_events()
    assert init["type"] == "system" and init["subtype"] == "init"
    assert init["session_id"] == rec["claude_session_id"]
    assert init["model"] == "claude-opus-4-8[1m]" and "Bash" in init["tools"]
    assert tool_msg["type"] == "assistant" and tool_msg["text"] == "Let me run a command."
    assert [u["name"] for u in tool_msg["tool_uses"]] == ["Bash"]
    assert tool_res["type"] == "user"
    assert tool_res["tool_results"] == [
        {
            "tool_use_id": tool_msg["tool_uses"][0]["id"],
            "is_error": False,
            "content": "fake-tool-output",
        }
    ]
    assert final == {
        "type": "assistant",
        "subtype": None,
        "text": answer,
        "tool_uses": [],
    }
    assert result["type"] == "result" and result["result"] == answer
    assert result["num_turns"] == 2 and result["is_error"] is False

    done = run.done
    assert done["status"] == "completed" and done["result"] == answer
    assert done["claude_session_id"] == rec["claude_session_id"] and done["error_kind"] is None
    # The raw stream is there too, and `output` returns it byte for byte.
    raw = b"".join(
        output_bytes(e["params"])
        for e in run.events
        if e["method"] == Notification.OUTPUT and e["params"]["stream"] == "stdout"
    )
    assert raw == await client.read_output(run.task_id)
    assert len(raw) == rec["stdout_bytes"]


async def test_long_tool_result_is_truncated_in_the_event(
    start_service: StartService, tmp_path: Path
) -> None:
    """A stand-in CLI replays a stream with a 20 kB tool result (the fake has no such mode)."""
    big = "".join(f"line {i:05d}\n" for i in range(2000))
    stream = [
        {"type": "system", "subtype": "init", "session_id": "s-1", "model": "m", "tools": []},
        {
            "type": "assistant",
            "message": {"content": [{"type": "tool_use", "id": "t1", "name": "Read"}]},
        },
        {
            "type": "user",
            "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": big}]},
        },
        {"type": "result", "subtype": "success", "is_error": False, "result": "done"},
    ]
    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in stream))
    replay = write_script(tmp_path / "replay-claude", f"cat '{jsonl}'\n")
    _, client = await start_service(claude_bin=str(replay))
    run = await run_claude(client, "anything")
    assert run.record["status"] == "completed" and run.record["result"] == "done"
    (res,) = run.claude_events("user")[0]["tool_results"]
    assert res["content"] == big[:TOOL_RESULT_MAX_CHARS]
    assert await client.read_output(run.task_id) == jsonl.read_bytes()


# ------------------------------------------------------------------------ environment


async def test_claudecode_is_stripped(
    client: ExecutorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDECODE", "1")  # as when the service runs under Claude Code
    monkeypatch.setenv("CLAUDE_CODE_ENTRYPOINT", "cli")
    run = await run_claude(
        client,
        "FAKE_PRINT_ENV=CLAUDECODE FAKE_PRINT_ENV=CLAUDE_CODE_ENTRYPOINT",
        env={"CLAUDECODE": "1"},  # even when a caller passes it
    )
    assert run.record["status"] == "completed", run.record
    assert run.record["result"].endswith("\nCLAUDECODE=<unset>\nCLAUDE_CODE_ENTRYPOINT=<unset>")


async def test_api_key_is_stripped_by_default(
    client: ExecutorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-123")
    run = await run_claude(client, "FAKE_PRINT_ENV=ANTHROPIC_API_KEY")
    assert run.record["result"].endswith("\nANTHROPIC_API_KEY=<unset>")


async def test_api_key_is_kept_when_the_setting_is_off(
    start_service: StartService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-123")
    _, client = await start_service(strip_anthropic_api_key=False)
    run = await run_claude(client, "FAKE_PRINT_ENV=ANTHROPIC_API_KEY")
    assert run.record["result"].endswith("\nANTHROPIC_API_KEY=sk-ant-test-123")


# ------------------------------------------------------------------------ error kinds


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("kind", "prompt", "params"),
    [
        ("auth", "hi FAKE_ERROR=auth", {}),
        ("rate_limit", "hi FAKE_ERROR=rate_limit FAKE_RESET_IN=600", {}),
        ("usage_limit", "hi FAKE_ERROR=usage_limit FAKE_RESET_IN=900", {}),
        ("context_limit", "hi FAKE_ERROR=context_limit", {}),
        ("max_turns", "hi FAKE_TOOL_USE", {"max_turns": 1}),
        ("max_budget", "hi", {"max_budget_usd": 0.001}),
        ("network", "hi FAKE_ERROR=network", {}),
        ("crashed", "hi FAKE_CRASH", {}),
    ],
)
async def test_error_kinds(
    client: ExecutorClient, kind: str, prompt: str, params: dict[str, Any]
) -> None:
    run = await run_claude(client, prompt, **params)
    rec = run.record
    assert rec["status"] == "failed"
    assert rec["error_kind"] == kind and run.done["error_kind"] == kind
    assert rec["error"].startswith(TITLES[ErrorKind(kind)])
    assert rec["error_hint"] == HINTS[ErrorKind(kind)]
    assert rec["claude_session_id"] == run.claude_events("system")[0]["session_id"]
    if kind == "crashed":
        assert rec["exit_code"] == 3 and "TypeError" in rec["error"]
        assert b"Node.js" in await client.read_output(run.task_id, "stderr")
        return
    assert rec["is_error"] is True and rec["exit_code"] == 1
    if kind == "rate_limit":
        (limit,) = run.claude_events("rate_limit_event")
        assert limit["status"] == "rejected"
        assert rec["reset_at"] == _iso(limit["resets_at"])
    elif kind == "usage_limit":
        ts = int(rec["result"].rsplit("|", 1)[1])
        assert rec["reset_at"] == _iso(ts)
    else:
        assert "reset_at" not in rec
    if kind == "max_turns":
        assert rec["subtype"] == "error_max_turns" and rec["num_turns"] == 2
    if kind == "max_budget":
        assert rec["subtype"] == "error_max_budget_usd"
    if kind == "network":
        assert len(run.claude_events("system")) == 5  # init + 4 api_retry


async def test_timeout_of_a_hung_cli(client: ExecutorClient) -> None:
    run = await run_claude(client, "FAKE_HANG", timeout=0.5)
    rec = run.record
    assert rec["status"] == "timed_out" and rec["error_kind"] == "timeout"
    assert rec["error_hint"] == HINTS[ErrorKind.TIMEOUT]
    assert rec["partial"] is True and rec["result"] is None
    assert rec["claude_session_id"] == run.claude_events("system")[0]["session_id"]
    assert not live_members(rec["pgid"])


async def test_timeout_keeps_the_partial_text(client: ExecutorClient) -> None:
    """The wall-clock timeout also ends a paused task; the text so far stays on the record.

    Pausing right after the first text makes the test independent of the machine's speed.
    """
    handle = await client.execute_claude("FAKE_SLOW=1 FAKE_TOOL_USE", timeout=3)
    events = handle.events()
    first = await next_claude_event(events, lambda e: e["type"] == "assistant")
    assert first["text"] == "Let me run a command."
    assert (await handle.pause())["status"] == "paused"
    async for _ in events:
        pass
    rec = await client.status(handle.task_id)
    assert rec["status"] == "timed_out" and rec["error_kind"] == "timeout"
    assert rec["result"] == "Let me run a command." and rec["partial"] is True
    assert not live_members(rec["pgid"])


async def test_cli_not_found(start_service: StartService, tmp_path: Path) -> None:
    _, client = await start_service(claude_bin=str(tmp_path / "nowhere" / "claude"))
    handle = await client.execute_claude("hello")
    assert handle.info["status"] == "failed"
    run = await collect(client, handle)
    rec = run.record
    assert rec["status"] == "failed" and rec["error_kind"] == "cli_not_found"
    assert rec["pid"] is None
    assert "FileNotFoundError" in rec["error"]
    assert rec["error_hint"] == HINTS[ErrorKind.CLI_NOT_FOUND]


async def test_nested_session(start_service: StartService, tmp_path: Path) -> None:
    """The service strips CLAUDECODE, so only a wrapper that sets it again can nest."""
    wrapper = write_script(tmp_path / "nested-claude", f'CLAUDECODE=1 exec "{FAKE_CLAUDE}" "$@"\n')
    _, client = await start_service(claude_bin=str(wrapper))
    run = await run_claude(client, "hello")
    rec = run.record
    assert rec["status"] == "failed" and rec["error_kind"] == "nested_session"
    assert "cannot be launched inside another Claude Code session" in rec["error"]
    assert rec["error_hint"] == HINTS[ErrorKind.NESTED_SESSION]


# ------------------------------------------------------------------------ control


def _all_stopped(pgid: int) -> bool:
    members = group_members(pgid)
    return bool(members) and all(st in "TtZX" for st in members.values())


def _none_stopped(pgid: int) -> bool:
    return not any(st in "Tt" for st in group_members(pgid).values())


async def test_pause_resume_then_completes(client: ExecutorClient) -> None:
    handle = await client.execute_claude("FAKE_SLOW=0.3 FAKE_TOOL_USE")
    events = handle.events()
    await next_claude_event(events, lambda e: e["subtype"] == "init")
    pgid = handle.pid
    assert pgid is not None
    assert (await handle.pause())["status"] == "paused"
    assert _all_stopped(pgid)  # the reply comes once the group is really stopped
    assert (await client.status(handle.task_id))["status"] == "paused"
    assert (await handle.resume())["status"] == "running"
    assert _none_stopped(pgid)
    rest = [ev async for ev in events]
    rec = await client.status(handle.task_id)
    assert rec["status"] == "completed"
    assert rec["result"] == ANSWER + "FAKE_SLOW=0.3 FAKE_TOOL_USE"
    methods = [e["method"] for e in rest]
    assert methods.index(Notification.PAUSED) < methods.index(Notification.RESUMED)
    assert methods[-1] == Notification.COMPLETED


async def test_cancel_keeps_partial_text_and_leaves_no_process(client: ExecutorClient) -> None:
    handle = await client.execute_claude("FAKE_SLOW=1 FAKE_TOOL_USE")
    await next_claude_event(handle.events(), lambda e: e["type"] == "assistant")
    assert (await handle.cancel())["status"] == "cancelled"
    assert handle.pid is not None and not live_members(handle.pid)
    rec = await client.status(handle.task_id)
    assert rec["status"] == "cancelled" and rec["error_kind"] is None
    assert rec["result"] == "Let me run a command." and rec["partial"] is True


async def test_cancel_of_a_paused_cli_that_ignores_sigterm(client: ExecutorClient) -> None:
    handle = await client.execute_claude("FAKE_IGNORE_SIGTERM")
    await next_claude_event(handle.events(), lambda e: e["subtype"] == "init")
    pgid = handle.pid
    assert pgid is not None
    await handle.pause()
    assert _all_stopped(pgid)
    assert (await handle.cancel())["status"] == "cancelled"  # SIGKILL after the grace period
    assert not live_members(pgid)
    done = await handle.wait(5)
    assert done["status"] == "cancelled" and done["signal"] == 9


# ------------------------------------------------------------------------ big output, resume


async def test_five_megabyte_line(client: ExecutorClient) -> None:
    size = 5_000_000
    run = await run_claude(client, f"FAKE_HUGE_LINE={size}")
    rec = run.record
    assert rec["status"] == "completed", rec
    assert rec["result"] == ANSWER + f"FAKE_HUGE_LINE={size}"
    body = ("0123456789abcdef" * (size // 16 + 1))[:size]
    huge = run.claude_events("assistant")[0]
    assert huge["text"] == body[:EVENT_TEXT_MAX_CHARS]
    assert huge["text_truncated"] is True and huge["text_chars"] == size
    raw = await client.read_output(run.task_id)
    assert len(raw) == rec["stdout_bytes"] > size
    lines = raw.split(b"\n")
    assert lines[-1] == b""
    parsed = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON
    assert parsed[1]["message"]["content"][0]["text"] == body
    streamed = b"".join(
        output_bytes(e["params"])
        for e in run.events
        if e["method"] == Notification.OUTPUT and e["params"]["stream"] == "stdout"
    )
    assert streamed == raw  # every byte streamed, whatever the client's pace


async def test_resume_continues_the_conversation(client: ExecutorClient) -> None:
    first = await run_claude(client, "remember 42")
    sid = first.record["claude_session_id"]
    second = await run_claude(client, "what was it?", resume=sid)
    assert second.record["status"] == "completed"
    assert second.record["claude_session_id"] == sid
    assert second.record["result"] == ANSWER + "what was it? (turn 2, remembers 1 earlier prompts)"
    assert second.record["num_turns"] == 2
    assert second.record["argv"][-3:] == [f"--resume={sid}", "--", "what was it?"]

    fork = await run_claude(client, "and now?", resume=sid, fork_session=True)
    assert fork.record["claude_session_id"] not in (None, sid)
    assert fork.record["result"].endswith("(turn 3, remembers 2 earlier prompts)")

    lost = await run_claude(client, "hello", resume="no-such-session")
    assert lost.record["status"] == "failed"
    assert "No conversation found with session ID: no-such-session" in lost.record["error"]


async def test_many_claude_tasks_at_once_do_not_mix(client: ExecutorClient) -> None:
    handles = [await client.execute_claude(f"task {i} FAKE_SLOW=0.05") for i in range(8)]
    runs = [await collect(client, h) for h in handles]
    for i, run in enumerate(runs):
        assert run.record["result"] == ANSWER + f"task {i} FAKE_SLOW=0.05"
    assert len({r.record["claude_session_id"] for r in runs}) == 8
    assert await wait_until(lambda: all(not live_members(r.record["pgid"]) for r in runs))
