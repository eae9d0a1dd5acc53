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
Claude temp run did not complete; `spawn-temp --command` exits with the command's code
(124 on timeout, 127 if not found); service errors and an unreachable service end as
`common.run_command` reports them (`common.EXIT_CODES_HELP`). `sessions create` takes its
Claude options from `ClaudeOptions` and the rest from `SessionCreateParams` (cli/options.py).

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

from cc_executor.cli.common import (
    COMMON,
    EXIT_NOT_COMPLETED,
    EXIT_SERVICE_ERROR,
    connected,
    err,
    exit_code_of,
    one_line,
    out,
    positive,
    print_json,
)
from cc_executor.cli.options import add_options, options_from
from cc_executor.client import ExecutorClient
from cc_executor.protocol import (
    CLAUDE_OPTIONS,
    ClaudeOptions,
    Method,
    SessionCreateParams,
    TaskStatus,
)

__all__ = ["add_sessions_parser", "run_sessions_command", "sessions_main"]

SESSION_HELP = "a session id, or the name of an active session"

SessionCommand = Callable[[argparse.Namespace, ExecutorClient], Coroutine[Any, Any, int]]
_PREVIEW = 200

SESSION_FIELDS = (
    frozenset(SessionCreateParams.model_fields) - (CLAUDE_OPTIONS - {"max_turns"}) - {"working_dir"}
)
"""`sessions create` options that are the session's own (`max_turns` is watch mode's)."""


# --------------------------------------------------------------------------- output helpers


def _one_line(text: str | None, width: int = _PREVIEW) -> str:
    return one_line(text, width)


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
        print_json(res)
        return 0
    if res["sessions"]:
        out(_session_table(res["sessions"]))
    else:
        out("no sessions" if args.all else "no active sessions (--all shows ended ones)")
    out(f"{res['active']} active, {res['total']} total")
    return 0


async def _cmd_create(args: argparse.Namespace, client: ExecutorClient) -> int:
    params: dict[str, Any] = {
        "working_dir": args.working_dir,
        **options_from(args, ClaudeOptions, exclude={"max_turns"}),
        **options_from(args, SessionCreateParams, only=SESSION_FIELDS),
    }
    res = await client.call(Method.SESSION_CREATE, params)
    if args.json:
        print_json(res)
        return 0
    out(f"created session {_label(res)} in {res['working_dir']}")
    if res.get("watch_mode"):
        out(f"watch mode: up to {res['max_turns']} continuations ({res['continuation_prompt']!r})")
    if res.get("first_turn"):
        out(_turn_line(res["first_turn"]))
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
        print_json(res)
    elif not args.wait:
        where = f" (position {res['position']} in its queue)" if res.get("position") else ""
        out(f"{_label(res)}: {_turn_line(res)}{where}")
    elif res.get("wait_timed_out"):
        err(f"{_label(res)}: {_turn_line(res)}: still going after {args.timeout}s")
    else:
        if res.get("result"):
            out(res["result"])
        if res["status"] != TaskStatus.COMPLETED:
            err(f"{_label(res)}: {_turn_line(res)}: {res.get('error') or res['status']}")
    if args.wait and (res["status"] != TaskStatus.COMPLETED or res.get("wait_timed_out")):
        return EXIT_NOT_COMPLETED
    return 0


async def _cmd_status(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_STATUS, {"session_id": args.session})
    if args.json:
        print_json(res)
        return 0
    out(f"session {_label(res)}: {res['status']}")
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
            out(f"  {key}: {res[key]}")
    if res.get("last_result"):
        out(f"  last_result: {_one_line(res['last_result'])}")
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
        print_json(res)
        return 0
    for e in res["entries"]:
        out(_log_line(e))
    return 0


async def _cmd_kill(args: argparse.Namespace, client: ExecutorClient) -> int:
    res = await client.call(Method.SESSION_KILL, {"session_id": args.session})
    if args.json:
        print_json(res)
        return 0
    out(res["message"])
    if res.get("cancelled_task_id"):
        out(f"  cancelled task {res['cancelled_task_id']}")
    if res.get("dropped_turns"):
        out(f"  dropped queued turns {res['dropped_turns']}")
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
        err("error: give at least one --assign SESSION=SUBTASK (or a JSON object)")
        return EXIT_SERVICE_ERROR
    params: dict[str, Any] = {
        "task_description": args.description,
        "assignments": assignments,
        "timeout": args.timeout,
    }
    if args.cancel_on_timeout:
        params["cancel_on_timeout"] = True
    res = await client.call(Method.SESSION_COORDINATE, params)
    if args.json:
        print_json(res)
    else:
        for r in res["results"].values():
            out(f"{_label(r)}: {r['status']}  {_one_line(r.get('result') or r.get('error'))}")
        if res["timed_out"]:
            out(f"timed out after {res['timeout']}s: {', '.join(res['timed_out'])}")
        out(f"{res['status']}: {res['completed']} of {len(res['results'])} completed")
    return 0 if res["status"] == TaskStatus.COMPLETED else EXIT_NOT_COMPLETED


