"""The `cc-executor` console script end to end: a real subprocess against a real service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.engine import process
from cc_executor.server import ExecutorService

PY = sys.executable


def py(code: str) -> list[str]:
    return ["--", PY, "-c", code]


# --------------------------------------------------------------------------- run


async def test_run_streams_both_streams_and_exits_with_the_code(cli: Any) -> None:
    res = await cli(
        "run",
        *py("import sys; sys.stdout.write('out\\n'); sys.stderr.write('err\\n'); sys.exit(3)"),
    )
    assert res.rc == 3
    assert res.out == b"out\n"
    assert res.err == b"err\n"


async def test_run_exit_zero_and_binary_output_byte_exact(cli: Any) -> None:
    res = await cli("run", *py("import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)"))
    assert res.rc == 0
    assert res.out == bytes(range(256)) * 4
    assert res.err == b""


async def test_run_large_output_is_lossless(cli: Any) -> None:
    code = (
        "import sys, hashlib\n"
        "data = b''.join(hashlib.sha256(str(i).encode()).digest() for i in range(160_000))\n"
        "sys.stdout.buffer.write(data)\n"
    )
    expected = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(160_000))
    res = await cli("run", *py(code))
    assert res.rc == 0
    assert len(res.out) == len(expected)
    assert hashlib.sha256(res.out).digest() == hashlib.sha256(expected).digest()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGKILL, 137)])
async def test_run_killed_by_signal_exits_128_plus_signal(cli: Any, sig: int, code: int) -> None:
    res = await cli("run", "--", "sh", "-c", f"echo before; kill -{int(sig)} $$")
    assert res.rc == code
    assert res.out == b"before\n"


async def test_run_timeout_exits_124(cli: Any) -> None:
    res = await cli("run", "--timeout", "0.2", "--", "sleep", "30")
    assert res.rc == 124
    assert "timed_out" in res.stderr


async def test_run_a_single_string_goes_through_the_shell(cli: Any, client: ExecutorClient) -> None:
    line = "echo one && echo two | tr a-z A-Z; exit 5"
    res = await cli("run", "--name", "shelly", line)
    assert res.rc == 5
    assert res.out == b"one\nTWO\n"
    (task,) = [t for t in (await client.status())["tasks"] if t["name"] == "shelly"]
    assert task["command"] == line  # sent as a string, not split


async def test_run_words_are_execd_without_a_shell(cli: Any) -> None:
    res = await cli("run", "--", "echo", "$HOME", "a && b")
    assert res.rc == 0
    assert res.out == b"$HOME a && b\n"


async def test_run_json_prints_the_final_record(cli: Any, tmp_path: Path) -> None:
    res = await cli("run", "--json", "--cwd", str(tmp_path), "--name", "j", "--", "pwd")
    assert res.rc == 0
    rec = json.loads(res.out)
    assert rec["status"] == "completed"
    assert rec["exit_code"] == 0
    assert rec["name"] == "j"
    assert rec["cwd"] == str(tmp_path)
    assert rec["stdout_bytes"] == len(str(tmp_path)) + 1


async def test_run_json_keeps_the_exit_code(cli: Any) -> None:
    res = await cli("run", "--json", *py("raise SystemExit(7)"))
    assert res.rc == 7
    assert json.loads(res.out)["status"] == "failed"


async def test_run_of_a_missing_program_fails_with_a_message(cli: Any) -> None:
    res = await cli("run", "--", "/nonexistent/program")
    assert res.rc == 1
    assert "spawn failed" in res.stderr


async def test_ctrl_c_cancels_the_task_and_exits_130(
    cli: Any,
    client: ExecutorClient,
    wait_for_task: Callable[..., Any],
    assert_group_gone: Callable[[int], None],
) -> None:
    proc = await cli.spawn("run", "--name", "to-interrupt", "--", "sleep", "30")
    task = await wait_for_task(
        lambda t: t.get("name") == "to-interrupt" and t["status"] == "running"
    )
    proc.send_signal(signal.SIGINT)
    res = await cli.finish(proc)
    assert res.rc == 130
    assert "cancelling" in res.stderr
    rec = await client.status(task["task_id"])
    assert rec["status"] == "cancelled"
    assert_group_gone(task["pgid"])


# --------------------------------------------------------------------------- tasks, logs


async def test_tasks_lists_human_and_json(cli: Any, client: ExecutorClient) -> None:
    ok = await client.execute(["echo", "hello"], name="first-task")
    await ok.wait()
    bad = await client.execute(["sh", "-c", "exit 4"])
    await bad.wait()

    res = await cli("tasks")
    assert res.rc == 0
    lines = res.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "STATUS", "EXIT", "DURATION", "BYTES"]
    row_ok = next(ln for ln in lines if ok.task_id in ln)
    row_bad = next(ln for ln in lines if bad.task_id in ln)
    assert "completed" in row_ok and "first-task" in row_ok
    assert "failed" in row_bad and " 4 " in row_bad and "sh -c 'exit 4'" in row_bad

    res = await cli("tasks", "--json")
    assert res.rc == 0
    listing = json.loads(res.out)
    ids = [t["task_id"] for t in listing["tasks"]]
    assert ids[:2] == [bad.task_id, ok.task_id]  # newest first
    assert "stats" in listing

    res = await cli("tasks", "--json", "--limit", "1")
    assert [t["task_id"] for t in json.loads(res.out)["tasks"]] == [bad.task_id]


async def test_logs_of_a_finished_task_equal_its_output(cli: Any, client: ExecutorClient) -> None:
    out = bytes(range(256)) * 3000 + "é\n".encode()
    err = b"E" * 1000
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)) * 3000 + 'é\\n'.encode())\n"
        "sys.stderr.buffer.write(b'E' * 1000)\n"
    )
    handle = await client.execute([PY, "-c", code], keep_events=False)
    assert (await handle.wait())["status"] == "completed"

    res = await cli("logs", handle.task_id)
    assert res.rc == 0
    assert res.out == out
    assert res.out == await client.read_output(handle.task_id)

    res = await cli("logs", "--stderr", handle.task_id)
    assert res.rc == 0
    assert res.out == err


async def test_logs_follow_streams_until_the_task_ends(
    cli: Any, client: ExecutorClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    code = (
        "import sys\n"
        "sys.stdout.write('first\\n'); sys.stdout.flush()\n"
        f"open({str(gate)!r}).read()\n"
        "sys.stdout.write('second\\n')\n"
    )
    handle = await client.execute([PY, "-c", code], keep_events=False)
    proc = await cli.spawn("logs", "--follow", handle.task_id)
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert first == b"first\n"
    # Opening the FIFO for writing blocks until the task opens it to read: no race.
    await asyncio.wait_for(asyncio.to_thread(gate.write_text, "go"), 30)
    res = await cli.finish(proc)
    assert res.rc == 0
    assert first + res.out == b"first\nsecond\n"
    assert (await handle.wait())["status"] == "completed"


async def test_logs_follow_of_a_finished_task_prints_it_once(
    cli: Any, client: ExecutorClient
) -> None:
    handle = await client.execute(["printf", "a\\nb\\n"], keep_events=False)
    await handle.wait()
    res = await cli("logs", "-f", handle.task_id)
    assert res.rc == 0
    assert res.out == b"a\nb\n"


# --------------------------------------------------------------------------- control


async def test_pause_resume_cancel_a_running_sleep(
    cli: Any, client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    handle = await client.execute(["sleep", "30"])
    pgid = handle.pid
    assert pgid is not None

    res = await cli("pause", handle.task_id)
    assert res.rc == 0
    assert res.stdout == f"{handle.task_id}: paused\n"
    states = process.group_members(pgid)
    assert states and all(st == "T" for st in states.values()), states

    res = await cli("resume", "--json", handle.task_id)
    assert res.rc == 0
    assert json.loads(res.out) == {
        "task_id": handle.task_id,
        "action": "RESUME",
        "status": "running",
    }
    assert all(st != "T" for st in process.group_members(pgid).values())

    res = await cli("cancel", handle.task_id)
    assert res.rc == 0
    assert res.stdout == f"{handle.task_id}: cancelled\n"
    assert (await handle.wait())["status"] == "cancelled"
    assert_group_gone(pgid)


async def test_control_of_a_finished_task_is_a_service_error(
    cli: Any, client: ExecutorClient
) -> None:
    handle = await client.execute(["true"], keep_events=False)
    await handle.wait()
    res = await cli("pause", handle.task_id)
    assert res.rc == 2
    assert res.stderr.startswith("error: ")


# --------------------------------------------------------------------------- errors


async def test_unknown_task_is_exit_2_with_the_message(cli: Any) -> None:
    res = await cli("logs", "0123456789abcdef")
    assert res.rc == 2
    assert res.stderr.startswith("error: ") and "not found" in res.stderr


async def test_invalid_params_show_the_service_message(cli: Any, tmp_path: Path) -> None:
    res = await cli("run", "--cwd", str(tmp_path / "missing"), "--", "true")
    assert res.rc == 2
    assert "does not exist" in res.stderr


async def test_unreachable_service_is_exit_3(cli: Any, unused_port: int) -> None:
    res = await cli("tasks", connect=False, env={"CC_EXECUTOR_PORT": str(unused_port)})
    assert res.rc == 3
    assert f"cannot reach the service at ws://127.0.0.1:{unused_port}/ws" in res.stderr
    assert "cc-executor start" in res.stderr


async def test_wrong_token_is_refused_options_after_the_subcommand(
    cli: Any, service: ExecutorService
) -> None:
    res = await cli("tasks", "--url", service.url, "--token", "wrong", connect=False)
    assert res.rc == 3
    assert "401" in res.stderr


async def test_token_is_read_from_the_data_dir(cli: Any, service: ExecutorService) -> None:
    res = await cli("tasks", "--json", "--url", service.url, connect=False)
    assert res.rc == 0
    assert json.loads(res.out)["tasks"] == []


# --------------------------------------------------------------------------- status


async def test_status_exit_0_when_running(
    cli: Any, client: ExecutorClient, service: ExecutorService
) -> None:
    handle = await client.execute(["echo", "hi"], keep_events=False)
    await handle.wait()
    # No --url/--token: host and port from the environment, the token from the data dir.
    env = {"CC_EXECUTOR_HOST": "127.0.0.1", "CC_EXECUTOR_PORT": str(service.port)}
    res = await cli("status", connect=False, env=env)
    assert res.rc == 0, res.stderr
    assert f"is running at ws://127.0.0.1:{service.port}/ws" in res.stdout
    assert handle.task_id in res.stdout

    res = await cli("status", "--json", connect=False, env=env)
    assert res.rc == 0
    doc = json.loads(res.out)
    assert doc["running"] is True
    assert doc["health"]["status"] == "ok"
    assert [t["task_id"] for t in doc["tasks"]] == [handle.task_id]


async def test_status_exit_1_when_nothing_listens(cli: Any, unused_port: int) -> None:
    env = {"CC_EXECUTOR_HOST": "127.0.0.1", "CC_EXECUTOR_PORT": str(unused_port)}
    res = await cli("status", connect=False, env=env)
    assert res.rc == 1
    assert f"cc-executor is not running at http://127.0.0.1:{unused_port}/health" in res.stderr

    res = await cli("status", "--json", connect=False, env=env)
    assert res.rc == 1
    assert json.loads(res.out)["running"] is False


# --------------------------------------------------------------------------- claude


@pytest.mark.usefixtures("fake_claude_state")
async def test_claude_prints_the_result_and_streams_events(cli: Any) -> None:
    res = await cli("claude", "hello FAKE_TOOL_USE")
    assert res.rc == 0, res.stderr
    assert res.stdout == "Fake Claude answer to: hello FAKE_TOOL_USE\n"
    assert "[session " in res.stderr
    assert "[tool: Bash]" in res.stderr
    assert "completed" in res.stderr


@pytest.mark.usefixtures("fake_claude_state")
async def test_claude_options_reach_the_cli(cli: Any) -> None:
    res = await cli(
        "claude",
        "FAKE_ECHO_OPTIONS",
        "--model",
        "sonnet",
        "--max-turns",
        "3",
        "--skip-permissions",
        "--append-system-prompt",
        "be brief",
    )
    assert res.rc == 0, res.stderr
    options = json.loads(res.out)["options"]
    assert options["model"] == "sonnet"
    assert options["max_turns"] == "3"
    assert options["skip_permissions"] is True
    assert options["append_system_prompt"] == "be brief"


@pytest.mark.usefixtures("fake_claude_state")
async def test_every_claude_option_reaches_the_cli(cli: Any, tmp_path: Path) -> None:
    res = await cli(
        "claude",
        "FAKE_ECHO_OPTIONS",
        "--allowed-tools",
        "Read, Bash(git log:*)",
        "--disallowed-tools",
        "WebFetch",
        "--permission-mode",
        "plan",
        "--max-budget-usd",
        "2.5",
        "--mcp-config",
        '{"mcpServers": {}}',
        "--add-dir",
        str(tmp_path),
        "--add-dir",
        "/tmp",
        "--cwd",
        str(tmp_path),
        "--name",
        "echo",
    )
    assert res.rc == 0, res.stderr
    options = json.loads(res.out)["options"]
    assert options["allowed_tools"] == ["Read,Bash(git log:*)"]
    assert options["disallowed_tools"] == ["WebFetch"]
    assert options["permission_mode"] == "plan"
    assert float(options["max_budget_usd"]) == 2.5
    assert options["mcp_config"] == ['{"mcpServers": {}}']
    assert options["add_dirs"] == [str(tmp_path), "/tmp"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-turns", "0"], "--max-turns"),
        (["--max-budget-usd", "-1"], "--max-budget-usd"),
        (["--max-budget-usd", "much"], "--max-budget-usd"),
        (["--permission-mode", "yolo"], "--permission-mode"),
        (["--timeout", "0"], "--timeout"),
    ],
)
async def test_a_bad_claude_option_is_refused_naming_it(
    cli: Any, args: list[str], named: str
) -> None:
    res = await cli("claude", "hi", *args)
    assert res.rc == 2
    assert f"argument {named}: " in res.stderr.splitlines()[-1]


@pytest.mark.usefixtures("fake_claude_state")
async def test_claude_json_and_resume(cli: Any) -> None:
    res = await cli("claude", "--json", "remember this")
    assert res.rc == 0, res.stderr
    rec = json.loads(res.out)
    assert rec["status"] == "completed"
    assert rec["result"] == "Fake Claude answer to: remember this"
    session = rec["claude_session_id"]
    assert session

    res = await cli("claude", "and now?", "--resume", session)
    assert res.rc == 0, res.stderr
    assert "turn 2" in res.stdout


@pytest.mark.usefixtures("fake_claude_state")
async def test_claude_error_exits_1_with_its_kind(cli: Any) -> None:
    res = await cli("claude", "FAKE_ERROR=auth")
    assert res.rc == 1
    assert res.out == b""
    assert "error (auth)" in res.stderr
