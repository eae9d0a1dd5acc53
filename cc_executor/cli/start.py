"""`cc-executor start`: run the service in the foreground (its options are the service's).

It prints a short banner on stderr once the service listens (where it is, the dashboard,
the data dir and token file, how to stop it); the log keeps its own "listening" line. A
user's mistake (a bad option, a data dir another service owns, a port in use) is one line
and exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cc_executor.cli.common import EXIT_NOT_COMPLETED, EXIT_USAGE, err

if TYPE_CHECKING:
    from cc_executor.server import ExecutorService

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

OPTION_OF = {
    "host": "--host",
    "port": "--port",
    "log_level": "--log-level",
    "data_dir": "--data-dir",
}


def _settings_problem(exc: ValidationError, args: argparse.Namespace) -> str:
    """One line per bad setting, named as the user wrote it (an option or a variable)."""
    lines = []
    for e in exc.errors():
        name = str(e["loc"][0]) if e["loc"] else "settings"
        given = name in OPTION_OF and getattr(args, name, None) is not None
        where = OPTION_OF[name] if given else f"CC_EXECUTOR_{name.upper()}"
        lines.append(f"error: {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def banner(service: ExecutorService) -> str:
    """What a person starting the service needs: where, the dashboard, the token, how to stop."""
    s = service.settings
    host = service.url.split("//", 1)[1].rsplit("/ws", 1)[0]
    if host.startswith("0.0.0.0:"):
        host = "127.0.0.1:" + host.split(":", 1)[1]
    page = f"http://{host}/"
    from cc_executor import __version__

    return "\n".join(
        [
            f"cc-executor {__version__} is running at {service.url}",
            f"  dashboard:  {page}  (open it with the token: {page}#token=$(cat {s.token_file}))",
            f"  data dir:   {s.data_dir}",
            f"  token file: {s.token_file}",
            "  stop it with Ctrl-C (or SIGTERM): every task's process group is ended first",
        ]
    )


def start(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C. Not a `Command`: the service owns the event loop."""
    from cc_executor.engine.datadir import DataDirLocked
    from cc_executor.logs import setup_logging
    from cc_executor.server import run_service, settings_from_args

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        err(_settings_problem(exc, args))
        return EXIT_USAGE
    try:
        setup_logging(settings.log_level, settings.log_format, settings.log_file)
    except ValueError:
        err(
            f"error: CC_EXECUTOR_LOG_LEVEL: unknown level {settings.log_level!r} "
            f"(choose one of {', '.join(LOG_LEVELS)})"
        )
        return EXIT_USAGE

    def on_started(service: ExecutorService) -> None:
        if not args.quiet:
            sys.stderr.write(banner(service) + "\n")
            sys.stderr.flush()

    try:
        asyncio.run(run_service(settings, on_started))
    except DataDirLocked as exc:
        err(f"error: cannot start: {exc}")
        return EXIT_NOT_COMPLETED
    except OSError as exc:
        err(f"error: cannot start the service on {settings.host}:{settings.port}: {exc}")
        return EXIT_NOT_COMPLETED
    except KeyboardInterrupt:
        return 0
    return 0


def add_start_command(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `start`, with the options of `python -m cc_executor.server`."""
    from cc_executor.server import build_arg_parser

    start_parser = build_arg_parser("cc-executor start")
    p = sub.add_parser(
        "start",
        parents=[start_parser],
        conflict_handler="resolve",
        help="start the service in the foreground",
        description=start_parser.description,
        epilog="Exits 0 after Ctrl-C or SIGTERM, 1 if it cannot start, 2 for a bad option.",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="how much to log: " + ", ".join(LOG_LEVELS) + " (default INFO)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no banner on stderr")
    p.set_defaults(sync=start)
