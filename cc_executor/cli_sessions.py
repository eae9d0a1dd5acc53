"""`cc-executor sessions ...`: persistent Claude sessions from the command line.

    cc-executor sessions list [--all]                 sessions, with total and active counts
    cc-executor sessions create DIR [--name N] ...    a new session (DIR must exist)
    cc-executor sessions send SESSION MESSAGE [--wait] [--from SESSION]
    cc-executor sessions status SESSION | logs SESSION [--lines N] | kill SESSION
    cc-executor sessions coordinate "DESCRIPTION" --assign SESSION=SUBTASK ...
    cc-executor sessions spawn-temp (--command CMD | --prompt P) --working-dir DIR

SESSION is a session id or the name of an active session. Every command is one
`session.*` call through `ExecutorClient.call` (see docs/sessions.md). Human-readable by
default, `--json` for scripts. Exit 0 on success; 1 when a waited-for turn, coordination or
temp run did not complete; service errors and an unreachable service end as `cli.main`
reports them (2 and 3).

Wiring: `add_sessions_parser(sub)` in `cli.build_parser`; the parser's `func` connects and
runs `run_sessions_command(args, client)`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.protocol import Method

__all__ = ["add_sessions_parser", "run_sessions_command", "sessions_main"]

Command = Callable[[argparse.Namespace, ExecutorClient], Coroutine[Any, Any, int]]
EXIT_NOT_COMPLETED = 1
EXIT_USAGE = 2
_PREVIEW = 200


# --------------------------------------------------------------------------- output helpers


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _one_line(text: str | None, width: int = _PREVIEW) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def _label(d: dict[str, Any]) -> str:
    return f"{d['session_id']} ({d['name']})" if d.get("name") else str(d["session_id"])


def _session_table(sessions: list[dict[str, Any]]) -> str:
    rows = [("SESSION", "NAME", "STATUS", "TURNS", "QUEUED", "WORKING DIR", "LAST RESULT")]
    for s in sessions:
        rows.append(
            (
                s["session_id"],
                s.get("name") or "-",
                s["status"] + (" (watch)" if s.get("watch_mode") else ""),
                str(s["turns"]),
                str(s.get("queued", 0)),
                s["working_dir"],
                _one_line(s.get("last_result"), 40),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


def _turn_line(t: dict[str, Any]) -> str:
    status = t.get("status", "?")
    parts = [f"turn {t['turn']}", status]
    if t.get("task_id"):
        parts.append(f"task {t['task_id']}")
    return " ".join(parts)


# --------------------------------------------------------------------------- commands


async def _cmd_list(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_LIST, {"include_ended": args.all})
    if args.json:
        _print_json(res)
        return 0
    if res["sessions"]:
        _out(_session_table(res["sessions"]))
    else:
        _out("no sessions" if args.all else "no active sessions (--all shows ended ones)")
    _out(f"{res['active']} active, {res['total']} total")
    return 0


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


async def _cmd_create(args: argparse.Namespace, client: ExecutorClient) -> int:
    params: dict[str, Any] = {
        "working_dir": args.working_dir,
        "name": args.name,
        "model": args.model,
        "allowed_tools": _split(args.allowed_tools),
        "disallowed_tools": _split(args.disallowed_tools),
        "permission_mode": args.permission_mode,
        "append_system_prompt": args.append_system_prompt,
        "mcp_config": args.mcp_config,
        "max_turns": args.max_turns,
        "continuation_prompt": args.continuation_prompt,
        "turn_timeout": args.turn_timeout,
        "prompt": args.prompt,
    }
    params = {k: v for k, v in params.items() if v is not None}
    if args.skip_permissions:
        params["skip_permissions"] = True
    if args.watch:
        params["watch_mode"] = True
    res = await client.call(Method.SESSION_CREATE, params)
    if args.json:
        _print_json(res)
        return 0
    _out(f"created session {_label(res)} in {res['working_dir']}")
    if res.get("watch_mode"):
        _out(f"watch mode: up to {res['max_turns']} continuations ({res['continuation_prompt']!r})")
    if res.get("first_turn"):
        _out(_turn_line(res["first_turn"]))
    return 0


async def _cmd_send(args: argparse.Namespace, client: ExecutorClient) -> int:
    params: dict[str, Any] = {"session_id": args.session, "message": args.message}
    if args.wait:
        params["wait"] = True
    if args.from_session:
        params["from_session"] = args.from_session
    if args.timeout is not None:
        params["timeout"] = args.timeout
    res = await client.call(Method.SESSION_SEND, params)
    if args.json:
        _print_json(res)
    elif not args.wait:
        where = f" (position {res['position']} in its queue)" if res.get("position") else ""
        _out(f"{_label(res)}: {_turn_line(res)}{where}")
    elif res.get("wait_timed_out"):
        _err(f"{_label(res)}: {_turn_line(res)}: still going after {args.timeout}s")
    else:
        if res.get("result"):
            _out(res["result"])
        if res["status"] != "completed":
            _err(f"{_label(res)}: {_turn_line(res)}: {res.get('error') or res['status']}")
    if args.wait and (res["status"] != "completed" or res.get("wait_timed_out")):
        return EXIT_NOT_COMPLETED
    return 0


async def _cmd_status(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_STATUS, {"session_id": args.session})
    if args.json:
        _print_json(res)
        return 0
    _out(f"session {_label(res)}: {res['status']}")
    for key in (
        "working_dir",
        "claude_session_id",
        "turns",
        "queued",
        "current_task_id",
        "last_status",
        "watch_mode",
        "watch_turns",
        "watch_stopped",
        "messages_in",
        "messages_out",
        "end_reason",
    ):
        if res.get(key) not in (None, False, ""):
            _out(f"  {key}: {res[key]}")
    if res.get("last_result"):
        _out(f"  last_result: {_one_line(res['last_result'])}")
    return 0


def _log_line(e: dict[str, Any]) -> str:
    at = _when(e.get("at"))
    if e["type"] == "message":
        if e["direction"] == "out":
            return f"{at}  message to {e['to_session']}: {_one_line(e['text'])}"
        return f"{at}  message from {e['from_session']}: {_one_line(e['text'])}"
    kind = e.get("kind", "message")
    head = f"{at}  turn {e['turn']} [{kind}] {e['status']}"
    if e.get("task_id"):
        head += f" task {e['task_id']}"
    line = f"{head}\n      > {_one_line(e.get('message'))}"
    if e.get("result"):
        line += f"\n      < {_one_line(e['result'])}"
    if e.get("error"):
        line += f"\n      ! {_one_line(e['error'])}"
    return line


async def _cmd_logs(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_LOGS, {"session_id": args.session, "lines": args.lines})
    if args.json:
        _print_json(res)
        return 0
    for e in res["entries"]:
        _out(_log_line(e))
    return 0


async def _cmd_kill(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_KILL, {"session_id": args.session})
    if args.json:
        _print_json(res)
        return 0
    _out(res["message"])
    if res.get("cancelled_task_id"):
        _out(f"  cancelled task {res['cancelled_task_id']}")
    if res.get("dropped_turns"):
        _out(f"  dropped queued turns {res['dropped_turns']}")
    return 0


def _json_object(value: str) -> dict[str, str]:
    try:
        loaded = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise argparse.ArgumentTypeError('want a JSON object {"SESSION": "subtask"}')
    return {str(k): str(v) for k, v in loaded.items()}


def _assignment(value: str) -> tuple[str, str]:
    session, sep, subtask = value.partition("=")
    if not sep or not session or not subtask:
        raise argparse.ArgumentTypeError(f"want SESSION=SUBTASK, got {value!r}")
    return session, subtask


async def _cmd_coordinate(args: argparse.Namespace, client: ExecutorClient) -> int:
    assignments = dict(args.assignments or {})
    assignments.update(dict(args.assign or []))
    if not assignments:
        _err("error: give at least one --assign SESSION=SUBTASK (or a JSON object)")
        return EXIT_USAGE
    params: dict[str, Any] = {
        "task_description": args.description,
        "assignments": assignments,
        "timeout": args.timeout,
    }
    if args.cancel_on_timeout:
        params["cancel_on_timeout"] = True
    res = await client.call(Method.SESSION_COORDINATE, params)
    if args.json:
        _print_json(res)
    else:
        for r in res["results"].values():
            _out(f"{_label(r)}: {r['status']}  {_one_line(r.get('result') or r.get('error'))}")
        if res["timed_out"]:
            _out(f"timed out after {res['timeout']}s: {', '.join(res['timed_out'])}")
        _out(f"{res['status']}: {res['completed']} of {len(res['results'])} completed")
    return 0 if res["status"] == "completed" else EXIT_NOT_COMPLETED


async def _cmd_spawn_temp(args: argparse.Namespace, client: ExecutorClient) -> int:
    params: dict[str, Any] = {"working_dir": args.working_dir, "timeout": args.timeout}
    if args.command is not None:
        words = shlex.split(args.command) if args.no_shell else None
        params["command"] = words or args.command
    else:
        params["prompt"] = args.prompt
    res = await client.call(Method.SESSION_SPAWN_TEMP, params)
    if args.json:
        _print_json(res)
    else:
        text = res.get("result") if res["kind"] == "claude" else res.get("output")
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if res.get("stderr"):
            sys.stderr.write(res["stderr"])
        _err(f"temp session {res['session_id']}: {res['status']} (task {res['task_id']})")
    return 0 if res["status"] == "completed" else EXIT_NOT_COMPLETED


# --------------------------------------------------------------------------- entry points


async def run_sessions_command(args: argparse.Namespace, client: ExecutorClient) -> int:
    """Run the parsed `sessions ACTION` on a connected client; returns the exit code."""
    command: Command = args.sessions_func
    return await command(args, client)


async def sessions_main(args: argparse.Namespace) -> int:
    """The `func` of the `sessions` parser: connect, run the action, close.

    Connection failures raise `ExecutorConnectionError` and service errors `ProtocolError`,
    which `cli.main` turns into exit codes 3 and 2 with a message.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        _err(f"error: invalid cc-executor settings: {exc}")
        return EXIT_USAGE
    client = ExecutorClient(
        getattr(args, "url", None), getattr(args, "token", None), settings=settings
    )
    await client.connect()
    try:
        return await run_sessions_command(args, client)
    finally:
        await client.close()


