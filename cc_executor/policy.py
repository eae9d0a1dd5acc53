"""What may run: the command allow-list, applied before anything is spawned.

With `allowed_commands` unset every command runs (a string through the configured shell).
With it set, a command runs only if its program is listed: a string command is split
without a shell and refused if it holds shell metacharacters, path tricks must match a
listed path exactly, a relative program path is resolved against the task's working
directory (so `./run.sh` in a client-chosen directory is not the listed `./run.sh`), and
the environment a request sets is limited to the names in `allowed_env`: any other name
might change what a program loads (`LD_PRELOAD`, `PYTHONUSERBASE`, `HOME`...), and no
deny-list can name them all.

`execute_claude` runs a listed `claude`, which itself starts programs from its options and
its settings; `claude_run` refuses (or pins) whatever of that the allow-list cannot
constrain. Each refusal names its rule (`data.rule`) and the setting that would allow it.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ExecuteParams, ProtocolError

if TYPE_CHECKING:
    from cc_executor.config import Settings

SHELL_METACHARACTERS = frozenset(";&|<>$`\\\n\r(){}")

DEFAULT_ALLOWED_ENV = (
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
)
"""Names a request may set while the allow-list is on: they change how text looks, never
what runs. `NAME*` matches every name that starts with NAME."""

SERVICE_ENV = frozenset({"CC_EXECUTOR_SESSION_ID", "CC_EXECUTOR_SESSION_NAME"})
"""Set by the service itself (a session's turns): always allowed."""

SERVICE_SECRETS = ("CC_EXECUTOR_AUTH_TOKEN", "CC_EXECUTOR_TOKEN", "CC_EXECUTOR_REDIS_URL")
"""The service's own secrets (its token, the bridge's alias of it, a Redis URL that may hold
a password): never passed on to a child it runs (`engine.process.spawn` drops them)."""

# Rules, as named in a refusal's `data.rule` (docs/configuration.md lists them).
RULE_PROGRAM = "program"
RULE_SHELL = "shell_syntax"
RULE_ENV = "env"
RULE_MCP = "mcp_server"
RULE_PROJECT_SETTINGS = "project_settings"
RULE_PERMISSIONS = "permission_bypass"


def _refuse(message: str, rule: str, **data: object) -> ProtocolError:
    return ProtocolError(ErrorCode.COMMAND_NOT_ALLOWED, message, {"rule": rule, **data})


def without_service_secrets(env: dict[str, str]) -> dict[str, str]:
    """A task's environment minus the service's secrets (its auth token)."""
    for name in SERVICE_SECRETS:
        env.pop(name, None)
    return env


# ------------------------------------------------------------------ programs


def absolute_entries(allowed: Iterable[str], base: str | None = None) -> list[str]:
    """Listed paths made absolute against `base` (the service's cwd at start-up); bare
    names stay names, found on PATH when a request names them."""
    base = base or os.getcwd()
    return [
        os.path.normpath(os.path.join(base, os.path.expanduser(a))) if "/" in a else a
        for a in allowed
    ]


def program_allowed(program: str, allowed: list[str], cwd: str | None = None) -> bool:
    """Is `program` listed? A path must be a listed path: relative to `cwd` (the task's
    working directory, default the service's), with no `..` (the kernel resolves
    `dir/link/../ls` through the symlink, normpath does not)."""
    if "/" in program:
        if ".." in program.split("/"):
            return False
        return _absolute(program, cwd) in {os.path.normpath(a) for a in allowed if "/" in a}
    return program in allowed


def _absolute(program: str, cwd: str | None) -> str:
    return os.path.normpath(os.path.join(cwd or os.getcwd(), program))


def _pin(program: str, cwd: str | None, what: str) -> str:
    """The absolute path exec will run, so nothing later (cwd, PATH) changes it."""
    if "/" in program:
        return program if os.path.isabs(program) else _absolute(program, cwd)
    found = shutil.which(program)
    if found is None:
        raise _refuse(f"{what} {program!r} is allowed but not found on PATH", RULE_PROGRAM)
    return found


def _check_program(program: str, allowed: list[str], cwd: str | None, what: str) -> str:
    if not program_allowed(program, allowed, cwd):
        raise _refuse(
            f"{what} {program!r} is not in allowed_commands",
            RULE_PROGRAM,
            program=program,
            allowed=allowed,
        )
    return _pin(program, cwd, what)


# ------------------------------------------------------------------ environment


def env_name_allowed(name: str, allowed_env: Iterable[str]) -> bool:
    if name in SERVICE_ENV:
        return True
    for entry in allowed_env:
        if entry.endswith("*") and name.startswith(entry[:-1]):
            return True
        if name == entry:
            return True
    return False


def check_env(
    env: Mapping[str, str] | None,
    allowed: list[str] | None,
    allowed_env: Iterable[str] = DEFAULT_ALLOWED_ENV,
    what: str = "environment variable",
) -> None:
    """While the allow-list is on, a request may set only the names in `allowed_env`."""
    if allowed is None or not env:
        return
    names = list(allowed_env)
    for key in env:
        if not env_name_allowed(key, names):
            raise _refuse(
                f"{what} {key!r} is not in allowed_env: while the command allow-list is on, "
                "a request may set only the variables listed there",
                RULE_ENV,
                key=key,
                setting="allowed_env",
            )


# ------------------------------------------------------------------ execute


def resolve_argv(
    command: str | list[str],
    shell: str,
    allowed: list[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | None = None,
    allowed_env: Iterable[str] = DEFAULT_ALLOWED_ENV,
) -> list[str]:
    """The argv to exec for a command, or ProtocolError(COMMAND_NOT_ALLOWED)."""
    if allowed is None:
        return [shell, "-c", command] if isinstance(command, str) else list(command)

    check_env(env, allowed, allowed_env)
    if isinstance(command, str):
        bad = sorted({c for c in command if c in SHELL_METACHARACTERS})
        if bad:
            raise _refuse(
                "shell metacharacters are not allowed while the command allow-list is on "
                "(the command is split without a shell)",
                RULE_SHELL,
                characters=bad,
            )
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise _refuse(f"cannot split command: {exc}", RULE_SHELL) from None
        if not argv:
            raise _refuse("empty command", RULE_SHELL)
    else:
        argv = list(command)
    argv[0] = _check_program(argv[0], allowed, cwd, "program")
    return argv


def command_argv(params: ExecuteParams, settings: Settings, cwd: str | None) -> list[str]:
    """`resolve_argv` for an `execute` request, with the settings' allow-lists."""
    return resolve_argv(
        params.command,
        settings.shell,
        settings.allowed_commands,
        params.env,
        cwd=cwd,
        allowed_env=settings.allowed_env,
    )


# ------------------------------------------------------------------ execute_claude

PROJECT_SETTINGS = (".claude/settings.json", ".claude/settings.local.json")
"""Files of a working directory whose hooks the Claude CLI runs (project, local)."""

_STDIO_KEYS = frozenset({"type", "command", "args", "env"})
_REMOTE_TYPES = frozenset({"http", "sse", "ws"})


@dataclass(frozen=True, slots=True)
class ClaudeRun:
    """What the allow-list makes of one `execute_claude`: the binary to exec, the MCP
    config as checked (inline JSON, so a file changed later is not read), and flags that
    keep the CLI to what was checked."""

    claude_bin: str
    mcp_config: str | dict[str, Any] | None
    flags: tuple[str, ...] = ()


def claude_run(params: ExecuteClaudeParams, settings: Settings, cwd: str | None) -> ClaudeRun:
    """Check an `execute_claude` against the allow-list (nothing to check when it is off)."""
    allowed = settings.allowed_commands
    if allowed is None:
        return ClaudeRun(settings.claude_bin, params.mcp_config)
    binary = settings.claude_bin
    if not (program_allowed(binary, allowed) or program_allowed(os.path.basename(binary), allowed)):
        raise _refuse(
            f"the claude binary {binary!r} is not in allowed_commands",
            RULE_PROGRAM,
            program=binary,
            allowed=allowed,
        )
    check_env(params.env, allowed, settings.allowed_env)  # the same env steers claude
    _check_permissions(params, settings)
    flags = ["--strict-mcp-config"]  # no .mcp.json of the working directory
    if not _trusted(cwd, settings.claude_trusted_dirs):
        _check_project_settings(cwd)
        # A settings file written after this check (by this very run) is not read either.
        flags += ["--setting-sources", "user"]
    mcp = _checked_mcp_config(params.mcp_config, settings, cwd)
    return ClaudeRun(_pin(binary, None, "the claude binary"), mcp, tuple(flags))


def _check_permissions(params: ExecuteClaudeParams, settings: Settings) -> None:
    if settings.claude_allow_permission_bypass:
        return
    asked = None
    if params.skip_permissions:
        asked = "skip_permissions"
    elif params.permission_mode in ("bypassPermissions", "auto"):
        asked = f"permission_mode {params.permission_mode!r}"
    else:
        for tool in params.allowed_tools or ():
            if tool.strip() in ("Bash", "Bash(*)", "Bash(:*)"):
                asked = f"allowed_tools {tool!r} (any shell command)"
                break
    if asked is not None:
        raise _refuse(
            f"{asked} lets claude run any program, which the command allow-list cannot "
            "constrain; set claude_allow_permission_bypass to allow it",
            RULE_PERMISSIONS,
            setting="claude_allow_permission_bypass",
        )


def _trusted(cwd: str | None, trusted_dirs: Iterable[Path]) -> bool:
    if cwd is None:
        return True  # the service's own directory: the operator's
    real = os.path.realpath(cwd)
    for d in trusted_dirs:
        root = os.path.realpath(os.path.expanduser(str(d)))
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _check_project_settings(cwd: str | None) -> None:
    assert cwd is not None
    for rel in PROJECT_SETTINGS:
        if os.path.lexists(os.path.join(cwd, rel)):
            raise _refuse(
                f"the working directory {cwd!r} has {rel}, whose hooks claude would run; "
                "list the directory in claude_trusted_dirs to allow its project settings",
                RULE_PROJECT_SETTINGS,
                file=os.path.join(cwd, rel),
                setting="claude_trusted_dirs",
            )


def _checked_mcp_config(
    config: str | dict[str, Any] | None, settings: Settings, cwd: str | None
) -> str | None:
    """Every MCP server of the config, checked; returned as inline JSON."""
    if config is None:
        return None
    data = _load_mcp_config(config, cwd)
    servers = data.get("mcpServers")
    if not isinstance(servers, dict):
        raise _invalid_mcp("it must be an object with an `mcpServers` object")
    assert settings.allowed_commands is not None
    checked: dict[str, Any] = {}
    for name, server in servers.items():
        if not isinstance(server, dict):
            raise _invalid_mcp(f"server {name!r} must be an object")
        kind = server.get("type", "stdio")
        if kind in _REMOTE_TYPES:
            checked[name] = server  # a URL: nothing is started on this machine
            continue
        if kind != "stdio" or not isinstance(server.get("command"), str):
            raise _invalid_mcp(f"server {name!r}: unknown type {kind!r} or no command")
        unknown = sorted(set(server) - _STDIO_KEYS)
        if unknown:
            raise _refuse(
                f"MCP server {name!r} has keys the allow-list cannot check: {unknown}",
                RULE_MCP,
                server=name,
            )
        program = server["command"]
        try:
            pinned = _check_program(
                program, settings.allowed_commands, cwd, f"MCP server {name!r} command"
            )
        except ProtocolError as exc:
            exc.data = {**(exc.data or {}), "rule": RULE_MCP, "server": name}
            raise
        env = server.get("env")
        if env is not None and not isinstance(env, dict):
            raise _invalid_mcp(f"server {name!r}: env must be an object")
        try:
            check_env(env, settings.allowed_commands, settings.allowed_env, "MCP server env")
        except ProtocolError as exc:
            exc.data = {**(exc.data or {}), "rule": RULE_MCP, "server": name}
            raise
        checked[name] = {**server, "command": pinned}
    return orjson.dumps({**data, "mcpServers": checked}).decode()


def _load_mcp_config(config: str | dict[str, Any], cwd: str | None) -> dict[str, Any]:
    if isinstance(config, dict):
        return config
    try:
        data = orjson.loads(config)
    except orjson.JSONDecodeError:
        path = os.path.join(cwd or os.getcwd(), os.path.expanduser(config))
        try:
            with open(path, "rb") as f:
                data = orjson.loads(f.read(4 * 1024 * 1024))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise _invalid_mcp(f"cannot read {config!r} as a JSON file: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid_mcp("it must be a JSON object")
    return data


def _invalid_mcp(why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_PARAMS, f"mcp_config: {why}", {"field": "mcp_config"})
