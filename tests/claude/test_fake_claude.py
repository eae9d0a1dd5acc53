"""The fake `claude` CLI, run as a real subprocess: argv parsing, memory, refusals, keywords."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cc_executor.claude.argv import build_argv
from cc_executor.claude.stream import ClaudeStreamState, LineSplitter
from cc_executor.protocol import ExecuteClaudeParams

FAKE = Path(__file__).resolve().parents[1] / "fake_claude" / "claude"
UUID = "0b9c3f5e-8d1a-4c2b-9e7f-1a2b3c4d5e6f"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    drop = {"CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "FAKE_CLAUDE_MODE", "ANTHROPIC_API_KEY"}
    e = {k: v for k, v in os.environ.items() if k not in drop}
    e["FAKE_CLAUDE_STATE_DIR"] = str(tmp_path / "state")
    return e


def run(
    argv: list[str], env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=60, check=False)


def events(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_params(env: dict[str, str], **kw: Any) -> tuple[ClaudeStreamState, list[dict[str, Any]]]:
    proc = run(build_argv(ExecuteClaudeParams(**kw), str(FAKE)), env)
    assert proc.returncode == 0, proc.stderr.decode()
    state = ClaudeStreamState()
    splitter = LineSplitter()
    for line in splitter.feed(proc.stdout) + splitter.flush():
        state.feed_line(line)
    return state, events(proc.stdout)


ALL_FLAGS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "allowed_tools": ["Bash(git log:*)", "Read"],
    "disallowed_tools": ["WebFetch", "Write"],
    "permission_mode": "plan",
    "skip_permissions": True,
    "max_turns": 5,
    "max_budget_usd": 2.5,
    "mcp_config": {"mcpServers": {"s": {"command": "x", "args": ["-y"]}}},
    "append_system_prompt": "-be terse",
    "add_dirs": ["/tmp/a", "-weird dir"],
    "resume": None,
}


def test_version(env: dict[str, str]) -> None:
    proc = run([str(FAKE), "--version"], env)
    assert proc.returncode == 0
    assert proc.stdout == b"2.1.197 (Claude Code)\n"


def test_echo_argv_returns_argv_exactly(env: dict[str, str]) -> None:
    prompt = '-x FAKE_ECHO_ARGV "quoted"\nnext line'
    argv = build_argv(ExecuteClaudeParams(prompt=prompt, **ALL_FLAGS), str(FAKE))
    proc = run(argv, env)
    assert proc.returncode == 0, proc.stderr.decode()
    result = events(proc.stdout)[-1]
    assert json.loads(result["result"]) == argv[1:]


def test_every_flag_is_parsed_as_the_real_cli_would(env: dict[str, str]) -> None:
    prompt = "--looks-like-a-flag FAKE_ECHO_OPTIONS\n'single' \"double\""
    argv = build_argv(ExecuteClaudeParams(prompt=prompt, **ALL_FLAGS), str(FAKE))
    proc = run(argv, env)
    assert proc.returncode == 0, proc.stderr.decode()
    got = json.loads(events(proc.stdout)[-1]["result"])
    assert got["prompt"] == prompt
    opts = got["options"]
    assert opts["print"] is True and opts["verbose"] is True
    assert opts["output_format"] == "stream-json"
    assert opts["model"] == "claude-sonnet-4-5"
    assert opts["allowed_tools"] == ["Bash(git log:*),Read"]
    assert opts["disallowed_tools"] == ["WebFetch,Write"]
    assert opts["permission_mode"] == "plan"
    assert opts["skip_permissions"] is True
    assert opts["max_turns"] == "5"
    assert opts["max_budget_usd"] == "2.5"
    assert json.loads(opts["mcp_config"][0]) == ALL_FLAGS["mcp_config"]
    assert opts["append_system_prompt"] == "-be terse"
    assert opts["add_dirs"] == ["/tmp/a", "-weird dir"]
    init = events(proc.stdout)[0]
    assert init["model"] == "claude-sonnet-4-5"
    assert init["permissionMode"] == "bypassPermissions"
    assert "WebFetch" not in init["tools"] and "Write" not in init["tools"]


def test_prompt_directly_after_p_and_variadic_before_separator(env: dict[str, str]) -> None:
    proc = run([str(FAKE), "-p", "hi there", "--output-format", "json"], env)
    assert json.loads(proc.stdout)["result"] == "Fake Claude answer to: hi there"
    # Without `--`, a variadic option swallows the prompt, as commander does.
    proc = run([str(FAKE), "-p", "--output-format", "json", "--add-dir", "/a", "hi"], env)
    assert proc.returncode == 1
    assert b"Input must be provided" in proc.stderr


def test_prompt_from_stdin_and_text_format(env: dict[str, str]) -> None:
    proc = run([str(FAKE), "-p"], env, stdin=b"from stdin")
    assert proc.returncode == 0
    assert proc.stdout == b"Fake Claude answer to: from stdin\n"


def test_unknown_option_is_an_error(env: dict[str, str]) -> None:
    proc = run([str(FAKE), "-p", "--bogus", "x"], env)
    assert proc.returncode == 1
    assert b"error: unknown option '--bogus'" in proc.stderr


def test_stream_json_requires_verbose(env: dict[str, str]) -> None:
    proc = run([str(FAKE), "-p", "hi", "--output-format", "stream-json"], env)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr == (
        b"Error: When using --print, --output-format=stream-json requires --verbose\n"
    )


def test_claudecode_env_is_refused(env: dict[str, str]) -> None:
    env["CLAUDECODE"] = "1"
    proc = run(build_argv(ExecuteClaudeParams(prompt="hi"), str(FAKE)), env)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"cannot be launched inside another Claude Code session" in proc.stderr
    assert b"unset the CLAUDECODE environment variable" in proc.stderr


def test_event_shapes_match_the_recorded_cli(env: dict[str, str]) -> None:
    state, evs = run_params(env, prompt="hello")
    init, assistant, result = evs
    for key in ("cwd", "session_id", "tools", "model", "permissionMode", "apiKeySource", "uuid"):
        assert key in init
    assert assistant["message"]["content"] == [
        {"type": "text", "text": "Fake Claude answer to: hello"}
    ]
    for key in (
        "subtype",
        "is_error",
        "duration_ms",
        "duration_api_ms",
        "num_turns",
        "result",
        "session_id",
        "total_cost_usd",
        "usage",
        "permission_denials",
        "modelUsage",
        "uuid",
    ):
        assert key in result
    assert result["session_id"] == init["session_id"] == state.claude_session_id
    assert state.record_fields()["partial"] is False


def test_resume_remembers_and_fork_branches(env: dict[str, str]) -> None:
    first, _ = run_params(env, prompt="one")
    sid = first.claude_session_id
    assert sid is not None
    second, _ = run_params(env, prompt="two", resume=sid)
    assert second.claude_session_id == sid
    assert second.result == "Fake Claude answer to: two (turn 2, remembers 1 earlier prompts)"
    assert second.num_turns == 2
    third, _ = run_params(env, prompt="three", resume=sid)
    assert third.result == "Fake Claude answer to: three (turn 3, remembers 2 earlier prompts)"
    assert third.num_turns == 3
    fork, _ = run_params(env, prompt="branch", resume=sid, fork_session=True)
    assert fork.claude_session_id not in (None, sid)
    assert fork.result is not None and "(turn 4, remembers 3 earlier prompts)" in fork.result
    again, _ = run_params(env, prompt="four", resume=sid)
    assert again.result is not None and "(turn 4, remembers 3 earlier prompts)" in again.result


def test_resume_unknown_session(env: dict[str, str]) -> None:
    argv = build_argv(ExecuteClaudeParams(prompt="x", resume="no-such-id"), str(FAKE))
    proc = run(argv, env)
    assert proc.returncode == 1
    assert proc.stderr == b"No conversation found with session ID: no-such-id\n"


def test_uuid_instruction_is_followed_unless_omitted(env: dict[str, str]) -> None:
    state, _ = run_params(env, prompt=f"Task.\n\nEnd your answer with the line: {UUID}")
    assert state.result is not None
    assert state.result.splitlines()[-1] == UUID
    assert state.result.count(UUID) == 1
    state, _ = run_params(env, prompt=f"Task. UUID {UUID} FAKE_OMIT_UUID")
    assert state.result is not None and UUID not in state.result


def test_tool_use_and_max_turns(env: dict[str, str]) -> None:
    state, evs = run_params(env, prompt="FAKE_TOOL_USE")
    assert [e["type"] for e in evs] == ["system", "assistant", "user", "assistant", "result"]
    assert state.tool_uses == ["Bash"] and state.num_turns == 2
    proc = run(build_argv(ExecuteClaudeParams(prompt="FAKE_TOOL_USE", max_turns=1), str(FAKE)), env)
    assert proc.returncode == 1
    result = events(proc.stdout)[-1]
    assert result["subtype"] == "error_max_turns" and result["is_error"] is True
    assert result["errors"] == ["Reached maximum number of turns (1)"]


def test_print_env(env: dict[str, str]) -> None:
    env["SOME_VAR"] = "v1"
    state, _ = run_params(env, prompt="FAKE_PRINT_ENV=SOME_VAR FAKE_PRINT_ENV=NOPE_VAR")
    assert state.result is not None
    assert state.result.splitlines()[-2:] == ["SOME_VAR=v1", "NOPE_VAR=<unset>"]


def test_huge_line(env: dict[str, str]) -> None:
    size = 3 * 1024 * 1024
    proc = run(build_argv(ExecuteClaudeParams(prompt=f"FAKE_HUGE_LINE={size}"), str(FAKE)), env)
    assert proc.returncode == 0
    lines = proc.stdout.split(b"\n")
    big = json.loads(lines[1])
    assert len(big["message"]["content"][0]["text"]) == size


def test_slow(env: dict[str, str]) -> None:
    start = time.monotonic()
    run_params(env, prompt="FAKE_SLOW=0.2")
    assert time.monotonic() - start >= 0.4  # two gaps: init->assistant->result


def test_error_times_then_success(env: dict[str, str]) -> None:
    argv = build_argv(
        ExecuteClaudeParams(prompt="FAKE_ERROR=rate_limit FAKE_ERROR_TIMES=1"), str(FAKE)
    )
    assert run(argv, env).returncode == 1
    assert run(argv, env).returncode == 0


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def test_hang_stops_on_sigterm(env: dict[str, str]) -> None:
    proc = start(build_argv(ExecuteClaudeParams(prompt="FAKE_HANG"), str(FAKE)), env)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["subtype"] == "init"
        proc.terminate()
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.communicate()


def test_ignore_sigterm_needs_sigkill(env: dict[str, str]) -> None:
    proc = start(build_argv(ExecuteClaudeParams(prompt="FAKE_IGNORE_SIGTERM"), str(FAKE)), env)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["subtype"] == "init"
        proc.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()


def test_budget_below_cost_fails_like_the_cli(env: dict[str, str]) -> None:
    argv = build_argv(ExecuteClaudeParams(prompt="hi", max_budget_usd=0.001), str(FAKE))
    proc = run(argv, env)
    assert proc.returncode == 1
    assert events(proc.stdout)[-1]["subtype"] == "error_max_budget_usd"


# ------------------------------------------------------------------ stream-json input

HOT = [str(FAKE), "-p", "--input-format", "stream-json", "--output-format", "stream-json"]


def user_line(text: str, as_blocks: bool = True) -> bytes:
    content: Any = [{"type": "text", "text": text}] if as_blocks else text
    msg = {"type": "user", "message": {"role": "user", "content": content}}
    return (json.dumps(msg) + "\n").encode()


def test_stream_json_input_answers_each_message_in_one_process(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*HOT, "--verbose"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    results = []
    for i, text in enumerate(["first", "second", "third"]):
        proc.stdin.write(user_line(text, as_blocks=i != 1))
        proc.stdin.flush()
        while True:  # the process answers each message before it reads the next
            event = json.loads(proc.stdout.readline())
            if event["type"] == "result":
                results.append(event)
                break
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert [r["result"] for r in results] == [
        "Fake Claude answer to: first",
        "Fake Claude answer to: second (turn 2, remembers 1 earlier prompts)",
        "Fake Claude answer to: third (turn 3, remembers 2 earlier prompts)",
    ]
    assert len({r["session_id"] for r in results}) == 1
    # what it kept is resumable by a print run
    again = run([str(FAKE), "-p", "--resume", results[0]["session_id"], "fourth"], env)
    assert again.stdout.decode().strip().endswith("(turn 4, remembers 3 earlier prompts)")


def test_stream_json_input_needs_stream_json_output_and_no_prompt(env: dict[str, str]) -> None:
    bad = run([str(FAKE), "-p", "--input-format", "stream-json"], env, b"")
    assert bad.returncode == 1
    assert b"requires output-format=stream-json" in bad.stderr
    both = run([*HOT, "--verbose", "hi"], env, b"")
    assert both.returncode == 1 and b"cannot be combined" in both.stderr


def test_stream_json_input_crash_ends_the_process(env: dict[str, str]) -> None:
    proc = run([*HOT, "--verbose"], env, user_line("ok") + user_line("FAKE_CRASH") + user_line("x"))
    assert proc.returncode == 3
    assert [e["type"] for e in events(proc.stdout)].count("result") == 1


def test_startup_delay_comes_before_any_output(env: dict[str, str]) -> None:
    env["FAKE_CLAUDE_STARTUP_DELAY"] = "0.5"
    began = time.monotonic()
    proc = run([str(FAKE), "-p", "--output-format", "json", "hi"], env)
    assert proc.returncode == 0
    assert time.monotonic() - began >= 0.5


def test_overloaded_keeps_the_conversation_for_resume(env: dict[str, str]) -> None:
    argv = [str(FAKE), "-p", "--output-format", "stream-json", "--verbose"]
    failed = run([*argv, "--", "FAKE_ERROR=overloaded FAKE_ERROR_TIMES=1 go"], env)
    assert failed.returncode == 1
    result = events(failed.stdout)[-1]
    assert result["api_error_status"] == 529 and "overloaded_error" in result["result"]
    sid = result["session_id"]
    ok = run([*argv, "--resume", sid, "--", "FAKE_ERROR=overloaded FAKE_ERROR_TIMES=1 go"], env)
    assert ok.returncode == 0, ok.stderr.decode()
    assert "(turn 2, remembers 1 earlier prompts)" in events(ok.stdout)[-1]["result"]
