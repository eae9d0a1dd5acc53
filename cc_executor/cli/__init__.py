"""The `cc-executor` command line, built on the async client.

    cc-executor start [--host H] [--port P]       run the service in the foreground
    cc-executor status                             is it running? (exit 0/1), then its tasks
    cc-executor run -- CMD...                      run CMD, stream its output, exit with its code
    cc-executor claude "PROMPT"                    run a fresh Claude; the result goes to stdout
    cc-executor tasks | logs TASK [--follow] | pause|resume|cancel TASK
    cc-executor sessions list|create|send|status|logs|kill|coordinate|spawn-temp ...
    cc-executor mcp install                        register the MCP server with Claude Code
    cc-executor completion bash|zsh                a shell completion script
    cc-executor workspaces list | diff TASK | remove TASK    git worktrees of tasks, sessions

TASK is a task id, a unique prefix of one, or a task's name. Human-readable by default,
`--json` for scripts (errors too, on stdout). Exit codes: `common.EXIT_CODES_HELP`.

Modules: `common` (what every command shares: exit codes, errors, output, the connection),
`refs` (TASK arguments), `options` (options generated from protocol models), `tasks`,
`table` (the task table), `claude`, `sessions`, `workspaces`, `start`, `mcp`, `completion`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cc_executor import __version__
from cc_executor.cli.claude import add_claude_command
from cc_executor.cli.common import (
    EXIT_CODES_HELP,
    EXIT_USAGE,
    TOKEN_FILE_HELP,
    TOKEN_HELP,
    URL_HELP,
    CliParser,
    Command,
    exit_code_of,
    run_command,
    ws_url,
)
from cc_executor.cli.completion import add_completion_command
from cc_executor.cli.mcp import add_mcp_command
from cc_executor.cli.sessions import add_sessions_parser
from cc_executor.cli.start import add_start_command
from cc_executor.cli.tasks import add_task_commands
from cc_executor.cli.workspaces import add_workspaces_parser

__all__ = ["build_parser", "exit_code_of", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="cc-executor",
        description="Run commands and fresh Claude instances on the cc-executor service.",
        epilog=EXIT_CODES_HELP.capitalize(),
    )
    parser.add_argument("--version", action="version", version=f"cc-executor {__version__}")
    parser.add_argument("--url", type=ws_url, help=URL_HELP)
    parser.add_argument("--token", help=TOKEN_HELP)
    parser.add_argument("--token-file", metavar="PATH", help=TOKEN_FILE_HELP)
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    add_start_command(sub)
    add_task_commands(sub)
    add_claude_command(sub)
    add_sessions_parser(sub)
    add_workspaces_parser(sub)
    add_mcp_command(sub)
    add_completion_command(sub, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "sync", None) is not None:  # start, mcp, completion: no connection
        code: int = args.sync(args)
        return code
    command: Command = args.func
    return run_command(command, args)
