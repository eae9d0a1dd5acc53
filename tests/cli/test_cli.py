"""The `cc-executor` console script end to end: a real subprocess against a real service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
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


def started(res: Any) -> tuple[str, bytes]:
    """The task id `run` announced on its first stderr line, and the rest of stderr."""
    first, _, rest = res.err.partition(b"\n")
    m = re.fullmatch(rb"cc-executor: task ([0-9a-f]{16}) started \(.*\)", first)
    assert m, res.err
    return m.group(1).decode(), rest


# --------------------------------------------------------------------------- run


async def test_run_streams_both_streams_and_exits_with_the_code(cli: Any) -> None:
    res = await cli(
        "run",
        *py("import sys; sys.stdout.write('out\\n'); sys.stderr.write('err\\n'); sys.exit(3)"),
    )
    assert res.rc == 3
    assert res.out == b"out\n"
    _task_id, rest = started(res)
    assert rest == b"err\n"
    # --quiet: stderr is the command's alone, byte for byte.
    res = await cli("run", "-q", *py("import sys; sys.stderr.write('only this')"))
    assert res.rc == 0 and res.err == b"only this"


async def test_run_exit_zero_and_binary_output_byte_exact(cli: Any) -> None:
    res = await cli("run", *py("import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)"))
    assert res.rc == 0
    assert res.out == bytes(range(256)) * 4
    assert started(res)[1] == b""


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


async def test_run_of_a_missing_program_exits_127_as_a_shell_does(cli: Any, tmp_path: Path) -> None:
    res = await cli("run", "--", "/nonexistent/program")
    assert res.rc == 127
    assert "spawn failed" in res.stderr and "No such file" in res.stderr
    res = await cli("run", "/nonexistent/program --through-the-shell")
    assert res.rc == 127
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    res = await cli("run", "--", str(plain))
    assert res.rc == 126


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
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "EXIT",
        "STARTED",
        "TIME",
        "COST",
        "ERROR",
        "COMMAND",
    ]
    row_ok = next(ln for ln in lines if ln.startswith(ok.task_id[:8]))
    row_bad = next(ln for ln in lines if ln.startswith(bad.task_id[:8]))
    assert "completed" in row_ok and "[first-task] echo hello" in row_ok and "s ago" in row_ok
    assert "failed" in row_bad and " 4 " in row_bad and "sh -c 'exit 4'" in row_bad
    assert " exit " in row_bad  # the error kind of a non-zero exit
    assert lines[-1] == "2 tasks"
    assert all(len(ln) <= 80 for ln in lines), lines  # not a terminal: 80 columns

    res = await cli("tasks", "--json")
    assert res.rc == 0
    listing = json.loads(res.out)
    ids = [t["task_id"] for t in listing["tasks"]]
    assert ids[:2] == [bad.task_id, ok.task_id]  # newest first
    assert "stats" in listing and listing["total"] == 2

    res = await cli("tasks", "--json", "--limit", "1")
    assert [t["task_id"] for t in json.loads(res.out)["tasks"]] == [bad.task_id]


async def test_tasks_filters_show_n_of_m_and_active_first(cli: Any, client: ExecutorClient) -> None:
    sleeper = await client.execute(["sleep", "30"], name="sleeper", keep_events=False)
    for i in range(4):
        h = await client.execute(["sh", "-c", f"exit {i % 2}"], name=f"job{i}", keep_events=False)
        await h.wait()
    try:
        res = await cli("tasks", "--limit", "2")
        lines = res.stdout.splitlines()
        assert lines[1].startswith(sleeper.task_id[:8]) and "running" in lines[1]  # first
        assert lines[-1] == "2 of 5 tasks shown (--all shows all, --limit N more)"
        res = await cli("tasks", "--all")
        assert res.stdout.splitlines()[-1] == "5 tasks"
        res = await cli("tasks", "--status", "running,failed")
        rows = res.stdout.splitlines()[1:-1]
        assert len(rows) == 3 and all(("running" in r) or ("failed" in r) for r in rows)
        assert res.stdout.splitlines()[-1] == "3 tasks"
        res = await cli("tasks", "--search", "JOB2")
        assert [r.split()[0] for r in res.stdout.splitlines()[1:-1]] != []
        assert "[job2]" in res.stdout and "[job1]" not in res.stdout
        res = await cli("tasks", "--status", "running,bogus")
        assert res.rc == 2 and "unknown status bogus" in res.stderr and "timed_out" in res.stderr
        res = await cli("tasks", "--status", "nope", "--json")
        assert res.rc == 2 and "unknown status" in json.loads(res.out)["error"]["message"]
    finally:
        await client.control(sleeper.task_id, "CANCEL")


async def test_task_arguments_take_a_unique_prefix_or_a_name(
    cli: Any, client: ExecutorClient
) -> None:
    first = await client.execute(["printf", "one"], name="build", keep_events=False)
    await first.wait()
    second = await client.execute(["printf", "two"], name="build", keep_events=False)
    await second.wait()
    res = await cli("logs", second.task_id[:6])
    assert res.rc == 0 and res.out == b"two"
    res = await cli("logs", "build")  # a name given twice: the newest
    assert res.rc == 0 and res.out == b"two"
    sleeper = await client.execute(["sleep", "30"], name="build", keep_events=False)
    res = await cli("pause", "build")  # ... but the active one if there is one
    assert res.rc == 0 and res.stdout == f"{sleeper.task_id}: paused\n"
    res = await cli("cancel", "--json", sleeper.task_id[:10])
    assert res.rc == 0 and json.loads(res.out)["status"] == "cancelled"
    res = await cli("logs", "")
    assert res.rc == 2
    # A prefix of several ids is refused with the candidates (ids are hex: "" + one digit).
    ids = [t["task_id"] for t in (await client.status())["tasks"]]
    common = next((c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1), None)
    if common is not None:
        res = await cli("logs", common)
        assert res.rc == 2 and "is the start of" in res.stderr and "hint:" in res.stderr


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
    assert res.rc == 5
    assert res.stderr.startswith("error: ") and "already completed" in res.stderr


async def test_unknown_task_is_exit_5_with_the_message_and_a_hint(cli: Any) -> None:
    res = await cli("logs", "0123456789abcdef")
    assert res.rc == 5
    assert res.stderr.startswith("error: ") and "not found" in res.stderr
    assert "hint: `cc-executor tasks --all` lists the tasks" in res.stderr
    res = await cli("pause", "--json", "no-such-task")
    assert res.rc == 5
    doc = json.loads(res.out)["error"]
    assert doc["exit_code"] == 5 and doc["code"] == -32001 and "not found" in doc["message"]
    assert res.err == b""


async def test_invalid_params_show_the_service_message(cli: Any, tmp_path: Path) -> None:
    res = await cli("run", "--cwd", str(tmp_path / "missing"), "--", "true")
    assert res.rc == 5
    assert "does not exist" in res.stderr


async def test_usage_errors_are_2_and_never_a_traceback(cli: Any) -> None:
    for args in (
        ["run", "--timeout", "abc", "--", "true"],
        ["--url", "http://", "tasks"],
        ["tasks", "--limit", "0"],
        ["run"],
    ):
        res = await cli(*args)
        assert res.rc == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and "_positive" not in res.stderr
        assert "error" in res.stderr, res.stderr
    res = await cli("run", "--timeout", "abc", "--", "true")
    assert "argument --timeout: not a number: 'abc'" in res.stderr
    res = await cli("run", "--json", "--timeout", "abc", "--", "true")
    assert res.rc == 2 and json.loads(res.out)["error"]["exit_code"] == 2


async def test_unreachable_service_is_exit_3(cli: Any, unused_port: int) -> None:
    res = await cli("tasks", connect=False, env={"CC_EXECUTOR_PORT": str(unused_port)})
    assert res.rc == 3
    assert f"cannot reach the service at ws://127.0.0.1:{unused_port}/ws" in res.stderr
    assert "cc-executor start" in res.stderr
    # A URL as a user types it: http:// and host:port are the same service.
    res = await cli("--url", f"http://127.0.0.1:{unused_port}", "tasks", "--json", connect=False)
    assert res.rc == 3
    assert json.loads(res.out)["error"]["message"].endswith(f"127.0.0.1:{unused_port}/ws")


async def test_wrong_token_is_exit_4_and_says_where_the_token_came_from(
    cli: Any, service: ExecutorService, settings: Any
) -> None:
    res = await cli("tasks", "--url", service.url, "--token", "wrong", connect=False)
    assert res.rc == 4
    assert "refused the token" in res.stderr and "--token" in res.stderr
    # Read from another data dir's token file: the message names that file.
    other = settings.data_dir.parent / "elsewhere"
    other.mkdir()
    (other / "token").write_text("not-it")
    res = await cli(
        "sessions",
        "list",
        "--url",
        service.url,
        connect=False,
        env={"CC_EXECUTOR_DATA_DIR": str(other)},
    )
    assert res.rc == 4 and str(other / "token") in res.stderr and "hint:" in res.stderr


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
    assert f"dashboard: http://127.0.0.1:{service.port}/" in res.stdout
    assert handle.task_id[:8] in res.stdout

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
async def test_claude_retries_follow_to_the_last_attempt(cli: Any) -> None:
    res = await cli("claude", "FAKE_ERROR=overloaded FAKE_ERROR_TIMES=1 work", "--retries", "2")
    assert res.rc == 0, res.stderr
    assert res.stdout.startswith("Fake Claude answer to: FAKE_ERROR=overloaded")
    assert re.search(r"\[overloaded: retrying as task [0-9a-f]{16}\]", res.stderr), res.stderr
    res = await cli(
        "claude", "FAKE_ERROR=overloaded FAKE_ERROR_TIMES=1 json", "--retries=1", "--json"
    )
    rec = json.loads(res.out)
    assert res.rc == 0 and rec["status"] == "completed"
    assert rec["attempt"] == 2 and rec["attempts"] == 2 and rec["retry_of"]


@pytest.mark.usefixtures("fake_claude_state")
async def test_tasks_say_what_a_held_task_waits_for(cli: Any, client: ExecutorClient) -> None:
    limited = await client.execute_claude("FAKE_ERROR=rate_limit FAKE_RESET_IN=60 hit it")
    await limited.wait(30)
    held = await client.execute_claude("waits for the window")
    res = await cli("tasks")
    assert res.rc == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith(held.task_id[:8]))
    assert re.search(r"queued \(rate_limit until \d\d:\d\d:\d\d\)", line), line
    assert (await cli("cancel", held.task_id)).rc == 0


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
