"""What every `cc-executor` command shares: exit codes, errors, output, the connection.

A command is `async def cmd(args) -> int` (its exit code). It connects with `connected(args)`,
raises `CliError` for a failure of its own, and lets `ProtocolError` (an error the service
reported) and `ExecutorConnectionError` through: `run_command` turns each into a message on
stderr and its exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from cc_executor.cli.options import flag_of
from cc_executor.client import ExecutorClient, ExecutorConnectionError
from cc_executor.config import Settings
from cc_executor.problems import field_path, problems
from cc_executor.protocol import Action, ErrorCode, ProtocolError, TaskStatus

EXIT_NOT_COMPLETED = 1  # the task, turn or coordination did not complete; `status`: not running
EXIT_USAGE = 2  # a bad option or argument (argparse's own code), an unknown or ambiguous TASK
EXIT_UNREACHABLE = 3  # the service cannot be reached
EXIT_AUTH = 4  # the service refused the token
EXIT_SERVICE_ERROR = 5  # the service reported an error (task not found, wrong state, ...)
EXIT_TIMED_OUT = 124  # as coreutils `timeout`
EXIT_CANNOT_EXECUTE = 126  # as a shell: the program exists but cannot be executed
EXIT_NOT_FOUND = 127  # as a shell: no such program
EXIT_INTERRUPTED = 128 + signal.SIGINT

EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 the task did not complete (status: no service); 2 bad usage; "
    "3 service unreachable; 4 token refused; 5 the service reported an error. "
    "run and sessions spawn-temp exit with the command's own code instead: 124 timed out, "
    "126 cannot execute, 127 program not found, 128+N killed by signal N; "
    "130 after Ctrl-C (which cancels the task)."
)

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CliError(Exception):
    """Ends the command with a message (stderr, or JSON on stdout with --json) and a code."""

    def __init__(self, code: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def exit_code_of(done: dict[str, Any]) -> int:
    """The shell exit code of a final task: its own, 128+signal, 124 for a timeout, 127 for
    a program that does not exist and 126 for one that cannot run (as a shell), else 1."""
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
    spawn = str(done.get("spawn_error") or done.get("error") or "")
    if "FileNotFoundError" in spawn or "No such file" in spawn:
        return EXIT_NOT_FOUND
    if "PermissionError" in spawn or "Permission denied" in spawn:
        return EXIT_CANNOT_EXECUTE
    return EXIT_NOT_COMPLETED


# --------------------------------------------------------------------------- output


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def one_line(text: str | None, width: int) -> str:
    """`text` on one line (whitespace runs become one space), cut to `width` characters."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "~"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "K", "M"):
        if size < 1024:
            return f"{int(size)}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


# --------------------------------------------------------------------------- parsers

URL_HELP = (
    "the service's URL: ws://HOST:PORT/ws (http://HOST:PORT and HOST:PORT work too; "
    "default from the settings, CC_EXECUTOR_HOST and CC_EXECUTOR_PORT)"
)
TOKEN_HELP = (
    "auth token (default: CC_EXECUTOR_AUTH_TOKEN, else the token file in the data dir, "
    "CC_EXECUTOR_DATA_DIR); it shows in `ps`: prefer --token-file; write --token=T when T "
    "starts with -"
)
TOKEN_FILE_HELP = (
    "read the auth token from this file (default: CC_EXECUTOR_TOKEN_FILE); "
    "unlike --token, nothing of it shows in `ps`"
)


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error of a `--json` command is JSON on stdout, like any error."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            print_error(EXIT_USAGE, f"{self.prog}: {message}", f"see {self.prog} --help")
            raise SystemExit(EXIT_USAGE)
        super().error(message)


def ws_url(value: str) -> str:
    """An argparse type: the service's WebSocket URL, from what a user may type for it."""
    text = value.strip()
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    try:
        port_ok = parts.port is not None or scheme in ("ws", "wss")
    except ValueError:
        port_ok = False
    if scheme not in ("ws", "wss") or not parts.hostname or not port_ok:
        raise argparse.ArgumentTypeError(
            f"want ws://HOST:PORT/ws (or http://HOST:PORT), got {value!r}"
        )
    return urlunsplit(
        (
            scheme,
            parts.netloc,
            parts.path if parts.path not in ("", "/") else "/ws",
            parts.query,
            "",
        )
    )


CONNECTION = argparse.ArgumentParser(add_help=False)
"""`--url` and `--token` after a subcommand; SUPPRESS keeps a value given before it."""
CONNECTION.add_argument("--url", type=ws_url, default=argparse.SUPPRESS, help=URL_HELP)
CONNECTION.add_argument("--token", default=argparse.SUPPRESS, help=TOKEN_HELP)
CONNECTION.add_argument(
    "--token-file", metavar="PATH", default=argparse.SUPPRESS, help=TOKEN_FILE_HELP
)


