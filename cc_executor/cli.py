"""The `cc-executor` command line, built on the async client.

    cc-executor start [--host H] [--port P]       run the service in the foreground
    cc-executor status                             is it running? (exit 0/1), then its tasks
    cc-executor run -- CMD...                      run CMD, stream its output, exit with its code
    cc-executor claude "PROMPT"                    run a fresh Claude; the result goes to stdout
    cc-executor tasks | logs TASK [--follow] | pause|resume|cancel TASK

Human-readable by default, `--json` for scripts. Exit codes: the task's own for `run`;
1 when `status` finds no service; 2 for an error the service reported (`error: ...`);
3 when the service cannot be reached; 130 after Ctrl-C (which cancels a started task).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from cc_executor import __version__
from cc_executor.cli_sessions import add_sessions_parser
from cc_executor.client import ExecutorClient, ExecutorConnectionError, output_bytes
from cc_executor.config import Settings
from cc_executor.protocol import Action, Notification, ProtocolError, TaskStatus

EXIT_SERVICE_ERROR = 2
EXIT_UNREACHABLE = 3
EXIT_TIMED_OUT = 124  # as coreutils `timeout`
_PAGE = 4 * 1024 * 1024
_CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

__all__ = ["build_parser", "exit_code_of", "main"]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CliError(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- output helpers


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _err(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{int(size)}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"  # unreachable


def _fmt_exit(rec: dict[str, Any]) -> str:
    if rec.get("signal"):
        return f"sig{rec['signal']}"
    code = rec.get("exit_code")
    return "-" if code is None else str(code)


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "~"


def _describe(rec: dict[str, Any]) -> str:
    """A task's name, else its prompt (Claude tasks) or its command."""
    if rec.get("name"):
        return str(rec["name"])
    if rec.get("kind") == "claude" and rec.get("prompt"):
        return f"claude: {rec['prompt']}"
    cmd = rec.get("command")
    if isinstance(cmd, list):
        return shlex.join(str(c) for c in cmd)
    return str(cmd or "")


def _task_table(tasks: list[dict[str, Any]]) -> str:
    head = f"{'ID':<16}  {'STATUS':<9}  {'EXIT':>5}  {'DURATION':>8}  {'BYTES':>7}  COMMAND"
    rows = [head]
    for t in tasks:
        nbytes = int(t.get("stdout_bytes") or 0) + int(t.get("stderr_bytes") or 0)
        rows.append(
            f"{t['task_id']:<16}  {t['status']:<9}  {_fmt_exit(t):>5}  "
            f"{_fmt_duration(t.get('duration_s')):>8}  {_fmt_bytes(nbytes):>7}  "
            f"{_truncate(_describe(t), 60)}"
        )
    return "\n".join(rows)


def exit_code_of(done: dict[str, Any]) -> int:
    """The shell exit code of a final task: its own, 128+signal, 124 for a timeout, else 1."""
    status = done.get("status")
    if status == TaskStatus.COMPLETED:
        return 0
    if status == TaskStatus.TIMED_OUT:
        return EXIT_TIMED_OUT
    if done.get("signal"):
        return 128 + int(done["signal"])
    code = done.get("exit_code")
    if isinstance(code, int) and code != 0:
        return code
    return 1


# --------------------------------------------------------------------------- connection


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(EXIT_SERVICE_ERROR, f"error: invalid cc-executor settings: {exc}") from None


def _unreachable(url: str) -> str:
    return (
        f"error: cannot reach the service at {url} "
        "(is it running? start it with `cc-executor start`)"
    )


@contextlib.asynccontextmanager
async def _connected(args: argparse.Namespace) -> AsyncIterator[ExecutorClient]:
    client = ExecutorClient(args.url, args.token, settings=_settings())
    try:
        await client.connect()
    except ExecutorConnectionError as exc:
        if isinstance(exc.__cause__, OSError | TimeoutError):
            raise CliError(EXIT_UNREACHABLE, _unreachable(client.url)) from None
        msg = f"error: {exc}"
        if "HTTP 401" in msg:
            msg += (
                "\n(wrong or missing token: pass --token, set CC_EXECUTOR_AUTH_TOKEN, or point "
                "CC_EXECUTOR_DATA_DIR at the service's data directory)"
            )
        raise CliError(EXIT_UNREACHABLE, msg) from None
    try:
        yield client
    except ExecutorConnectionError as exc:
        raise CliError(
            EXIT_UNREACHABLE, f"error: lost the connection to the service at {client.url}: {exc}"
        ) from None
    finally:
        await client.close()


