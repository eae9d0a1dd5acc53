"""classify(): recorded real output, stderr texts, and every failure mode of the fake CLI."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cc_executor.claude.argv import build_argv
from cc_executor.claude.errors import ClaudeError, ErrorKind, classify, reset_time
from cc_executor.claude.stream import ClaudeStreamState, LineSplitter
from cc_executor.protocol import ExecuteClaudeParams

SAMPLES = Path(__file__).parent / "samples"  # recorded from the real CLI 2.1.197
FAKE = Path(__file__).resolve().parents[1] / "fake_claude" / "claude"
NESTED = (
    "Error: Claude Code cannot be launched inside another Claude Code session.\n"
    "Nested sessions share runtime resources and will crash all active sessions.\n"
    "To bypass this check, unset the CLAUDECODE environment variable.\n"
)


def state_of(data: bytes) -> ClaudeStreamState:
    state = ClaudeStreamState()
    splitter = LineSplitter()
    for line in splitter.feed(data) + splitter.flush():
        state.feed_line(line)
    return state


def run_classify(
    state: ClaudeStreamState | None = None,
    stderr: str = "",
    exit_code: int | None = 1,
    sig: int | None = None,
    timed_out: bool = False,
    spawn_error: str | None = None,
) -> ClaudeError | None:
    return classify(
        state=state,
        stderr_tail=stderr,
        exit_code=exit_code,
        signal=sig,
        timed_out=timed_out,
        spawn_error=spawn_error,
    )


def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    drop = {"CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "FAKE_CLAUDE_MODE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["FAKE_CLAUDE_STATE_DIR"] = str(tmp_path / "state")
    env.update(extra)
    return env


def classify_fake(
    tmp_path: Path, prompt: str, env: dict[str, str] | None = None, **kw: object
) -> tuple[ClaudeError | None, ClaudeStreamState, int]:
    argv = build_argv(ExecuteClaudeParams(prompt=prompt, **kw), str(FAKE))  # type: ignore[arg-type]
    proc = subprocess.run(
        argv, env=env or fake_env(tmp_path), capture_output=True, timeout=30, check=False
    )
    state = state_of(proc.stdout)
    err = run_classify(state, proc.stderr.decode(errors="replace")[-4000:], proc.returncode)
    return err, state, proc.returncode


# ------------------------------------------------------------------------ recorded output


def test_recorded_not_logged_in_is_auth() -> None:
    state = state_of((SAMPLES / "not-logged-in.stream.jsonl").read_bytes())
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is ErrorKind.AUTH
    assert "Not logged in" in err.message
    assert "/login" in err.hint
    assert err.reset_at is None


def test_recorded_not_logged_in_json_output_is_auth_by_text() -> None:
    state = state_of((SAMPLES / "not-logged-in.json").read_bytes())
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is ErrorKind.AUTH


def test_recorded_no_network_killed_by_timeout_is_timeout() -> None:
    state = state_of((SAMPLES / "no-network-api-key.stream.jsonl").read_bytes())
    err = run_classify(state, exit_code=None, sig=signal.SIGKILL, timed_out=True)
    assert err is not None and err.kind is ErrorKind.TIMEOUT
    assert "6 retries" in err.message


def test_recorded_no_network_that_gave_up_is_network() -> None:
    state = state_of((SAMPLES / "no-network-api-key.stream.jsonl").read_bytes())
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is ErrorKind.NETWORK


# ------------------------------------------------------------------------ rules


def test_spawn_error_is_cli_not_found() -> None:
    try:
        subprocess.run(["/nonexistent/claude-xyz", "-p", "hi"], check=False)
    except FileNotFoundError as exc:
        err = run_classify(spawn_error=str(exc), exit_code=None)
    else:  # pragma: no cover
        pytest.fail("spawning a missing binary should fail")
    assert err is not None and err.kind is ErrorKind.CLI_NOT_FOUND
    assert "/nonexistent/claude-xyz" in err.message


def test_nested_session_stderr() -> None:
    err = run_classify(ClaudeStreamState(), stderr=NESTED, exit_code=1)
    assert err is not None and err.kind is ErrorKind.NESTED_SESSION
    assert "CLAUDECODE" in err.hint


def test_success_is_none() -> None:
    state = state_of(b'{"type":"result","subtype":"success","is_error":false,"result":"ok"}\n')
    assert run_classify(state, exit_code=0) is None
    assert run_classify(None, exit_code=0) is None


def test_success_after_a_recovered_api_error_is_none() -> None:
    state = state_of(
        b'{"type":"assistant","error":"rate_limit","message":{"content":[]}}\n'
        b'{"type":"result","subtype":"success","is_error":false,"result":"done"}\n'
    )
    assert run_classify(state, exit_code=0) is None


def test_exit_zero_without_result_is_crashed() -> None:
    err = run_classify(ClaudeStreamState(), exit_code=0)
    assert err is not None and err.kind is ErrorKind.CRASHED


def test_signal_without_other_info_is_crashed() -> None:
    err = run_classify(ClaudeStreamState(), exit_code=None, sig=signal.SIGSEGV)
    assert err is not None and err.kind is ErrorKind.CRASHED
    assert f"signal {int(signal.SIGSEGV)}" in err.message


def test_structured_fields_beat_text() -> None:
    # The text says "rate limit" but the subtype says max_turns: structure wins.
    state = state_of(
        b'{"type":"result","subtype":"error_max_turns","is_error":true,'
        b'"errors":["rate limit? no: Reached maximum number of turns (2)"]}\n'
    )
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is ErrorKind.MAX_TURNS


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, ErrorKind.RATE_LIMIT),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
        (529, ErrorKind.OVERLOADED),
        (500, ErrorKind.API_ERROR),
        (503, ErrorKind.API_ERROR),
    ],
)
def test_api_error_status(status: int, kind: ErrorKind) -> None:
    state = state_of(
        b'{"type":"result","subtype":"success","is_error":true,"api_error_status":%d,'
        b'"result":"API Error"}\n' % status
    )
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is kind


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (NESTED, ErrorKind.NESTED_SESSION),
        ("Invalid API key · Please run /login", ErrorKind.AUTH),
        ("Error: Not logged in", ErrorKind.AUTH),
        ("Failed to authenticate: OAuth session expired", ErrorKind.AUTH),
        ("API Error: 429 Too Many Requests", ErrorKind.RATE_LIMIT),
        ("Rate limit exceeded", ErrorKind.RATE_LIMIT),
        ("Claude AI usage limit reached|1735000000", ErrorKind.USAGE_LIMIT),
        (
            "API Error: Request rejected (429) · The usage limit has been reached",
            ErrorKind.USAGE_LIMIT,
        ),
        ("You've hit your limit · resets 4:50am (Europe/Rome)", ErrorKind.USAGE_LIMIT),
        ("Prompt is too long", ErrorKind.CONTEXT_LIMIT),
        ("input exceeds the context window of this model", ErrorKind.CONTEXT_LIMIT),
        ("Error: getaddrinfo ENOTFOUND api.anthropic.com", ErrorKind.NETWORK),
        ("connect ECONNREFUSED 127.0.0.1:443", ErrorKind.NETWORK),
        ("API Error: Connection error.", ErrorKind.NETWORK),
        ("Segmentation fault (core dumped)", ErrorKind.CRASHED),
    ],
)
def test_stderr_patterns(stderr: str, kind: ErrorKind) -> None:
    err = run_classify(ClaudeStreamState(), stderr="some noise\n" + stderr, exit_code=1)
    assert err is not None and err.kind is kind


def test_unix_reset_timestamp_becomes_iso() -> None:
    err = run_classify(None, stderr="Claude AI usage limit reached|1735000000", exit_code=1)
    assert err is not None and err.reset_at == "2024-12-24T00:26:40Z"


def test_clock_reset_text_is_kept_and_resolvable() -> None:
    state = state_of(
        b'{"type":"assistant","error":"rate_limit","message":{"model":"<synthetic>",'
        b'"content":[{"type":"text","text":"You\\u2019ve hit your session limit \\u00b7 resets '
        b'11pm (Asia/Nicosia)"}]}}\n'
        b'{"type":"result","subtype":"success","is_error":true,"api_error_status":429,'
        b'"result":"You\\u2019ve hit your session limit \\u00b7 resets 11pm (Asia/Nicosia)"}\n'
    )
    err = run_classify(state, exit_code=1)
    assert err is not None and err.kind is ErrorKind.RATE_LIMIT
    assert err.reset_at == "11pm (Asia/Nicosia)"
    now = datetime(2026, 8, 26, 19, 0, tzinfo=UTC)  # 22:00 in Nicosia
    assert reset_time(err.reset_at, now) == datetime(2026, 8, 26, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-27T18:00:00Z", datetime(2026, 8, 27, 18, 0, tzinfo=UTC)),
        ("9pm (Asia/Nicosia)", datetime(2026, 8, 27, 18, 0, tzinfo=UTC)),  # passed: tomorrow
        ("11:15pm (Asia/Kolkata)", datetime(2026, 8, 27, 17, 45, tzinfo=UTC)),
        ("Aug 28, 7am (UTC)", datetime(2026, 8, 28, 7, 0, tzinfo=UTC)),
        ("3pm", datetime(2026, 8, 27, 15, 0, tzinfo=UTC)),
        ("soon", None),
        ("11pm (Mars/Colony)", None),
    ],
)
def test_reset_time_forms(text: str, expected: datetime | None) -> None:
    now = datetime(2026, 8, 26, 19, 0, tzinfo=UTC)
    got = reset_time(text, now)
    assert got == expected


def test_to_dict_is_plain() -> None:
    err = run_classify(None, stderr="Prompt is too long", exit_code=1)
    assert err is not None
    data = err.to_dict()
    assert data["kind"] == "context_limit" and type(data["kind"]) is str
    assert set(data) == {"kind", "message", "hint", "reset_at"}


# ------------------------------------------------------------------------ the fake, for real


@pytest.mark.parametrize(
    "kind",
    [
        "auth",
        "rate_limit",
        "usage_limit",
        "context_limit",
        "max_turns",
        "max_budget",
        "network",
    ],
)
def test_fake_error_modes_classify_to_their_kind(tmp_path: Path, kind: str) -> None:
    err, state, code = classify_fake(tmp_path, f"please fail FAKE_ERROR={kind}")
    assert code == 1
    assert err is not None, state.record_fields()
    assert err.kind == kind
    if kind in ("rate_limit", "usage_limit"):
        assert err.reset_at is not None
        assert reset_time(err.reset_at, datetime.now(UTC)) is not None


def test_fake_error_mode_via_env(tmp_path: Path) -> None:
    env = fake_env(tmp_path, FAKE_CLAUDE_MODE="FAKE_ERROR=auth")
    err, _, _ = classify_fake(tmp_path, "hello", env=env)
    assert err is not None and err.kind is ErrorKind.AUTH


def test_fake_max_turns_with_tool_use(tmp_path: Path) -> None:
    err, state, _ = classify_fake(tmp_path, "FAKE_TOOL_USE", max_turns=1)
    assert err is not None and err.kind is ErrorKind.MAX_TURNS
    assert state.tool_uses == ["Bash"]


def test_fake_success_is_none(tmp_path: Path) -> None:
    err, state, code = classify_fake(tmp_path, "hello")
    assert (err, code) == (None, 0)
    assert state.record_fields()["result"] == "Fake Claude answer to: hello"


def test_fake_crash_is_crashed(tmp_path: Path) -> None:
    err, _, code = classify_fake(tmp_path, "FAKE_CRASH")
    assert code == 3
    assert err is not None and err.kind is ErrorKind.CRASHED
    assert "TypeError" in err.message


def test_fake_nested_session_is_nested(tmp_path: Path) -> None:
    err, _, _ = classify_fake(tmp_path, "hi", env=fake_env(tmp_path, CLAUDECODE="1"))
    assert err is not None and err.kind is ErrorKind.NESTED_SESSION


def test_fake_hang_killed_by_timeout_is_timeout(tmp_path: Path) -> None:
    argv = build_argv(ExecuteClaudeParams(prompt="FAKE_HANG"), str(FAKE))
    proc = subprocess.Popen(
        argv, env=fake_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
    finally:
        proc.kill()
        out, errout = proc.communicate(timeout=10)
    state = state_of(first + out)
    err = classify(
        state=state,
        stderr_tail=errout.decode(),
        exit_code=None,
        signal=-proc.returncode,
        timed_out=True,
        spawn_error=None,
    )
    assert state.claude_session_id is not None
    assert err is not None and err.kind is ErrorKind.TIMEOUT


def test_fake_runs_with_this_python() -> None:
    # The fake uses `#!/usr/bin/env python3`; make sure it is executable as a program.
    assert os.access(FAKE, os.X_OK)
    out = subprocess.run([str(FAKE), "--version"], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode().endswith("(Claude Code)\n")
