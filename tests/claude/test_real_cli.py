"""execute_claude against the real Claude Code CLI, when one is installed (see .ci/run).

Set CC_EXECUTOR_REAL_CLAUDE to the `claude` executable, e.g.
`.ci-cache/claude/node_modules/.bin/claude` after
`npm install --prefix .ci-cache/claude @anthropic-ai/claude-code`.
The CLI runs with HOME pointed at an empty directory and no API key, so it is not logged in:
the test checks that the service classifies that as `auth` with a record shaped like the
recorded sample (tests/claude/samples/not-logged-in.stream.jsonl). No network is needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cc_executor.claude.errors import HINTS, ErrorKind
from tests.claude.conftest import StartService, run_claude

REAL_CLAUDE = os.environ.get("CC_EXECUTOR_REAL_CLAUDE", "")
SAMPLE = Path(__file__).parent / "samples" / "not-logged-in.stream.jsonl"

pytestmark = pytest.mark.skipif(
    not REAL_CLAUDE,
    reason="CC_EXECUTOR_REAL_CLAUDE is not set (point it at an installed real `claude` CLI; "
    ".ci/run installs @anthropic-ai/claude-code into .ci-cache/claude and sets it)",
)


async def test_real_cli_not_logged_in_is_auth(
    start_service: StartService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.access(REAL_CLAUDE, os.X_OK):
        pytest.fail(f"CC_EXECUTOR_REAL_CLAUDE={REAL_CLAUDE!r} is not an executable file")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CONFIG_DIR", "CLAUDECODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    _, client = await start_service(claude_bin=REAL_CLAUDE)

    run = await run_claude(client, "say hi", cwd=str(work), timeout=120)
    rec = run.record
    assert rec["status"] == "failed", rec
    assert rec["error_kind"] == "auth", rec
    assert rec["error_hint"] == HINTS[ErrorKind.AUTH]
    assert rec["exit_code"] == 1

    sample = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    sample_result = sample[-1]
    # Same shape as the recorded run: an init, a synthetic assistant message, an error result.
    assert [e["type"] for e in run.claude_events()] == [e["type"] for e in sample]
    assert rec["result"] == sample_result["result"] == "Not logged in · Please run /login"
    assert rec["is_error"] is True and rec["subtype"] == sample_result["subtype"]
    assert rec["num_turns"] == sample_result["num_turns"]
    assert rec["total_cost_usd"] == 0
    assert set(rec["usage"]) >= {"input_tokens", "output_tokens"}
    assert rec["permission_denials"] == []
    assert rec["claude_session_id"] == run.claude_events("system")[0]["session_id"]
    assert rec["model"]  # the model the CLI would have used
    assert run.claude_events("assistant")[0]["error"] == "authentication_failed"
    init_line = json.loads((await client.read_output(run.task_id)).split(b"\n")[0])
    assert init_line["apiKeySource"] == "none" and init_line["cwd"] == str(work)
