"""What may run: the command allow-list, applied before anything is spawned.

With `allowed_commands` unset every command runs (a string through the configured shell).
With it set, a command runs only if its program is listed: a string command is split
without a shell and refused if it holds shell metacharacters, path tricks must match a
listed path exactly, and environment overrides that change what a program loads or which
binary a name resolves to are refused.
"""

from __future__ import annotations

import os
import shlex
import shutil

from cc_executor.protocol import ErrorCode, ProtocolError

SHELL_METACHARACTERS = frozenset(";&|<>$`\\\n\r(){}")

# Overrides that change which binary a name resolves to or what it loads at start.
# BASH_FUNC_<name>%% is how bash imports exported functions: it would redefine any
# command an allowed bash script runs.
_DANGEROUS_ENV_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_")
_DANGEROUS_ENV_KEYS = frozenset(
    {
        "PATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "IFS",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "NODE_OPTIONS",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "RUBYLIB",
        "PERLLIB",
        "GCONV_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
    }
)


def _refuse(message: str, **data: object) -> ProtocolError:
    return ProtocolError(ErrorCode.COMMAND_NOT_ALLOWED, message, data or None)


def program_allowed(program: str, allowed: list[str]) -> bool:
    if "/" in program:
        # A path must be listed as that exact path: "/tmp/x/ls" is not "ls". No "..": the
        # kernel resolves "dir/link/../ls" through the symlink, normpath does not.
        if ".." in program.split("/"):
            return False
        return os.path.normpath(program) in {os.path.normpath(a) for a in allowed if "/" in a}
    return program in allowed


def check_env(env: dict[str, str] | None, allowed: list[str] | None) -> None:
    """Refuse environment overrides that change what runs, while the allow-list is on."""
    if allowed is None or not env:
        return
    for key in env:
        if key in _DANGEROUS_ENV_KEYS or key.startswith(_DANGEROUS_ENV_PREFIXES):
            raise _refuse(
                f"environment override {key!r} is not allowed while the command allow-list is on",
                key=key,
            )


def resolve_argv(
    command: str | list[str],
    shell: str,
    allowed: list[str] | None,
    env: dict[str, str] | None = None,
) -> list[str]:
    """The argv to exec for a command, or ProtocolError(COMMAND_NOT_ALLOWED)."""
    if allowed is None:
        return [shell, "-c", command] if isinstance(command, str) else list(command)

    check_env(env, allowed)
    if isinstance(command, str):
        bad = sorted({c for c in command if c in SHELL_METACHARACTERS})
        if bad:
            raise _refuse(
                "shell metacharacters are not allowed while the command allow-list is on "
                "(the command is split without a shell)",
                characters=bad,
            )
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise _refuse(f"cannot split command: {exc}") from None
        if not argv:
            raise _refuse("empty command")
    else:
        argv = list(command)
    program = argv[0]
    if not program_allowed(program, allowed):
        raise _refuse(
            f"program {program!r} is not in allowed_commands", program=program, allowed=allowed
        )
    if "/" not in program:
        # Pin the binary now, so nothing later (cwd, PATH) changes what runs.
        found = shutil.which(program)
        if found is None:
            raise _refuse(f"program {program!r} is allowed but not found on PATH")
        argv[0] = found
    return argv
