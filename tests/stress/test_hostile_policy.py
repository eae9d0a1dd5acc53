"""The allow-list against the ways an allowed program runs another one.

A service whose allow-list holds a harmless tool, `python3`, `./run.sh` and the (fake)
`claude`, which here runs the SessionStart hooks of its settings files and its stdio MCP
servers as the real CLI does (FAKE_CLAUDE_RUN_HOOKS=1, tests/fake_claude/startup.py).
Each attempt's payload would create its own marker file.

Guarantees checked: every attempt is refused with -32002 and names the rule that refused
it (`data.rule`), or (`resume: "--version"`) -32602; no marker appears; nothing of the
attempts runs. The allowed forms still run, hooks of a trusted directory and an MCP server
whose command is listed included, so the fake does run what it is given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cc_executor.protocol import ErrorCode, ProtocolError
from tests.support import FAKE_CLAUDE

from .conftest import MakeSvc
from .support import REPORT, leftovers

pytestmark = pytest.mark.stress


def _hook_settings(directory: Path, marker: Path, name: str = "settings.json") -> Path:
    """A Claude settings file whose SessionStart hook creates `marker`."""
    directory.mkdir(parents=True, exist_ok=True)
    hooks = {"SessionStart": [{"hooks": [{"type": "command", "command": f"touch {marker}"}]}]}
    path = directory / name
    path.write_text(json.dumps({"hooks": hooks}))
    return path


def _user_site(python3: str, base: Path) -> Path:
    """The user site-packages dir that `python3` derives from a base (or HOME/.local)."""
    v = subprocess.run(
        [python3, "-c", "import sys; print('python%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return base / "lib" / v / "site-packages"


def _world(tmp: Path, python3: str) -> dict[str, Any]:
    m = tmp / "markers"
    m.mkdir()
    mk = {
        k: m / k
        for k in (
            "inline",
            "file",
            "home",
            "config_dir",
            "cwd",
            "local",
            "pth",
            "home_pth",
            "relative",
        )
    }
    tool = tmp / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    # HOME and CLAUDE_CONFIG_DIR pointing at settings with hooks.
    home = tmp / "home"
    _hook_settings(home / ".claude", mk["home"])
    config_dir = tmp / "config"
    _hook_settings(config_dir, mk["config_dir"])
    # Working directories whose project (or local) settings have hooks.
    project = tmp / "project"
    _hook_settings(project / ".claude", mk["cwd"])
    local = tmp / "local"
    _hook_settings(local / ".claude", mk["local"], "settings.local.json")
    # An MCP config file with a stdio server that is not allowed.
    mcp_file = tmp / "mcp.json"
    mcp_file.write_text(
        json.dumps({"mcpServers": {"x": {"command": "touch", "args": [str(mk["file"])]}}})
    )
    # Python's user site: a .pth line starting with `import` runs at every start.
    base = tmp / "userbase"
    for site, marker in (
        (_user_site(python3, base), mk["pth"]),
        (_user_site(python3, home / ".local"), mk["home_pth"]),
    ):
        site.mkdir(parents=True)
        (site / "evil.pth").write_text(f"import os; open({str(marker)!r}, 'w')\n")
    # `./run.sh` is listed; the client's cwd holds another one.
    evil = tmp / "evil"
    evil.mkdir()
    (evil / "run.sh").write_text(f"#!/bin/sh\ntouch {mk['relative']}\n")
    (evil / "run.sh").chmod(0o755)
    trusted = tmp / "trusted"
    trusted_marker = m / "trusted"
    _hook_settings(trusted / ".claude", trusted_marker)
    return {
        "markers": mk,
        "tool": str(tool),
        "home": str(home),
        "config_dir": str(config_dir),
        "project": str(project),
        "local": str(local),
        "mcp_file": str(mcp_file),
        "base": str(base),
        "evil": str(evil),
        "trusted": str(trusted),
        "trusted_marker": trusted_marker,
    }


def _attempts(w: dict[str, Any], python3: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(label, method, params, the rule that must refuse it)."""
    mk = w["markers"]
    stdio = {"mcpServers": {"x": {"command": "touch", "args": [str(mk["inline"])]}}}
    return [
        (
            "inline stdio MCP server",
            "execute_claude",
            {"prompt": "hi", "mcp_config": stdio},
            "mcp_server",
        ),
        (
            "inline MCP server as a JSON string",
            "execute_claude",
            {"prompt": "hi", "mcp_config": json.dumps(stdio)},
            "mcp_server",
        ),
        (
            "MCP config file",
            "execute_claude",
            {"prompt": "hi", "mcp_config": w["mcp_file"]},
            "mcp_server",
        ),
        (
            "MCP server env",
            "execute_claude",
            {
                "prompt": "hi",
                "mcp_config": {
                    "mcpServers": {"x": {"command": w["tool"], "env": {"LD_PRELOAD": "/x"}}}
                },
            },
            "mcp_server",
        ),
        ("HOME with hooks", "execute_claude", {"prompt": "hi", "env": {"HOME": w["home"]}}, "env"),
        (
            "CLAUDE_CONFIG_DIR with hooks",
            "execute_claude",
            {"prompt": "hi", "env": {"CLAUDE_CONFIG_DIR": w["config_dir"]}},
            "env",
        ),
        (
            "cwd with project hooks",
            "execute_claude",
            {"prompt": "hi", "cwd": w["project"]},
            "project_settings",
        ),
        (
            "cwd with local hooks",
            "execute_claude",
            {"prompt": "hi", "cwd": w["local"]},
            "project_settings",
        ),
        (
            "skip_permissions",
            "execute_claude",
            {"prompt": "hi", "skip_permissions": True},
            "permission_bypass",
        ),
        (
            "bypassPermissions",
            "execute_claude",
            {"prompt": "hi", "permission_mode": "bypassPermissions"},
            "permission_bypass",
        ),
        (
            "unrestricted Bash",
            "execute_claude",
            {"prompt": "hi", "allowed_tools": ["Bash"]},
            "permission_bypass",
        ),
        (
            "PYTHONUSERBASE .pth",
            "execute",
            {"command": [python3, "-c", "pass"], "env": {"PYTHONUSERBASE": w["base"]}},
            "env",
        ),
        (
            "HOME .pth",
            "execute",
            {"command": [python3, "-c", "pass"], "env": {"HOME": w["home"]}},
            "env",
        ),
        (
            "relative entry, client's cwd",
            "execute",
            {"command": ["./run.sh"], "cwd": w["evil"]},
            "program",
        ),
    ]


