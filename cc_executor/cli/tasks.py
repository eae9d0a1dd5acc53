"""`cc-executor status | run | tasks | logs | pause | resume | cancel`: tasks on the service.

cc-executor status                             is it running? (exit 0/1), then its tasks
cc-executor run -- CMD...                      run CMD, stream its output, exit with its code
cc-executor tasks | logs TASK [--follow] | pause|resume|cancel TASK

TASK is an id, a unique prefix of one, or a name (cli/refs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from cc_executor.cli.common import (
    COMMON,
    CONNECTION,
    EXIT_USAGE,
    CancelOnSignal,
    CliError,
    Command,
    connected,
    count,
    err,
    exit_code_of,
    fmt_duration,
    json_option,
    positive,
    print_json,
    settings,
)
from cc_executor.cli.options import add_options, options_from
from cc_executor.cli.refs import TASK_HELP, resolve_task
from cc_executor.cli.table import shown_line, task_table
from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.protocol import (
    Action,
    Notification,
    ProtocolError,
    Stream,
    TaskStatus,
    WorkspaceOptions,
)

_PAGE = 4 * 1024 * 1024
_QUIET_BEFORE_TICKER_S = 2.0


class _Sink:
    """Writes a task's streams to local binary files, byte-exact and in order.

    Output notifications are written from where the last write ended: a range the service
    dropped (slow reader) or replayed twice is fetched from, or trimmed against, the log.
    """

    def __init__(
        self,
        client: ExecutorClient,
        task_id: str,
        targets: dict[str, IO[bytes]],
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.targets = targets
        self.pos = dict.fromkeys(targets, 0)
        self.before_write = before_write
        self.last_write = time.monotonic()

    def _write(self, stream: str, data: bytes) -> None:
        if self.before_write is not None:
            self.before_write()
        self.last_write = time.monotonic()
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


def _http_base(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/", "", ""))


async def _cmd_status(args: argparse.Namespace) -> int:
    ws_url = args.url or settings().websocket_url()
    base = _http_base(ws_url)
    url = base + "health"
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            resp = await http.get(url)
        health = resp.json()
        if resp.status_code != 200 or not isinstance(health, dict):
            raise ValueError(f"HTTP {resp.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if args.json:
            print_json({"running": False, "url": url, "error": reason})
        else:
            err(f"cc-executor is not running at {url} ({reason})")
            err("hint: start it with `cc-executor start`")
        return 1
    listing: dict[str, Any] | None = None
    problem: str | None = None
    try:
        async with connected(args) as client:
            listing = await client.status(limit=args.limit, active_first=True)
    except (CliError, ProtocolError) as exc:
        problem = exc.message
    if args.json:
        out: dict[str, Any] = {"running": True, "url": ws_url, "dashboard": base, "health": health}
        if listing is not None:
            out.update(listing)
        if problem:
            out["tasks_error"] = problem
        print_json(out)
        return 0
    print(f"cc-executor {health.get('version', '?')} is running at {ws_url}")
    print(f"  dashboard: {base}  (open {base}#token=$(cat {settings().token_file}))")
    print(
        f"  uptime {fmt_duration(health.get('uptime_s'))}; tasks: "
        f"{health.get('running', 0)} running, {health.get('paused', 0)} paused, "
        f"{health.get('queued', 0)} queued; {health.get('connections', 0)} connection(s)"
    )
    for why in health.get("problems") or ():
        err(f"degraded: {why}")
    if problem:
        err(f"cannot list tasks: {problem.removeprefix('error: ')}")
    elif listing is not None:
        tasks = listing.get("tasks", [])
        print()
        if tasks:
            print(task_table(tasks))
        print(shown_line(len(tasks), listing.get("total", len(tasks)), "cc-executor tasks --all"))
    sys.stdout.flush()
    return 0


def _command_arg(words: list[str]) -> str | list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise CliError(EXIT_USAGE, "error: no command given (usage: run [OPTIONS] -- CMD)")
    if len(words) == 1 and any(c.isspace() for c in words[0]):
        return words[0]  # one string with spaces: it goes through the service's shell
    return words


def _explain_end(task_id: str, done: dict[str, Any]) -> None:
    status = done.get("status")
    if status == TaskStatus.COMPLETED:
        return
    if done.get("error") and done["error"] != status:
        err(f"cc-executor: task {task_id} {status}: {done['error']}")
    elif status != TaskStatus.FAILED:
        err(f"cc-executor: task {task_id} {status}")


class _Ticker:
    """On a terminal, a silent task shows how long it has run on one stderr line, which is
    cleared before any output is written."""

    def __init__(self, task_id: str, sink: _Sink) -> None:
        self.task_id = task_id
        self.sink = sink
        self.started = time.monotonic()
        self.shown = False
        self._task: asyncio.Task[None] | None = None

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self.shown = False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            quiet = time.monotonic() - self.sink.last_write
            if quiet >= _QUIET_BEFORE_TICKER_S:
                ran = fmt_duration(time.monotonic() - self.started)
                sys.stderr.write(
                    f"\r\x1b[2K[cc-executor: task {self.task_id} running for {ran}, "
                    f"no output for {int(quiet)}s]"
                )
                sys.stderr.flush()
                self.shown = True

    def __enter__(self) -> _Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.clear()


async def _cmd_run(args: argparse.Namespace) -> int:
    command = _command_arg(args.command)
    async with connected(args) as client, CancelOnSignal(client) as guard:
        handle = await client.execute(
            command,
            keep_events=not args.json,
            cwd=args.cwd,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            name=args.name,
            **options_from(args, WorkspaceOptions),
        )
        guard.started(handle.task_id)
        if not args.quiet:
            err(
                f"cc-executor: task {handle.task_id} started "
                f"(cc-executor pause|cancel|logs -f {handle.task_id[:8]})"
            )
        if args.json:
            done = await handle.wait()
            print_json(await client.status(handle.task_id))
        else:
            ticker: _Ticker | None = None
            sink = _Sink(
                client,
                handle.task_id,
                {Stream.STDOUT: sys.stdout.buffer, Stream.STDERR: sys.stderr.buffer},
                before_write=lambda: ticker.clear() if ticker is not None else None,
            )
            with contextlib.ExitStack() as stack:
                if sys.stderr.isatty() and not args.quiet:
                    ticker = stack.enter_context(_Ticker(handle.task_id[:8], sink))
                async for ev in handle.events():
                    await sink.feed(ev["method"], ev["params"])
                done = await handle.wait()
                await sink.finish(done)
    if guard.signum is not None:
        return guard.exit_code
    if not args.json:
        _explain_end(handle.task_id, done)
    return exit_code_of(done)


def _statuses(value: str) -> list[str]:
    """An argparse type: a comma-separated list of task statuses."""
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in set(TaskStatus)]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(bad) or repr(value)} "
            f"(choose from {', '.join(TaskStatus)}, comma-separated)"
        )
    return names


async def _cmd_tasks(args: argparse.Namespace) -> int:
    limit = 100_000 if args.all else args.limit
    async with connected(args) as client:
        listing = await client.status(
            limit=limit, statuses=args.status, text=args.search, active_first=True
        )
    if args.json:
        print_json(listing)
        return 0
    tasks = listing.get("tasks", [])
    total = int(listing.get("total", len(tasks)))
    if tasks:
        print(task_table(tasks))
    elif args.status or args.search:
        print("no task matches")
    else:
        print("no tasks yet")
    print(shown_line(len(tasks), total, "--all shows all, --limit N more"))
    return 0


async def _cmd_logs(args: argparse.Namespace) -> int:
    stream = Stream.STDERR if args.stderr else Stream.STDOUT
    async with connected(args) as client:
        task_id = await resolve_task(client, args.task)
        sink = _Sink(client, task_id, {stream: sys.stdout.buffer})
        await sink.fill(stream)
        if args.follow:
            pos = sink.pos[stream]
            if args.stderr:
                handle = await client.subscribe(task_id, stderr_from_offset=pos)
            else:
                handle = await client.subscribe(task_id, from_offset=pos)
            async for ev in handle.events():
                await sink.feed(ev["method"], ev["params"])
            await sink.finish(await handle.wait())
    return 0


def _control(action: Action) -> Command:
    async def run(args: argparse.Namespace) -> int:
        async with connected(args) as client:
            task_id = await resolve_task(client, args.task)
            res = await client.control(task_id, action)
        if args.json:
            print_json(res)
        else:
            print(f"{res['task_id']}: {res['status']}")
        return 0

    return run


# --------------------------------------------------------------------------- parsers


def add_task_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `status`, `run`, `tasks`, `logs`, `pause`, `resume` and `cancel`."""
    p = sub.add_parser(
        "status",
        parents=COMMON,
        help="is the service running? (exit 0 if so, 1 if not), then its tasks",
        description="Is the service running (exit 0) or not (exit 1)? Then its address, "
        "its dashboard and its tasks, active ones first.",
    )
    p.add_argument("--limit", type=count, default=20, help="tasks to list (default 20)")
    p.set_defaults(func=_cmd_status)

    run_json = json_option(
        "print no output; at the end, the task's final record as JSON on stdout "
        "(its output: cc-executor logs TASK)"
    )
    p = sub.add_parser(
        "run",
        parents=[CONNECTION, run_json],
        help="run a command, stream its output, exit with its exit code",
        description=(
            "Run CMD on the service and stream its stdout/stderr here. Several words are "
            "exec'd without a shell; one argument with spaces ('make && ./app') goes through "
            "the service's shell. The task id goes to stderr at the start; on a terminal a "
            "silent task shows how long it has run. Exits with the task's code: 124 on "
            "timeout, 126 if CMD cannot be executed, 127 if it does not exist, 128+N if "
            "killed by signal N. Ctrl-C cancels the task and exits 130."
        ),
    )
    p.add_argument("--cwd", help="working directory of the command")
    p.add_argument("--timeout", type=positive, help="wall-clock limit in seconds")
    p.add_argument("--idle-timeout", type=positive, help="end it after S seconds without output")
    p.add_argument("--name", help="a label for the task (TASK arguments take it)")
    p.add_argument("--quiet", "-q", action="store_true", help="no task id or timer on stderr")
    add_options(p.add_argument_group("workspace"), WorkspaceOptions)
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD...",
        help="the command: several words are exec'd, one with spaces goes through the shell",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "tasks",
        parents=COMMON,
        help="list tasks: active first, then newest first",
        description="Running, paused and queued tasks first, then the others newest first; "
        "a last line says how many of how many are shown. IDs are shown by their first 8 "
        "characters, which any TASK argument takes.",
    )
    p.add_argument("--limit", type=count, default=50, help="at most N tasks (default 50)")
    p.add_argument("--all", "-a", action="store_true", help="every task, not only the first N")
    p.add_argument(
        "--status",
        type=_statuses,
        metavar="S,S",
        help=f"only tasks in these statuses ({', '.join(TaskStatus)})",
    )
    p.add_argument(
        "--search", metavar="TEXT", help="only tasks whose id, name, command or prompt holds TEXT"
    )
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser(
        "logs",
        parents=[CONNECTION, json_option("errors as JSON on stdout (the log stays raw bytes)")],
        help="print a task's complete output",
        description="Print a task's stdout (or --stderr) byte for byte from its log.",
    )
    p.add_argument("task", metavar="TASK", help=TASK_HELP)
    p.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="then stream until it ends")
    p.set_defaults(func=_cmd_logs)

    for action, text in (
        (Action.PAUSE, "stop a task's process group (SIGSTOP)"),
        (Action.RESUME, "continue a paused task (SIGCONT)"),
        (Action.CANCEL, "end a task (SIGTERM, then SIGKILL after the grace period)"),
    ):
        p = sub.add_parser(action.value.lower(), parents=COMMON, help=text)
        p.add_argument("task", metavar="TASK", help=TASK_HELP)
        p.set_defaults(func=_control(action))
