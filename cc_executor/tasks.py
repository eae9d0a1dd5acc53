"""Turning request params into a TaskSpec: the one place that decides what a request runs.

The service's handlers, the bridge's local fallback and the Python API all build specs
here, so a command means the same thing whichever way it arrives.
"""

from __future__ import annotations

import os

from cc_executor.config import Settings
from cc_executor.engine import TaskSpec, command_env
from cc_executor.policy import resolve_argv
from cc_executor.protocol import ErrorCode, ExecuteParams, ProtocolError
from cc_executor.workspaces import request_of


def check_cwd(cwd: str | None) -> str | None:
    if cwd is None:
        return None
    path = os.path.expanduser(cwd)
    if not os.path.isdir(path):
        raise ProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"working directory {cwd!r} does not exist or is not a directory",
            {"cwd": cwd},
        )
    return os.path.abspath(path)


def command_spec(params: ExecuteParams, settings: Settings) -> TaskSpec:
    argv = resolve_argv(params.command, settings.shell, settings.allowed_commands, params.env)
    return TaskSpec(
        command=params.command,
        argv=argv,
        env=command_env(params.env),
        cwd=check_cwd(params.cwd),
        timeout=params.timeout,
        idle_timeout=params.idle_timeout,
        name=params.name,
        extra=request_of(params),  # a worktree, made by the engine's workspace hook
    )
