"""`cc-executor mcp install`: register the MCP bridge with Claude Code for one project.

It writes the project's `.mcp.json` (other servers in it are kept) with the absolute path
of this installation's `cc-executor-mcp`, so it works from a fresh clone's venv whatever
PATH Claude Code sees, and the service's address and data dir (where the bridge reads the
token). Claude Code lists a project's servers as "Pending approval" until they are
approved: at its prompt, in `/mcp`, or ahead of time with `--approve`, which adds the name
to `enabledMcpjsonServers` in the project's `.claude/settings.local.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cc_executor.cli.common import EXIT_USAGE, err, settings, ws_url

SERVER_NAME = "cc_executor"
"""The key Claude Code names the tools by: `mcp__cc_executor__<tool>`."""


def bridge_command() -> list[str]:
    """How to start this installation's bridge: its console script, else `python -m`."""
    script = Path(sys.executable).parent / "cc-executor-mcp"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "mcp_bridge"]


def server_entry(url: str, data_dir: Path) -> dict[str, Any]:
    command = bridge_command()
    return {
        "type": "stdio",
        "command": command[0],
        "args": command[1:],
        "env": {
            "CC_EXECUTOR_WEBSOCKET_URL": url,
            "CC_EXECUTOR_DATA_DIR": str(data_dir),
        },
    }


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text() or "{}")
    except ValueError as exc:
        raise SystemExit(
            _fail(f"error: {path} is not valid JSON ({exc}); fix or move it")
        ) from None
    if not isinstance(doc, dict):
        raise SystemExit(_fail(f"error: {path} does not hold a JSON object"))
    return doc


def _fail(message: str) -> int:
    err(message)
    return EXIT_USAGE


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def install(args: argparse.Namespace) -> int:
    project = Path(args.dir).expanduser().absolute()
    if not project.is_dir():
        return _fail(f"error: --dir {args.dir}: no such directory")
    s = settings()
    url = args.url or s.websocket_url()
    entry = server_entry(url, s.data_dir.expanduser().absolute())
    if args.print:
        print(json.dumps({"mcpServers": {args.name: entry}}, indent=2))
        return 0
    mcp_json = project / ".mcp.json"
    doc = _load(mcp_json)
    servers = doc.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        return _fail(f"error: {mcp_json}: mcpServers is not an object")
    servers[args.name] = entry
    _write(mcp_json, doc)
    print(f"wrote {mcp_json}: server {args.name!r} runs {' '.join(bridge_command())}")
    if args.approve:
        local = project / ".claude" / "settings.local.json"
        conf = _load(local)
        enabled = conf.setdefault("enabledMcpjsonServers", [])
        if not isinstance(enabled, list):
            return _fail(f"error: {local}: enabledMcpjsonServers is not a list")
        if args.name not in enabled:
            enabled.append(args.name)
        _write(local, conf)
        print(f"approved it in {local} (enabledMcpjsonServers)")
    else:
        print(
            "Claude Code shows it as 'Pending approval' until you approve it: answer its "
            "prompt when it starts in this project, or run /mcp, or rerun with --approve."
        )
    print(f"its tools are named mcp__{args.name}__<tool>; the service: cc-executor start")
    return 0


def add_mcp_command(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `mcp install`."""
    top = sub.add_parser(
        "mcp",
        help="register the MCP bridge with Claude Code",
        description="Register cc-executor's MCP server (cc-executor-mcp) with Claude Code.",
    )
    actions = top.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "install",
        help="write the project's .mcp.json entry (absolute path of cc-executor-mcp)",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " ") if __doc__ else None,
    )
    p.add_argument("--dir", default=".", help="the project directory (default: here)")
    p.add_argument("--name", default=SERVER_NAME, help=f"the server's key (default {SERVER_NAME})")
    p.add_argument("--url", type=ws_url, help="the service's URL (default from the settings)")
    p.add_argument(
        "--approve",
        action="store_true",
        help="also approve it: enabledMcpjsonServers in .claude/settings.local.json",
    )
    p.add_argument(
        "--print", action="store_true", help="print the .mcp.json to stdout, write nothing"
    )
    p.set_defaults(sync=install)
