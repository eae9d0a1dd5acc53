"""Build the argv and environment of one `claude -p` run from `ExecuteClaudeParams`.

The CLI parses its arguments with commander.js: `-p/--print` is a boolean flag and the prompt
is the positional operand. Options that take a value take the next argument even when it
starts with `-`, but several options are variadic (`--allowedTools`, `--disallowedTools`,
`--add-dir`, `--mcp-config`) and would swallow a following positional. So the prompt goes last,
after `--`, which ends option parsing (also for a pending variadic option): a prompt that starts
with `-` or holds quotes or newlines arrives intact, and no shell is ever involved.

`--resume` takes an *optional* value, and commander does not give an optional value an
argument that starts with `-`: `--resume --version` is two options. So the session id goes
in the same argument (`--resume=<id>`), and it must look like a session id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import orjson

from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ProtocolError

ALWAYS_STRIPPED_ENV = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")
"""Set by a parent Claude Code session; a child `claude` refuses to start when it sees them."""

API_KEY_ENV = "ANTHROPIC_API_KEY"

SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What `resume` may be: a Claude session id (a UUID), never something that reads as an option."""


def build_argv(
    params: ExecuteClaudeParams,
    claude_bin: str,
    prompt: str | None = None,
    flags: Sequence[str] = (),
) -> list[str]:
    """Return the argv list for `claude -p` with stream-json output.

    `prompt` overrides `params.prompt` (a pre-execute hook may have appended text); `flags`
    go before the prompt (the allow-list's, see `policy.claude_run`). Empty strings and
    empty lists count as unset. The prompt is always the final argument, after `--`.
    """
    argv = [claude_bin, "-p", "--output-format", "stream-json", "--verbose"]
    if params.model:
        argv += ["--model", params.model]
    if params.allowed_tools:
        argv += ["--allowedTools", ",".join(params.allowed_tools)]
    if params.disallowed_tools:
        argv += ["--disallowedTools", ",".join(params.disallowed_tools)]
    if params.permission_mode:
        argv += ["--permission-mode", params.permission_mode]
    if params.skip_permissions:
        argv.append("--dangerously-skip-permissions")
    if params.max_turns is not None:
        argv += ["--max-turns", str(params.max_turns)]
    if params.max_budget_usd is not None:
        argv += ["--max-budget-usd", repr(float(params.max_budget_usd))]
    if params.mcp_config is not None:
        mcp = params.mcp_config
        argv += ["--mcp-config", mcp if isinstance(mcp, str) else orjson.dumps(mcp).decode()]
    if params.append_system_prompt:
        argv += ["--append-system-prompt", params.append_system_prompt]
    for directory in params.add_dirs or ():
        argv += ["--add-dir", directory]
    if params.resume:
        if not SESSION_ID.fullmatch(params.resume):
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"resume {params.resume[:60]!r} is not a Claude session id "
                "(letters, digits, '.', '_', '-'; not starting with '-')",
                {"field": "resume"},
            )
        argv.append(f"--resume={params.resume}")
        if params.fork_session:
            argv.append("--fork-session")
    argv += flags
    argv += ["--", params.prompt if prompt is None else prompt]
    return argv


def build_env(
    base: Mapping[str, str], extra: Mapping[str, str] | None, strip_api_key: bool
) -> dict[str, str]:
    """Return the child's environment: `base` updated with `extra`, minus nesting markers.

    `CLAUDECODE` and `CLAUDE_CODE_ENTRYPOINT` are always removed (even from `extra`), else the
    child refuses to run as a nested session. `ANTHROPIC_API_KEY` is removed when
    `strip_api_key`, so the CLI uses its own login instead of billing a stray key.
    """
    env = dict(base)
    if extra:
        env.update(extra)
    for name in ALWAYS_STRIPPED_ENV:
        env.pop(name, None)
    if strip_api_key:
        env.pop(API_KEY_ENV, None)
    return env
