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
from typing import Any

from pydantic import ValidationError

from cc_executor.client import ExecutorClient, ExecutorConnectionError
from cc_executor.config import Settings
from cc_executor.protocol import Action, ProtocolError, TaskStatus

EXIT_NOT_COMPLETED = 1  # the task, turn or coordination did not complete
EXIT_SERVICE_ERROR = 2  # the service reported an error (also: bad usage)
EXIT_UNREACHABLE = 3  # the service cannot be reached
EXIT_TIMED_OUT = 124  # as coreutils `timeout`
EXIT_INTERRUPTED = 128 + signal.SIGINT

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CliError(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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

URL_HELP = "service WebSocket URL (default from settings: ws://HOST:PORT/ws)"
TOKEN_HELP = (
    "auth token (default: CC_EXECUTOR_AUTH_TOKEN or the data dir's token file); "
    "write --token=T when T starts with -"
)

CONNECTION = argparse.ArgumentParser(add_help=False)
"""`--url` and `--token` after a subcommand; SUPPRESS keeps a value given before it."""
CONNECTION.add_argument("--url", default=argparse.SUPPRESS, help=URL_HELP)
CONNECTION.add_argument("--token", default=argparse.SUPPRESS, help=TOKEN_HELP)

AS_JSON = argparse.ArgumentParser(add_help=False)
AS_JSON.add_argument("--json", action="store_true", help="machine-readable JSON output")

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


# --------------------------------------------------------------------------- connection


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(EXIT_SERVICE_ERROR, f"error: invalid cc-executor settings: {exc}") from None


def unreachable(url: str) -> str:
    return (
        f"error: cannot reach the service at {url} "
        "(is it running? start it with `cc-executor start`)"
    )


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[ExecutorClient]:
    """A client connected to the service of `--url`/`--token` (else the settings')."""
    url, token = getattr(args, "url", None), getattr(args, "token", None)
    client = ExecutorClient(url, token, settings=settings())
    try:
        await client.connect()
    except ExecutorConnectionError as exc:
        if isinstance(exc.__cause__, OSError | TimeoutError):
            raise CliError(EXIT_UNREACHABLE, unreachable(client.url)) from None
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


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run one command to its exit code; every failure becomes a message and its code."""
    try:
        return asyncio.run(command(args))
    except CliError as exc:
        err(exc.message)
        return exc.code
    except ProtocolError as exc:
        msg = f"error: {exc.message}"
        if exc.data is not None:
            detail = exc.data if isinstance(exc.data, str) else json.dumps(exc.data, default=str)
            msg += f"\n  {detail}"
        err(msg)
        return EXIT_SERVICE_ERROR
    except ExecutorConnectionError as exc:
        err(f"error: {exc}")
        return EXIT_UNREACHABLE
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