class _CancelOnSignal:
    """Ctrl-C (and SIGTERM/SIGHUP) cancels the task once it is known; a second one quits."""

    def __init__(self, client: ExecutorClient) -> None:
        self.client = client
        self.task_id: str | None = None
        self.signum: int | None = None
        self._main = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._bg: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _CancelOnSignal:
        for sig in _CANCEL_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sig in _CANCEL_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.remove_signal_handler(sig)
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def _on_signal(self, sig: int) -> None:
        if self.signum is not None:
            if self._main is not None:
                self._main.cancel()  # a second Ctrl-C: stop waiting
            return
        self.signum = sig
        _err("cc-executor: interrupted, cancelling the task")
        if self.task_id is not None:
            self._cancel()

    def started(self, task_id: str) -> None:
        self.task_id = task_id
        if self.signum is not None:
            self._cancel()

    def _cancel(self) -> None:
        t = self._loop.create_task(self._send_cancel())
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _send_cancel(self) -> None:
        assert self.task_id is not None
        # INVALID_STATE: it ended meanwhile. A lost connection shows in the main flow.
        with contextlib.suppress(ProtocolError, ExecutorConnectionError):
            await self.client.control(self.task_id, Action.CANCEL)


class _Sink:
    """Writes a task's streams to local binary files, byte-exact and in order.

    Output notifications are written from where the last write ended: a range the service
    dropped (slow reader) or replayed twice is fetched from, or trimmed against, the log.
    """

    def __init__(self, client: ExecutorClient, task_id: str, targets: dict[str, IO[bytes]]) -> None:
        self.client = client
        self.task_id = task_id
        self.targets = targets
        self.pos = dict.fromkeys(targets, 0)

    def _write(self, stream: str, data: bytes) -> None:
        out = self.targets[stream]
        out.write(data)
        out.flush()
        self.pos[stream] += len(data)

    async def fill(self, stream: str, upto: int | None = None) -> None:
        """Copy the log from the current position up to `upto` (None: to its current end)."""
        while upto is None or self.pos[stream] < upto:
            limit = _PAGE if upto is None else min(_PAGE, upto - self.pos[stream])
            page = await self.client.output(self.task_id, stream, self.pos[stream], limit)
            data = output_bytes(page)
            if not data:
                return
            self._write(stream, data)
            if upto is None and self.pos[stream] >= page["total"]:
                return

    async def feed(self, method: str, params: dict[str, Any]) -> None:
        stream = params.get("stream", "")
        if stream not in self.targets:
            return
        if method == Notification.DROPPED:
            await self.fill(stream, int(params["to_offset"]))
        elif method == Notification.OUTPUT:
            offset = int(params["offset"])
            if offset > self.pos[stream]:
                await self.fill(stream, offset)
            data = output_bytes(params)
            skip = self.pos[stream] - offset
            if skip < len(data):
                self._write(stream, data[skip:] if skip > 0 else data)

    async def finish(self, done: dict[str, Any]) -> None:
        for stream in self.targets:
            end = done.get(f"{stream}_bytes")
            if isinstance(end, int):
                await self.fill(stream, end)


# --------------------------------------------------------------------------- commands


def _start(args: argparse.Namespace) -> int:
    from cc_executor.logs import setup_logging
    from cc_executor.server import run_service, settings_from_args

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        _err(f"error: invalid settings: {exc}")
        return EXIT_SERVICE_ERROR
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    try:
        asyncio.run(run_service(settings))
    except OSError as exc:
        _err(f"error: cannot start the service on {settings.host}:{settings.port}: {exc}")
        return 1
    return 0


def _health_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/health", "", ""))


