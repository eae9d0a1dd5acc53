"""The `cc-executor` command line, built on the async client.

    cc-executor start [--host H] [--port P]       run the service in the foreground
    cc-executor status                             is it running? (exit 0/1), then its tasks
    cc-executor run -- CMD...                      run CMD, stream its output, exit with its code
    cc-executor claude "PROMPT"                    run a fresh Claude; the result goes to stdout
    cc-executor tasks | logs TASK [--follow] | pause|resume|cancel TASK
    cc-executor sessions list|create|send|status|logs|kill|coordinate|spawn-temp ...
    cc-executor workspaces list | diff TASK | remove TASK    git worktrees of tasks, sessions

Human-readable by default, `--json` for scripts. Exit codes: the task's own for `run`;
1 when `status` finds no service; 2 for an error the service reported (`error: ...`);
3 when the service cannot be reached; 130 after Ctrl-C (which cancels a started task).

Modules: `common` (what every command shares: exit codes, errors, output, the connection),
`options` (options generated from protocol models), `tasks`, `claude`, `sessions`,
`workspaces`, `start`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cc_executor import __version__
from cc_executor.cli.claude import add_claude_command
from cc_executor.cli.common import (
    EXIT_SERVICE_ERROR,
    TOKEN_HELP,
    URL_HELP,
    Command,
    exit_code_of,
    run_command,
)
from cc_executor.cli.sessions import add_sessions_parser
from cc_executor.cli.start import add_start_command
from cc_executor.cli.tasks import add_task_commands
from cc_executor.cli.workspaces import add_workspaces_parser

__all__ = ["build_parser", "exit_code_of", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cc-executor",
        description="Run commands and fresh Claude instances on the cc-executor service.",
        epilog="Exit codes: 2 = the service reported an error, 3 = service unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"cc-executor {__version__}")
    parser.add_argument("--url", help=URL_HELP)
    parser.add_argument("--token", help=TOKEN_HELP)
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    add_start_command(sub)
    add_task_commands(sub)
    add_claude_command(sub)
    add_sessions_parser(sub)
    add_workspaces_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand is None:
        parser.print_help(sys.stderr)
        return EXIT_SERVICE_ERROR
    if args.subcommand == "start":
        code: int = args.start(args)
        return code
    command: Command = args.func
    return run_command(command, args)