def _positive(value: str) -> float:
    f = float(value)
    if f <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return f


def add_sessions_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `sessions list|create|send|status|logs|kill|coordinate|spawn-temp` to a CLI."""
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--url", default=argparse.SUPPRESS, help="service WebSocket URL")
    conn.add_argument("--token", default=argparse.SUPPRESS, help="auth token")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common = [conn, as_json]

    top = subparsers.add_parser(
        "sessions",
        help="persistent Claude sessions: list, create, send, status, logs, kill, coordinate",
        description=(
            "Named Claude conversations whose turns run as fresh `claude -p --resume` tasks. "
            "SESSION is a session id or an active session's name. See docs/sessions.md."
        ),
    )
    top.set_defaults(func=sessions_main)
    sub = top.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=common, help="list sessions with total and active counts")
    p.add_argument("--all", action="store_true", help="include ended sessions")
    p.set_defaults(sessions_func=_cmd_list)

    p = sub.add_parser("create", parents=common, help="create a session in an existing directory")
    p.add_argument("working_dir", metavar="DIR")
    p.add_argument("--name", help="a unique name among active sessions")
    p.add_argument("--model")
    p.add_argument("--allowed-tools", help="comma-separated, e.g. Read,Edit,Bash")
    p.add_argument("--disallowed-tools", help="comma-separated")
    p.add_argument(
        "--permission-mode",
        choices=["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk", "auto"],
    )
    p.add_argument("--skip-permissions", action="store_true", help="--dangerously-skip-permissions")
    p.add_argument("--append-system-prompt")
    p.add_argument("--mcp-config", help="MCP config file or JSON string for every turn")
    p.add_argument("--watch", action="store_true", help="watch mode: continue after each turn")
    p.add_argument("--max-turns", type=int, help="watch mode: at most N continuations")
    p.add_argument("--continuation-prompt", help='watch mode prompt (default "continue")')
    p.add_argument("--turn-timeout", type=_positive, help="wall-clock limit of each turn (s)")
    p.add_argument("--prompt", help="send this as the first turn right away")
    p.set_defaults(sessions_func=_cmd_create)

    p = sub.add_parser("send", parents=common, help="send a message: one turn of the session")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("message", metavar="MESSAGE")
    p.add_argument("--wait", action="store_true", help="wait for the turn; print its result")
    p.add_argument("--from", dest="from_session", metavar="SESSION", help="sending session")
    p.add_argument("--timeout", type=_positive, help="with --wait: wait at most S seconds")
    p.set_defaults(sessions_func=_cmd_send)

    p = sub.add_parser("status", parents=common, help="one session's record")
    p.add_argument("session", metavar="SESSION")
    p.set_defaults(sessions_func=_cmd_status)

    p = sub.add_parser("logs", parents=common, help="a session's turns and messages, newest last")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--lines", "-n", type=int, default=50, help="newest N entries (default 50)")
    p.set_defaults(sessions_func=_cmd_logs)

    p = sub.add_parser("kill", parents=common, help="cancel the running turn, drop the queue, end")
    p.add_argument("session", metavar="SESSION")
    p.set_defaults(sessions_func=_cmd_kill)

    p = sub.add_parser(
        "coordinate",
        parents=common,
        help="send sessions their subtasks in parallel and wait for all",
        description=(
            "Each session gets DESCRIPTION as shared context and its own subtask. Waits up "
            "to --timeout; exit 0 only if every session completed."
        ),
    )
    p.add_argument("description", metavar="DESCRIPTION")
    p.add_argument(
        "assignments",
        nargs="?",
        type=_json_object,
        help='JSON object {"SESSION": "subtask", ...}',
    )
    p.add_argument(
        "--assign",
        action="append",
        type=_assignment,
        metavar="SESSION=SUBTASK",
        help="one session's subtask (repeatable)",
    )
    p.add_argument("--timeout", type=_positive, default=600.0, help="seconds (default 600)")
    p.add_argument(
        "--cancel-on-timeout", action="store_true", help="cancel the turns still running then"
    )
    p.set_defaults(sessions_func=_cmd_coordinate)

    p = sub.add_parser(
        "spawn-temp",
        parents=common,
        help="run one command or prompt in a throw-away session, print its result",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--command", help="a command line (through the service's shell)")
    what.add_argument("--prompt", help="a prompt for a fresh Claude")
    p.add_argument("--no-shell", action="store_true", help="split --command and exec it")
    p.add_argument("--working-dir", required=True, metavar="DIR")
    p.add_argument("--timeout", type=_positive, default=300.0, help="seconds (default 300)")
    p.set_defaults(sessions_func=_cmd_spawn_temp)