async def _cmd_status(args: argparse.Namespace) -> int:
    ws_url = args.url or _settings().websocket_url()
    url = _health_url(ws_url)
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            resp = await http.get(url)
        health = resp.json()
        if resp.status_code != 200 or not isinstance(health, dict):
            raise ValueError(f"HTTP {resp.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if args.json:
            _print_json({"running": False, "url": url, "error": reason})
        else:
            _err(f"cc-executor is not running at {url} ({reason})")
        return 1
    listing: dict[str, Any] | None = None
    problem: str | None = None
    try:
        async with _connected(args) as client:
            listing = await client.status(limit=args.limit)
    except (CliError, ProtocolError) as exc:
        problem = exc.message
    if args.json:
        out: dict[str, Any] = {"running": True, "url": ws_url, "health": health}
        if listing is not None:
            out.update(listing)
        if problem:
            out["tasks_error"] = problem
        _print_json(out)
        return 0
    print(f"cc-executor {health.get('version', '?')} is running at {ws_url}")
    print(
        f"  uptime {_fmt_duration(health.get('uptime_s'))}; tasks: "
        f"{health.get('running', 0)} running, {health.get('paused', 0)} paused, "
        f"{health.get('queued', 0)} queued; {health.get('connections', 0)} connection(s)"
    )
    if problem:
        _err(f"cannot list tasks: {problem.removeprefix('error: ')}")
    elif listing is not None:
        tasks = listing.get("tasks", [])
        print()
        print(_task_table(tasks) if tasks else "no tasks yet")
    sys.stdout.flush()
    return 0


def _command_arg(words: list[str]) -> str | list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise CliError(EXIT_SERVICE_ERROR, "error: no command given (usage: run [OPTIONS] -- CMD)")
    if len(words) == 1 and any(c.isspace() for c in words[0]):
        return words[0]  # one string with spaces: it goes through the service's shell
    return words


def _explain_end(task_id: str, done: dict[str, Any]) -> None:
    status = done.get("status")
    if status == TaskStatus.COMPLETED:
        return
    if done.get("error") and done["error"] != status:
        _err(f"cc-executor: task {task_id} {status}: {done['error']}")
    elif status != TaskStatus.FAILED:
        _err(f"cc-executor: task {task_id} {status}")


async def _cmd_run(args: argparse.Namespace) -> int:
    command = _command_arg(args.command)
    async with _connected(args) as client, _CancelOnSignal(client) as guard:
        handle = await client.execute(
            command,
            keep_events=not args.json,
            cwd=args.cwd,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            name=args.name,
        )
        guard.started(handle.task_id)
        if args.json:
            done = await handle.wait()
            _print_json(await client.status(handle.task_id))
        else:
            sink = _Sink(
                client,
                handle.task_id,
                {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer},
            )
            async for ev in handle.events():
                await sink.feed(ev["method"], ev["params"])
            done = await handle.wait()
            await sink.finish(done)
    if guard.signum is not None:
        return guard.exit_code
    if not args.json:
        _explain_end(handle.task_id, done)
    return exit_code_of(done)


def _render_claude_event(ev: dict[str, Any]) -> str | None:
    etype, subtype = ev.get("type"), ev.get("subtype")
    if etype == "system" and subtype == "init":
        tools = ev.get("tools") or []
        return f"[session {ev.get('session_id')} | model {ev.get('model')} | {len(tools)} tools]"
    if etype == "system" and subtype == "api_retry":
        return (
            f"[api retry {ev.get('attempt')}/{ev.get('max_retries')}: "
            f"{ev.get('error') or ev.get('error_status')}]"
        )
    if etype == "assistant":
        lines = []
        text = (ev.get("text") or "").strip()
        if text:
            lines.append(text)
        lines.extend(f"[tool: {u.get('name')}]" for u in ev.get("tool_uses") or [])
        if ev.get("error"):
            lines.append(f"[error: {ev['error']}]")
        return "\n".join(lines) or None
    if etype == "user":
        lines = []
        for r in ev.get("tool_results") or []:
            content = (r.get("content") or "").strip().splitlines()
            first = _truncate(content[0], 120) if content else ""
            label = "tool error" if r.get("is_error") else "tool result"
            lines.append(f"[{label}: {first}]")
        return "\n".join(lines) or None
    if etype == "rate_limit_event":
        return f"[rate limit: {ev.get('status')}, resets at {ev.get('resets_at')}]"
    return None


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


async def _cmd_claude(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "model": args.model,
        "allowed_tools": _split_list(args.allowed_tools),
        "disallowed_tools": _split_list(args.disallowed_tools),
        "max_turns": args.max_turns,
        "max_budget_usd": args.max_budget_usd,
        "resume": args.resume,
        "fork_session": args.fork_session or None,
        "cwd": args.cwd,
        "add_dirs": args.add_dir,
        "timeout": args.timeout,
        "idle_timeout": args.idle_timeout,
        "name": args.name,
        "skip_permissions": args.skip_permissions or None,
        "permission_mode": args.permission_mode,
        "append_system_prompt": args.append_system_prompt,
        "mcp_config": args.mcp_config,
    }
    async with _connected(args) as client, _CancelOnSignal(client) as guard:
        handle = await client.execute_claude(args.prompt, keep_events=not args.json, **params)
        guard.started(handle.task_id)
        if not args.json:
            async for ev in handle.events():
                if ev["method"] == Notification.CLAUDE_EVENT:
                    line = _render_claude_event(ev["params"].get("event") or {})
                    if line:
                        _err(line)
        await handle.wait()
        rec = await client.status(handle.task_id)
    ok = rec.get("status") == TaskStatus.COMPLETED and not rec.get("is_error")
    if args.json:
        _print_json(rec)
    else:
        result = rec.get("result")
        # A failure's result is its error text (shown below); partial text of a run that
        # timed out is still worth having.
        if result is not None and (ok or (rec.get("partial") and guard.signum is None)):
            sys.stdout.write(result if result.endswith("\n") else result + "\n")
            sys.stdout.flush()
        summary = [str(rec.get("status"))]
        if rec.get("num_turns") is not None:
            summary.append(f"{rec['num_turns']} turn(s)")
        if rec.get("total_cost_usd") is not None:
            summary.append(f"${rec['total_cost_usd']}")
        if rec.get("claude_session_id"):
            summary.append(f"session {rec['claude_session_id']}")
        summary.append(f"task {rec.get('task_id')}")
        _err("[" + " | ".join(summary) + "]")
        if not ok and guard.signum is None:
            kind = rec.get("error_kind")
            _err(f"error{f' ({kind})' if kind else ''}: {rec.get('error') or rec.get('status')}")
            if rec.get("error_hint"):
                _err(f"hint: {rec['error_hint']}")
    if guard.signum is not None:
        return guard.exit_code
    return 0 if ok else 1


async def _cmd_tasks(args: argparse.Namespace) -> int:
    async with _connected(args) as client:
        listing = await client.status(limit=args.limit)
    if args.json:
        _print_json(listing)
        return 0
    tasks = listing.get("tasks", [])
    print(_task_table(tasks) if tasks else "no tasks yet")
    return 0


async def _cmd_logs(args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    async with _connected(args) as client:
        sink = _Sink(client, args.task, {stream: sys.stdout.buffer})
        await sink.fill(stream)
        if args.follow:
            pos = sink.pos[stream]
            if args.stderr:
                handle = await client.subscribe(args.task, stderr_from_offset=pos)
            else:
                handle = await client.subscribe(args.task, from_offset=pos)
            async for ev in handle.events():
                await sink.feed(ev["method"], ev["params"])
            await sink.finish(await handle.wait())
    return 0


def _control(action: Action) -> Handler:
    async def run(args: argparse.Namespace) -> int:
        async with _connected(args) as client:
            res = await client.control(args.task, action)
        if args.json:
            _print_json(res)
        else:
            print(f"{res['task_id']}: {res['status']}")
        return 0

    return run


# --------------------------------------------------------------------------- parser


def _positive(value: str) -> float:
    f = float(value)
    if f <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return f


def build_parser() -> argparse.ArgumentParser:
    from cc_executor.server import build_arg_parser

    parser = argparse.ArgumentParser(
        prog="cc-executor",
        description="Run commands and fresh Claude instances on the cc-executor service.",
        epilog="Exit codes: 2 = the service reported an error, 3 = service unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"cc-executor {__version__}")
    conn_help = "service WebSocket URL (default from settings: ws://HOST:PORT/ws)"
    token_help = (
        "auth token (default: CC_EXECUTOR_AUTH_TOKEN or the data dir's token file); "
        "write --token=T when T starts with -"
    )
    parser.add_argument("--url", help=conn_help)
    parser.add_argument("--token", help=token_help)
    # The same options after the subcommand; SUPPRESS keeps a value given before it.
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--url", default=argparse.SUPPRESS, help=conn_help)
    conn.add_argument("--token", default=argparse.SUPPRESS, help=token_help)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable JSON output")

    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")

    start_parser = build_arg_parser("cc-executor start")
    sub.add_parser(
        "start",
        parents=[start_parser],
        conflict_handler="resolve",
        help="start the service in the foreground",
        description=start_parser.description,
    )

    p = sub.add_parser(
        "status",
        parents=[conn, as_json],
        help="is the service running? (exit 0 if so, 1 if not), then its tasks",
    )
    p.add_argument("--limit", type=int, default=20, help="tasks to list (default 20)")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "run",
        parents=[conn, as_json],
        help="run a command, stream its output, exit with its exit code",
        description=(
            "Run CMD on the service and stream its stdout/stderr here. Several words are "
            "exec'd without a shell; one argument with spaces ('make && ./app') goes through "
            "the service's shell. Exits with the task's code (128+N if killed by signal N, "
            "124 on timeout). Ctrl-C cancels the task and exits 130."
        ),
    )
    p.add_argument("--cwd", help="working directory of the command")
    p.add_argument("--timeout", type=_positive, help="wall-clock limit in seconds")
    p.add_argument("--idle-timeout", type=_positive, help="end it after S seconds without output")
    p.add_argument("--name", help="a label for the task")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "claude",
        parents=[conn, as_json],
        help="run a fresh Claude on a prompt; the result text goes to stdout",
        description=(
            "Run `claude -p PROMPT` as a task. Progress (assistant text, tool uses) goes to "
            "stderr, the final result to stdout. Exit 0 if it completed without error."
        ),
    )
    p.add_argument("prompt")
    p.add_argument("--model")
    p.add_argument("--allowed-tools", help="comma-separated, e.g. Read,Bash")
    p.add_argument("--disallowed-tools", help="comma-separated")
    p.add_argument("--max-turns", type=int)
    p.add_argument("--max-budget-usd", type=_positive)
    p.add_argument("--resume", metavar="SESSION_ID", help="continue a Claude session")
    p.add_argument("--fork-session", action="store_true", help="with --resume: branch off")
    p.add_argument("--cwd", help="working directory")
    p.add_argument("--add-dir", action="append", help="extra directory Claude may use")
    p.add_argument("--timeout", type=_positive)
    p.add_argument("--idle-timeout", type=_positive)
    p.add_argument("--name")
    p.add_argument("--skip-permissions", action="store_true", help="--dangerously-skip-permissions")
    p.add_argument(
        "--permission-mode",
        choices=["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk", "auto"],
    )
    p.add_argument("--append-system-prompt")
    p.add_argument("--mcp-config", help="MCP config file or JSON string")
    p.set_defaults(func=_cmd_claude)

    p = sub.add_parser("tasks", parents=[conn, as_json], help="list tasks, newest first")
    p.add_argument("--limit", type=int, default=50, help="at most N tasks (default 50)")
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser(
        "logs",
        parents=[conn],
        help="print a task's complete output",
        description="Print a task's stdout (or --stderr) byte for byte from its log.",
    )
    p.add_argument("task", metavar="TASK")
    p.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="then stream until it ends")
    p.set_defaults(func=_cmd_logs)

    for action, text in (
        (Action.PAUSE, "stop a task's process group (SIGSTOP)"),
        (Action.RESUME, "continue a paused task (SIGCONT)"),
        (Action.CANCEL, "end a task (SIGTERM, then SIGKILL after the grace period)"),
    ):
        p = sub.add_parser(action.value.lower(), parents=[conn, as_json], help=text)
        p.add_argument("task", metavar="TASK")
        p.set_defaults(func=_control(action))
    add_sessions_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand is None:
        parser.print_help(sys.stderr)
        return EXIT_SERVICE_ERROR
    if args.subcommand == "start":
        return _start(args)
    func: Handler = args.func
    try:
        return asyncio.run(func(args))
    except CliError as exc:
        _err(exc.message)
        return exc.code
    except ProtocolError as exc:
        msg = f"error: {exc.message}"
        if exc.data is not None:
            detail = exc.data if isinstance(exc.data, str) else json.dumps(exc.data, default=str)
            msg += f"\n  {detail}"
        _err(msg)
        return EXIT_SERVICE_ERROR
    except ExecutorConnectionError as exc:
        _err(f"error: {exc}")
        return EXIT_UNREACHABLE
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
