"""`cc-executor start`: run the service in the foreground (its options are the service's)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pydantic import ValidationError

from cc_executor.cli.common import EXIT_SERVICE_ERROR, err


def start(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C. Not a `Command`: the service owns the event loop."""
    from cc_executor.logs import setup_logging
    from cc_executor.server import run_service, settings_from_args

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        err(f"error: invalid settings: {exc}")
        return EXIT_SERVICE_ERROR
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    try:
        asyncio.run(run_service(settings))
    except OSError as exc:
        err(f"error: cannot start the service on {settings.host}:{settings.port}: {exc}")
        return 1
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
    )
    p.set_defaults(start=start)
