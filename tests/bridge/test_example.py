"""examples/mcp_tool_usage.py runs clean against a real service, with the fake claude."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.support import FAKE_CLAUDE

from .conftest import ROOT


async def test_example_runs_clean(service_env: dict[str, str], tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "mcp_tool_usage.py"),
        "--claude-bin",
        str(FAKE_CLAUDE),
        env=service_env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "all examples ran" in text
    assert "Fake Claude answer to:" in text  # the fresh Claude call ran (the stand-in)
    assert "progress 1:" in text  # progress notifications reached the client
    assert "CANCEL -> cancelled" in text
    assert "backend: websocket" in text


async def test_example_goes_on_when_claude_is_not_logged_in(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's claude (the stand-in) fails as a claude that is not logged in does.
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "FAKE_ERROR=auth")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "mcp_tool_usage.py"),
        "--claude-bin",
        str(FAKE_CLAUDE),
        env=service_env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "skipped: claude cannot run here (auth)" in text
    assert "the service ran this one with its own claude" in text  # --claude-bin's reach
    assert "CANCEL -> cancelled" in text  # the demos after it ran
    assert "all examples ran but the Claude one (auth)" in text


def test_example_says_which_interpreter_it_needs(tmp_path: Path) -> None:
    import subprocess

    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    res = subprocess.run(
        [str(bare / "bin" / "python"), str(ROOT / "examples" / "mcp_tool_usage.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "has no `mcp` package" in res.stderr and ".venv/bin/python" in res.stderr
