"""`cc-executor status | run | tasks | logs | pause | resume | cancel`: tasks on the service.

cc-executor status                             is it running? (exit 0/1), then its tasks
cc-executor run -- CMD...                      run CMD, stream its output, exit with its code
cc-executor tasks | logs TASK [--follow] | pause|resume|cancel TASK
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from cc_executor.cli.common import (
    COMMON,
    CONNECTION,
    EXIT_SERVICE_ERROR,
    CancelOnSignal,
    CliError,
    Command,
    connected,
    err,
    exit_code_of,
    fmt_bytes,
    fmt_duration,
    one_line,
    positive,
    print_json,
    settings,
)
from cc_executor.cli.options import add_options, options_from
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


# --------------------------------------------------------------------------- output


def _fmt_exit(rec: dict[str, Any]) -> str:
    if rec.get("signal"):
        return f"sig{rec['signal']}"
    code = rec.get("exit_code")
    return "-" if code is None else str(code)


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
            f"{fmt_duration(t.get('duration_s')):>8}  {fmt_bytes(nbytes):>7}  "
            f"{one_line(_describe(t), 60)}"
        )
    return "\n".join(rows)


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


def _health_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/health", "", ""))


async def _cmd_status(args: argparse.Namespace) -> int:
    ws_url = args.url or settings().websocket_url()
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
            print_json({"running": False, "url": url, "error": reason})
        else:
            err(f"cc-executor is not running at {url} ({reason})")
        return 1
    listing: dict[str, Any] | None = None
    problem: str | None = None
    try:
        async with connected(args) as client:
            listing = await client.status(limit=args.limit)
    except (CliError, ProtocolError) as exc:
        problem = exc.message
    if args.json:
        out: dict[str, Any] = {"running": True, "url": ws_url, "health": health}
        if listing is not None:
            out.update(listing)
        if problem:
            out["tasks_error"] = problem
        print_json(out)
        return 0
    print(f"cc-executor {health.get('version', '?')} is running at {ws_url}")
    print(
        f"  uptime {fmt_duration(health.get('uptime_s'))}; tasks: "
        f"{health.get('running', 0)} running, {health.get('paused', 0)} paused, "
        f"{health.get('queued', 0)} queued; {health.get('connections', 0)} connection(s)"
    )
    if problem:
        err(f"cannot list tasks: {problem.removeprefix('error: ')}")
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
        err(f"cc-executor: task {task_id} {status}: {done['error']}")
    elif status != TaskStatus.FAILED:
        err(f"cc-executor: task {task_id} {status}")


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
        if args.json:
            done = await handle.wait()
            print_json(await client.status(handle.task_id))
        else:
            sink = _Sink(
                client,
                handle.task_id,
                {Stream.STDOUT: sys.stdout.buffer, Stream.STDERR: sys.stderr.buffer},
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


async def _cmd_tasks(args: argparse.Namespace) -> int:
    async with connected(args) as client:
        listing = await client.status(limit=args.limit)
    if args.json:
        print_json(listing)
        return 0
    tasks = listing.get("tasks", [])
    print(_task_table(tasks) if tasks else "no tasks yet")
    return 0


async def _cmd_logs(args: argparse.Namespace) -> int:
    stream = Stream.STDERR if args.stderr else Stream.STDOUT
    async with connected(args) as client:
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


def _control(action: Action) -> Command:
    async def run(args: argparse.Namespace) -> int:
        async with connected(args) as client:
            res = await client.control(args.task, action)
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
    )
    p.add_argument("--limit", type=int, default=20, help="tasks to list (default 20)")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "run",
        parents=COMMON,
        help="run a command, stream its output, exit with its exit code",
        description=(
            "Run CMD on the service and stream its stdout/stderr here. Several words are "
            "exec'd without a shell; one argument with spaces ('make && ./app') goes through "
            "the service's shell. Exits with the task's code (128+N if killed by signal N, "
            "124 on timeout). Ctrl-C cancels the task and exits 130."
        ),
    )
    p.add_argument("--cwd", help="working directory of the command")
    p.add_argument("--timeout", type=positive, help="wall-clock limit in seconds")
    p.add_argument("--idle-timeout", type=positive, help="end it after S seconds without output")
    p.add_argument("--name", help="a label for the task")
    add_options(p.add_argument_group("workspace"), WorkspaceOptions)
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD...",
        help="the command: several words are exec'd, one with spaces goes through the shell",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("tasks", parents=COMMON, help="list tasks, newest first")
    p.add_argument("--limit", type=int, default=50, help="at most N tasks (default 50)")
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser(
        "logs",
        parents=[CONNECTION],
        help="print a task's complete output",
        description="Print a task's stdout (or --stderr) byte for byte from its log.",
    )
    p.add_argument("task", metavar="TASK", help="a task id")
    p.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="then stream until it ends")
    p.set_defaults(func=_cmd_logs)

    for action, text in (
        (Action.PAUSE, "stop a task's process group (SIGSTOP)"),
        (Action.RESUME, "continue a paused task (SIGCONT)"),
        (Action.CANCEL, "end a task (SIGTERM, then SIGKILL after the grace period)"),
    ):
        p = sub.add_parser(action.value.lower(), parents=COMMON, help=text)
        p.add_argument("task", metavar="TASK", help="a task id")
        p.set_defaults(func=_control(action))
