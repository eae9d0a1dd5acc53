"""`cc-executor completion bash|zsh`: a shell completion script generated from the parser.

shtab turns the argparse parser into a static script, so completing costs no Python start
and every subcommand and option, generated ones included, is there.
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh", "tcsh")


def add_completion_command(
    sub: argparse._SubParsersAction[Any], parser: argparse.ArgumentParser
) -> None:
    """Add `completion SHELL`, which prints the script for `parser`."""
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or tcsh)",
        description=(
            'Print a completion script. bash: eval "$(cc-executor completion bash)" in '
            "~/.bashrc; zsh: cc-executor completion zsh > ~/.zfunc/_cc-executor (a directory "
            "in $fpath)."
        ),
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")

    def run(args: argparse.Namespace) -> int:
        import shtab

        print(shtab.complete(parser, shell=args.shell))
        return 0

    p.set_defaults(sync=run)