async def test_allowed_claude_runs_nothing_else(
    make_svc: MakeSvc, tmp_path: Path, mark: str
) -> None:
    # A python3 outside any venv: a venv turns the user site (and its .pth files) off.
    python3 = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    if python3 is None:
        pytest.skip("no system python3 to try the user-site .pth attacks with")
    w = _world(tmp_path, python3)
    allowed = [w["tool"], python3, "./run.sh", str(FAKE_CLAUDE)]
    svc = await make_svc(
        CC_EXECUTOR_ALLOWED_COMMANDS=json.dumps(allowed),
        CC_EXECUTOR_ALLOWED_ENV=json.dumps(["CC_STRESS_MARK"]),
        CC_EXECUTOR_CLAUDE_TRUSTED_DIRS=json.dumps([w["trusted"]]),
        FAKE_CLAUDE_RUN_HOOKS="1",
    )
    attempts = _attempts(w, python3)
    row = REPORT.row(f"allow-list: claude's own ways to run programs: {len(attempts) + 1}")
    t0 = time.monotonic()
    got: dict[str, Any] = {}
    async with svc.client() as c:
        for label, method, params, _ in attempts:
            p = dict(params)
            p["env"] = {**p.get("env", {}), "CC_STRESS_MARK": mark}
            try:
                got[label] = await c.call(method, p)
            except ProtocolError as exc:
                got[label] = (exc.code, (exc.data or {}).get("rule"), exc.message)
        try:
            await c.call("execute_claude", {"prompt": "hi", "resume": "--version"})
            resume: Any = "ran"
        except ProtocolError as exc:
            resume = exc.code
        # The allowed forms still run, and the fake does run hooks and MCP servers.
        ok = await c.execute_claude(
            "allowed",
            cwd=w["trusted"],
            mcp_config={"mcpServers": {"ok": {"command": w["tool"]}}},
            env={"CC_STRESS_MARK": mark},
        )
        assert (await ok.wait(60))["status"] == "completed"
        stats = (await c.status())["stats"]
    wrong = {
        label: got[label]
        for label, _, _, rule in attempts
        if not (
            isinstance(got[label], tuple)
            and got[label][:2] == (ErrorCode.COMMAND_NOT_ALLOWED, rule)
        )
    }
    ran = sorted(name for name, path in w["markers"].items() if path.exists())
    left = await leftovers(mark, [])
    row.tasks = len(attempts) + 1
    row.failures = len(wrong) + len(ran) + (resume != ErrorCode.INVALID_PARAMS)
    row.leftovers = len(left)
    row.wall_s = time.monotonic() - t0
    row.max_rss = svc.sample_rss()
    assert not wrong, wrong
    assert not ran, f"payloads ran: {ran}"
    assert resume == ErrorCode.INVALID_PARAMS, resume
    assert w["trusted_marker"].exists(), "the fake ran no hook of a trusted directory"
    assert stats["tasks_started"] == 1
    assert not left, left
    settings = ("allowed_commands", "allowed_env", "claude_trusted_dirs", "permission_bypass")
    for label, _, _, _ in attempts:  # each error names the setting that would allow it
        assert any(name in got[label][2] for name in settings), got[label]
    assert os.environ.get("FAKE_CLAUDE_RUN_HOOKS") is None
