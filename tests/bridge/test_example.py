"""examples/mcp_tool_usage.py runs clean against a real service, with the fake claude."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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
