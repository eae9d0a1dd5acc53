"""Turning request params into a TaskSpec: the one place that decides what a request runs.

`spec_for` is the one function every caller uses (the `execute` handlers, which the
service, the in-process transport and so the bridge's local fallback and the Python API
all run, and the session manager), so a task means the same thing whichever way it
arrives. A command's spec is built here; a Claude run's in `cc_executor.claude.runner`.
"""

from __future__ import annotations

import os

from cc_executor.config import Settings
from cc_executor.engine import TaskSpec, command_env
from cc_executor.policy import command_argv, without_service_secrets
from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ExecuteParams, ProtocolError
from cc_executor.workspaces import request_of

TaskParams = ExecuteParams | ExecuteClaudeParams
"""What starts one task: a command (`execute`) or a fresh Claude run (`execute_claude`)."""


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
    cwd = check_cwd(params.cwd)
    argv = command_argv(params, settings, cwd)  # the allow-list: policy.py
    return TaskSpec(
        command=params.command,
        argv=argv,
        env=without_service_secrets(command_env(params.env)),
        cwd=cwd,
        timeout=params.timeout,
        idle_timeout=params.idle_timeout,
        name=params.name,
        extra=request_of(params),  # a worktree, made by the engine's workspace hook
    )


def spec_for(params: TaskParams, settings: Settings) -> TaskSpec:
    """The TaskSpec of a request: a command's, or a fresh `claude -p` run's."""
    if params.node is not None and params.node != settings.node and not settings.redis_url:
        # In a cluster the routes forward a pinned task to its node (cc_executor/cluster).
        raise ProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"node: {params.node!r} is not this node ({settings.node}); there is no cluster",
            {"node": params.node},
        )
    if isinstance(params, ExecuteClaudeParams):
        from cc_executor.claude.runner import claude_spec  # it imports this module

        return claude_spec(params, settings)
    return command_spec(params, settings)