async def _cmd_spawn_temp(args: argparse.Namespace, client: ExecutorClient) -> int:
    params: dict[str, Any] = {"working_dir": args.working_dir, "timeout": args.timeout}
    if args.command is not None:
        words = shlex.split(args.command) if args.no_shell else None
        params["command"] = words or args.command
    else:
        params["prompt"] = args.prompt
    res = await client.call(Method.SESSION_SPAWN_TEMP, params)
    if args.json:
        print_json(res)
    else:
        text = res.get("result") if res["kind"] == "claude" else res.get("output")
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if res.get("stderr"):
            sys.stderr.write(res["stderr"])
        err(f"temp session {res['session_id']}: {res['status']} (task {res['task_id']})")
        if res["status"] != TaskStatus.COMPLETED and res.get("error"):
            err(f"error: {res['error']}")
    if res["kind"] == "claude":
        return 0 if res["status"] == TaskStatus.COMPLETED else EXIT_NOT_COMPLETED
    return exit_code_of(res)  # the command's own code, as `run` exits


# --------------------------------------------------------------------------- entry points


async def run_sessions_command(args: argparse.Namespace, client: ExecutorClient) -> int:
    """Run the parsed `sessions ACTION` on a connected client; returns the exit code."""
    command: SessionCommand = args.sessions_func
    return await command(args, client)


async def sessions_main(args: argparse.Namespace) -> int:
    """The `func` of the `sessions` parser: connect, run the action, close.

    An unreachable service raises `CliError` and a service error `ProtocolError`, which
    `common.run_command` turns into exit codes 3 and 2 with a message.
    """
    async with connected(args) as client:
        return await run_sessions_command(args, client)


def add_sessions_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `sessions list|create|send|status|logs|kill|coordinate|spawn-temp` to a CLI."""
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

    p = sub.add_parser("list", parents=COMMON, help="list sessions with total and active counts")
    p.add_argument("--all", action="store_true", help="include ended sessions")
    p.set_defaults(sessions_func=_cmd_list)

    p = sub.add_parser("create", parents=COMMON, help="create a session in an existing directory")
    p.add_argument(
        "working_dir",
        metavar="DIR",
        help=SessionCreateParams.model_fields["working_dir"].description,
    )
    add_options(p.add_argument_group("the session"), SessionCreateParams, only=SESSION_FIELDS)
    add_options(
        p.add_argument_group("Claude options of every turn"),
        ClaudeOptions,
        exclude={"max_turns"},  # --turn-max-turns; a session's --max-turns is watch mode's
    )
    p.set_defaults(sessions_func=_cmd_create)

    p = sub.add_parser("send", parents=COMMON, help="send a message: one turn of the session")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.add_argument("message", metavar="MESSAGE", help="what to tell or ask it: its next turn")
    p.add_argument("--wait", action="store_true", help="wait for the turn; print its result")
    p.add_argument("--from", dest="from_session", metavar="SESSION", help="sending session")
    p.add_argument("--timeout", type=positive, help="with --wait: wait at most S seconds")
    p.set_defaults(sessions_func=_cmd_send)

    p = sub.add_parser("status", parents=COMMON, help="one session's record")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.set_defaults(sessions_func=_cmd_status)

    p = sub.add_parser("logs", parents=COMMON, help="a session's turns and messages, newest last")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.add_argument("--lines", "-n", type=int, default=50, help="newest N entries (default 50)")
    p.set_defaults(sessions_func=_cmd_logs)

    p = sub.add_parser("kill", parents=COMMON, help="cancel the running turn, drop the queue, end")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.set_defaults(sessions_func=_cmd_kill)

    p = sub.add_parser(
        "coordinate",
        parents=COMMON,
        help="send sessions their subtasks in parallel and wait for all",
        description=(
            "Each session gets DESCRIPTION as shared context and its own subtask. Waits up "
            "to --timeout; exit 0 only if every session completed."
        ),
    )
    p.add_argument(
        "description", metavar="DESCRIPTION", help="the shared goal, given to every session"
    )
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
    p.add_argument("--timeout", type=positive, default=600.0, help="seconds (default 600)")
    p.add_argument(
        "--cancel-on-timeout", action="store_true", help="cancel the turns still running then"
    )
    p.set_defaults(sessions_func=_cmd_coordinate)

    p = sub.add_parser(
        "spawn-temp",
        parents=COMMON,
        help="run one command or prompt in a throw-away session, print its result",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--command", help="a command line (through the service's shell)")
    what.add_argument("--prompt", help="a prompt for a fresh Claude")
    p.add_argument("--no-shell", action="store_true", help="split --command and exec it")
    p.add_argument(
        "--working-dir", required=True, metavar="DIR", help="an existing directory to run in"
    )
    p.add_argument("--timeout", type=positive, default=300.0, help="seconds (default 300)")
    p.set_defaults(sessions_func=_cmd_spawn_temp)
