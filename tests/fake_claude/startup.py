"""What the fake claude starts before it answers, as the real CLI does: hook commands from
its settings files and stdio MCP servers. Standard library only (imported by `claude`).

Only with FAKE_CLAUDE_RUN_HOOKS=1 in the environment, so that a developer's own
~/.claude/settings.json hooks never run during the tests. Then:

  * Settings are read from the sources of `--setting-sources` (default: all three):
    user (`$CLAUDE_CONFIG_DIR/settings.json`, else `$HOME/.claude/settings.json`), project
    (`<cwd>/.claude/settings.json`) and local (`<cwd>/.claude/settings.local.json`).
    Every `SessionStart` hook command of each file runs through `/bin/sh -c`, as the real
    CLI runs it in print mode (no trust prompt).
  * MCP servers come from each `--mcp-config` value (a JSON string, or a file relative to
    the cwd) and, unless `--strict-mcp-config`, from `<cwd>/.mcp.json` when a settings file
    says `enableAllProjectMcpServers`. Each stdio server's `command` is started with its
    `args` and `env` (the real CLI starts them to list their tools); a server still
    running after 5 s is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

SOURCES = ("user", "project", "local")
_WAIT_S = 5.0


def run(opts: dict[str, Any]) -> None:
    if os.environ.get("FAKE_CLAUDE_RUN_HOOKS") != "1":
        return
    settings = load_settings(opts.get("setting_sources"))
    for data in settings:
        for group in (data.get("hooks") or {}).get("SessionStart") or []:
            for hook in group.get("hooks") or []:
                if hook.get("type", "command") == "command" and hook.get("command"):
                    _wait(subprocess.Popen(["/bin/sh", "-c", hook["command"]]))
    servers: dict[str, Any] = {}
    for value in opts.get("mcp_config") or []:
        servers.update(_mcp_servers(value))
    project = Path.cwd() / ".mcp.json"
    if (
        not opts.get("strict_mcp_config")
        and project.is_file()
        and any(d.get("enableAllProjectMcpServers") for d in settings)
    ):
        servers.update(_mcp_servers(str(project)))
    started = []
    for server in servers.values():
        if server.get("type", "stdio") != "stdio" or not server.get("command"):
            continue
        env = {**os.environ, **(server.get("env") or {})}
        argv = [server["command"], *(server.get("args") or [])]
        with contextlib.suppress(OSError):
            started.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
    for proc in started:
        _wait(proc)


def load_settings(sources: str | None) -> list[dict[str, Any]]:
    wanted = [s.strip() for s in (sources or ",".join(SOURCES)).split(",") if s.strip()]
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    user = Path(config_dir) if config_dir else Path(os.environ.get("HOME", "/")) / ".claude"
    files = {
        "user": user / "settings.json",
        "project": Path.cwd() / ".claude" / "settings.json",
        "local": Path.cwd() / ".claude" / "settings.local.json",
    }
    out = []
    for source in wanted:
        path = files.get(source)
        if path is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                out.append(data)
    return out


def _mcp_servers(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        try:
            data = json.loads(Path(value).read_text())
        except (OSError, ValueError):
            return {}
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    return servers if isinstance(servers, dict) else {}


def _wait(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
