"""Pure helpers for running `claude -p`: argv and env building, stream-json parsing, errors.

Nothing here spawns processes or touches files; the engine does the I/O and feeds bytes in.
"""

from __future__ import annotations

from cc_executor.claude.argv import build_argv, build_env
from cc_executor.claude.errors import ClaudeError, ErrorKind, classify
from cc_executor.claude.stream import ClaudeStreamState, LineSplitter

__all__ = [
    "ClaudeError",
    "ClaudeStreamState",
    "ErrorKind",
    "LineSplitter",
    "build_argv",
    "build_env",
    "classify",
]
