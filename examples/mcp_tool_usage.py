"""Drive the cc_executor MCP server over stdio with the official MCP client.

    .venv/bin/python examples/mcp_tool_usage.py            # real `claude` if it is on PATH
    .venv/bin/python examples/mcp_tool_usage.py --claude-bin tests/fake_claude/claude

Run it with the project's interpreter (the venv of the README's Quick start): it needs the
`mcp` package and starts the bridge as `<this interpreter> -m mcp_bridge`, over stdio as
Claude Code would. It shows: a simple command, a Python script, a fresh Claude call, a
task list that uses earlier outputs, a long task with progress notifications, and pause /
resume / cancel. The bridge talks to the cc-executor service (CC_EXECUTOR_WEBSOCKET_URL,
default ws://127.0.0.1:8003/ws) or, if none is running, runs the tasks itself: each result
says which (`backend`).

`--claude-bin` is the claude of the tasks the bridge runs itself; a running service runs
its own (its CC_EXECUTOR_CLAUDE_BIN when it started), which no client can change: the
example says so when it sees the service ran the Claude call. A claude that cannot run
here (not logged in, not installed) skips the Claude demo with the reason; the others run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

try:
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client
except ImportError:
    sys.exit(
        f"{sys.executable} has no `mcp` package: run this with the project's venv, "
        "`.venv/bin/python examples/mcp_tool_usage.py` (README, Quick start)"
    )

CLAUDE_CANNOT_RUN = {"auth", "cli_not_found", "nested_session", "usage_limit", "network"}
"""Error kinds that mean Claude cannot run on this machine now: the demo is skipped."""


class Failed(Exception):
    pass


async def tool(client: Client, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = await client.call_tool(name, args, **kw)
    if r.is_error:
        raise Failed(f"{name} failed: {r.content[0].text}")  # type: ignore[union-attr]
    assert r.structured_content is not None
    return r.structured_content


def show(title: str, result: dict[str, Any], *keys: str) -> None:
    print(f"\n== {title}")
    for k in keys:
        if k in result:
            v = result[k]
            if isinstance(v, str) and "\n" in v.strip():
                v = "\n" + textwrap.indent(v.rstrip(), "     | ")
            print(f"   {k}: {v}")


async def simple_command(client: Client) -> None:
    r = await tool(client, "execute_task", {"command": "echo Hello from cc-executor; uname -s"})
    show("1. A simple command", r, "task_id", "status", "exit_code", "backend", "output")
    if r["status"] != "completed":
        raise Failed("the simple command did not complete")


async def python_script(client: Client, workdir: Path) -> None:
    script = workdir / "primes.py"
    script.write_text(
        "import sys\n"
        "n = int(sys.argv[1])\n"
        "primes = [p for p in range(2, n) if all(p % d for d in range(2, int(p**0.5) + 1))]\n"
        "print(f'{len(primes)} primes below {n}; the last: {primes[-3:]}')\n"
    )
    r = await tool(
        client,
        "execute_task",
        {"command": [sys.executable, str(script), "10000"], "cwd": str(workdir)},
    )
    show("2. A Python script (argv list, no shell)", r, "status", "duration_s", "output")
    if "1229 primes" not in r.get("output", ""):
        raise Failed("the script's output is not what it should be")


async def fresh_claude(client: Client, have_claude: bool, claude_bin: str | None) -> str | None:
    """The Claude demo; returns why it was skipped, if it was."""
    if not have_claude:
        print("\n== 3. A fresh Claude instance: skipped (no `claude` on PATH; pass --claude-bin)")
        return "no claude on PATH"
    r = await tool(
        client,
        "execute_claude",
        {
            "prompt": "In one sentence: why run each step of a big job in a fresh context?",
            "max_turns": 1,
            "timeout": 300,
        },
    )
    show(
        "3. A fresh Claude instance (clean context)",
        r,
        "status",
        "backend",
        "result",
        "claude_session_id",
        "num_turns",
        "total_cost_usd",
        "error_kind",
        "error_hint",
    )
    if claude_bin and r.get("backend") == "websocket":
        print(
            "   note: the service ran this one with its own claude (its CC_EXECUTOR_CLAUDE_BIN"
            " when it started); --claude-bin only sets the claude of tasks the bridge runs"
            " itself, when the service is down"
        )
    if r["status"] != "completed" and r.get("error_kind") in CLAUDE_CANNOT_RUN:
        print(f"   skipped: claude cannot run here ({r['error_kind']}); the other demos go on")
        return str(r["error_kind"])
    if r["status"] != "completed":
        raise Failed("the Claude call did not complete")
    return None


async def task_list(client: Client, workdir: Path) -> None:
    tasks = [
        {"command": f"ls {workdir} | wc -l | tr -d ' '", "name": "count files"},
        {
            "command": [
                sys.executable,
                "-c",
                "import sys; print(int(sys.argv[1]) * 100)",
                "{{previous.output}}",
            ],
            "name": "scale it",
        },
        {
            "command": "echo 'files={{tasks[0].output}} scaled={{tasks[1].output}} "
            "first_exit={{tasks[0].exit_code}}'",
            "name": "report",
        },
    ]
    r = await tool(client, "execute_task_list", {"tasks": tasks})
    print(f"\n== 4. A task list passing results forward: {r['status']}")
    for e in r["tasks"]:
        print(f"   [{e['index']}] {e['status']:<9} {e.get('output', '').strip()}")
    if r["status"] != "completed" or "scaled=" not in r["tasks"][2]["output"]:
        raise Failed("the task list did not complete")


async def long_task(client: Client) -> None:
    print("\n== 5. A long task, with progress notifications while the call waits")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        print(f"   progress {progress:g}: {message}")

    cmd = 'for i in 1 2 3 4 5 6; do echo "step $i of 6"; sleep 0.4; done; echo finished'
    r = await tool(client, "execute_task", {"command": cmd}, progress_callback=on_progress)
    show("5. ... and its result", r, "status", "duration_s", "output")
    if r["status"] != "completed":
        raise Failed("the long task did not complete")


async def pause_resume_cancel(client: Client) -> None:
    print("\n== 6. Pause, resume and cancel a running task")
    r = await tool(
        client,
        "execute_task",
        {"command": "while true; do date +%T.%N; sleep 0.1; done", "wait": False},
    )
    task_id = r["task_id"]
    print(f"   started {task_id} (pid {r.get('pid')}), not waiting")
    await asyncio.sleep(0.5)
    for action in ("PAUSE", "RESUME", "CANCEL"):
        c = await tool(client, "control_execution", {"task_id": task_id, "action": action})
        s = await tool(client, "get_execution_status", {"task_id": task_id})
        print(f"   {action:<6} -> {c['status']:<9} (status says {s['status']})")
        if action == "PAUSE":
            before = s["stdout_bytes"]
            await asyncio.sleep(0.5)
            after = await tool(client, "get_execution_status", {"task_id": task_id})
            print(f"   while paused, output stayed at {after['stdout_bytes']} bytes")
            if after["stdout_bytes"] != before:
                raise Failed("a paused task kept printing")
        await asyncio.sleep(0.3)
    page = await tool(client, "get_execution_output", {"task_id": task_id, "limit": 200})
    print(f"   its output is still there: {page['total']} bytes, e.g. {page['data'].split()[0]}")
    if c["status"] != "cancelled":
        raise Failed("the task was not cancelled")


async def run(claude_bin: str | None) -> int:
    env = dict(os.environ)
    claude = claude_bin or shutil.which("claude")
    if claude_bin:
        env["CC_EXECUTOR_CLAUDE_BIN"] = claude_bin
    env.pop("CLAUDECODE", None)  # when run from inside Claude Code

    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_bridge"], env=env)
    with tempfile.TemporaryDirectory(prefix="cc-mcp-example-") as tmp:
        workdir = Path(tmp)
        async with Client(stdio_client(params), cache=None) as client:
            info = client.server_info
            print(f"connected to MCP server {info.name if info else '?'} over stdio")
            tools = (await client.list_tools()).tools
            print("tools:", ", ".join(t.name for t in tools))
            try:
                await simple_command(client)
                await python_script(client, workdir)
                skipped = await fresh_claude(client, claude is not None, claude_bin)
                await task_list(client, workdir)
                await long_task(client)
                await pause_resume_cancel(client)
            except Failed as exc:
                print(f"\nFAILED: {exc}")
                return 1
    if skipped:
        print(f"\nall examples ran but the Claude one ({skipped})")
    else:
        print("\nall examples ran")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--claude-bin", help="the claude CLI (or a stand-in) to use")
    args = ap.parse_args()
    claude_bin = os.path.abspath(args.claude_bin) if args.claude_bin else None
    return asyncio.run(run(claude_bin))


if __name__ == "__main__":
    raise SystemExit(main())