def json_option(
    text: str = "machine-readable JSON on stdout (errors too)",
) -> argparse.ArgumentParser:
    """A parent parser with `--json`, described as the command means it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help=text)
    return parent


AS_JSON = json_option()

COMMON = [CONNECTION, AS_JSON]
"""The parents of every command that talks to the service."""


def positive(value: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not f > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return f


positive.__name__ = "seconds"  # argparse names the type in some messages


def count(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return n


# --------------------------------------------------------------------------- errors

ERROR_HINTS: dict[int, str] = {
    ErrorCode.TASK_NOT_FOUND: "`cc-executor tasks --all` lists the tasks",
    ErrorCode.SESSION_NOT_FOUND: "`cc-executor sessions list --all` lists the sessions",
    ErrorCode.COMMAND_NOT_ALLOWED: "the service's allowed_commands setting decides what may run",
    ErrorCode.CAPACITY_EXCEEDED: "wait for tasks to end, or raise max_queued_tasks",
    ErrorCode.RATE_LIMITED: "wait a minute, or raise max_tasks_per_minute_per_connection",
}
"""What to do about a service error, by its code."""


def print_error(exit_code: int, message: str, hint: str | None = None, **more: Any) -> None:
    """One error as a `--json` command reports it: an object on stdout."""
    doc: dict[str, Any] = {"message": message.removeprefix("error: "), "exit_code": exit_code}
    if hint:
        doc["hint"] = hint
    doc.update({k: v for k, v in more.items() if v is not None})
    print_json({"error": doc})


def report(
    args: argparse.Namespace, exit_code: int, message: str, hint: str | None, **more: Any
) -> int:
    """Say what went wrong (stderr, or JSON on stdout with --json); returns `exit_code`."""
    if getattr(args, "json", False):
        print_error(exit_code, message, hint, **more)
    else:
        err(message)
        if hint:
            err(f"hint: {hint}")
    return exit_code


# --------------------------------------------------------------------------- connection


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CC_EXECUTOR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise CliError(EXIT_USAGE, f"error: invalid cc-executor settings: {problems}") from None


def unreachable(url: str) -> CliError:
    return CliError(
        EXIT_UNREACHABLE,
        f"error: cannot reach the service at {url}",
        "is it running? start it with `cc-executor start`, or give its address with --url",
    )


def given_token(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The token the command line gives and where it came from (`--token`, `--token-file`
    or CC_EXECUTOR_TOKEN_FILE), else (None, None): the settings' then apply."""
    token, path = getattr(args, "token", None), getattr(args, "token_file", None)
    if token is not None and path is not None:
        raise CliError(EXIT_USAGE, "error: give --token or --token-file, not both")
    if token is not None:
        return token, "--token"
    source = "--token-file"
    if path is None:
        path, source = os.environ.get("CC_EXECUTOR_TOKEN_FILE") or None, "CC_EXECUTOR_TOKEN_FILE"
    if path is None:
        return None, None
    try:
        text = Path(path).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(
            EXIT_USAGE, f"error: {source} {path}: cannot read the token: {exc}"
        ) from None
    if not text:
        raise CliError(EXIT_USAGE, f"error: {source} {path}: the file is empty")
    return text, f"{source} {path}"


def token_refused(url: str, given: str | None) -> CliError:
    where = settings()
    if given:
        source = given
    elif where.auth_token:
        source = "CC_EXECUTOR_AUTH_TOKEN"
    else:
        source = f"the token file {where.token_file} (the data dir: CC_EXECUTOR_DATA_DIR)"
    return CliError(
        EXIT_AUTH,
        f"error: the service at {url} refused the token",
        f"the token came from {source}; give the service's own (its data dir's token file, "
        "which `cc-executor start` prints) with --token-file or CC_EXECUTOR_DATA_DIR",
    )


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[ExecutorClient]:
    """A client connected to the service of `--url`/`--token` (else the settings')."""
    url = getattr(args, "url", None)
    token, source = given_token(args)
    client = ExecutorClient(url, token, settings=settings())
    try:
        await client.connect()
    except ExecutorConnectionError as exc:
        if isinstance(exc.__cause__, OSError | TimeoutError):
            raise unreachable(client.url) from None
        if "HTTP 401" in str(exc):
            raise token_refused(client.url, source) from None
        raise CliError(EXIT_UNREACHABLE, f"error: {exc}") from None
    try:
        yield client
    except ExecutorConnectionError as exc:
        raise CliError(
            EXIT_UNREACHABLE, f"error: lost the connection to the service at {client.url}: {exc}"
        ) from None
    finally:
        await client.close()


_CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CancelOnSignal:
    """Ctrl-C (and SIGTERM/SIGHUP) cancels the task once it is known; a second one quits."""

    def __init__(self, client: ExecutorClient) -> None:
        self.client = client
        self.task_id: str | None = None
        self.signum: int | None = None
        self._main = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._bg: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CancelOnSignal:
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
        err("cc-executor: interrupted, cancelling the task")
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


# --------------------------------------------------------------------------- running


POSITIONAL_FIELDS = {"prompt": "PROMPT", "command": "CMD", "working_dir": "DIR"}
"""Request fields given as positional arguments, named as the usage line names them."""


def _is_problem_list(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(e, dict) and "msg" in e for e in data)


def params_problems(details: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The service's -32602 details as one line per problem, each naming the field as it
    was given here: its option (`--max-turns`), or the positional argument."""

    def name(path: tuple[str | int, ...]) -> str:
        head, rest = path[0], path[1:]
        if isinstance(head, str) and hasattr(args, head):
            head = POSITIONAL_FIELDS.get(head) or flag_of(head)
        return field_path((head, *rest))

    lines = problems(details, name=name) or ["invalid params"]
    return "\n".join(f"error: {line}" for line in lines)


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run one command to its exit code; every failure becomes a message and its code."""
    try:
        return asyncio.run(command(args))
    except CliError as exc:
        return report(args, exc.code, exc.message, exc.hint)
    except ProtocolError as exc:
        msg = f"error: {exc.message}"
        data = exc.data
        if exc.code == ErrorCode.INVALID_PARAMS and _is_problem_list(data):
            msg = params_problems(data, args)
        elif data is not None and not getattr(args, "json", False):
            detail = data if isinstance(data, str) else json.dumps(data, default=str)
            msg += f"\n  {detail}"
        hint = ERROR_HINTS.get(exc.code)
        return report(args, EXIT_SERVICE_ERROR, msg, hint, code=exc.code, data=data)
    except ExecutorConnectionError as exc:
        return report(args, EXIT_UNREACHABLE, f"error: {exc}", None)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
