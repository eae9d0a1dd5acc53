"""`cc-executor claude "PROMPT"`: run a fresh Claude; progress to stderr, the result to stdout.

Its Claude options are generated from `ClaudeOptions` (cli/options.py), so they are the
ones `execute_claude` takes, with the same names, checks and descriptions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cc_executor.cli.common import COMMON, CancelOnSignal, connected, err, one_line, print_json
from cc_executor.cli.options import add_options, options_from
from cc_executor.protocol import (
    ClaudeOptions,
    ExecuteClaudeParams,
    Notification,
    TaskStatus,
    WorkspaceOptions,
)

RUN_FIELDS = ("resume", "fork_session", "cwd", "timeout", "idle_timeout", "name")
"""The `execute_claude` params other than the Claude options that the command offers."""


def render_event(ev: dict[str, Any]) -> str | None:
    """One line (or a few) of progress for a `claude.event`, None for events not shown."""
    etype, subtype = ev.get("type"), ev.get("subtype")
    if etype == "system" and subtype == "init":
        tools = ev.get("tools") or []
        return f"[session {ev.get('session_id')} | model {ev.get('model')} | {len(tools)} tools]"
    if etype == "system" and subtype == "api_retry":
        return (
            f"[api retry {ev.get('attempt')}/{ev.get('max_retries')}: "
            f"{ev.get('error') or ev.get('error_status')}]"
        )
    if etype == "assistant":
        lines = []
        text = (ev.get("text") or "").strip()
        if text:
            lines.append(text)
        lines.extend(f"[tool: {u.get('name')}]" for u in ev.get("tool_uses") or [])
        if ev.get("error"):
            lines.append(f"[error: {ev['error']}]")
        return "\n".join(lines) or None
    if etype == "user":
        lines = []
        for r in ev.get("tool_results") or []:
            content = (r.get("content") or "").strip().splitlines()
            first = one_line(content[0], 120) if content else ""
            label = "tool error" if r.get("is_error") else "tool result"
            lines.append(f"[{label}: {first}]")
        return "\n".join(lines) or None
    if etype == "rate_limit_event":
        return f"[rate limit: {ev.get('status')}, resets at {ev.get('resets_at')}]"
    return None


async def _cmd_claude(args: argparse.Namespace) -> int:
    params = options_from(args, ClaudeOptions)
    params.update(options_from(args, ExecuteClaudeParams, only=RUN_FIELDS))
    params.update(options_from(args, WorkspaceOptions))
    async with connected(args) as client, CancelOnSignal(client) as guard:
        handle = await client.execute_claude(args.prompt, keep_events=not args.json, **params)
        while True:
            guard.started(handle.task_id)
            if not args.json:
                async for ev in handle.events():
                    if ev["method"] == Notification.CLAUDE_EVENT:
                        line = render_event(ev["params"].get("event") or {})
                        if line:
                            err(line)
            completed = await handle.wait()
            retry = completed.get("retried_by")
            if not retry:
                break
            # `--retries` (issue 16): the next attempt exists already; follow it from its start
            if not args.json:
                err(f"[{completed.get('error_kind')}: retrying as task {retry}]")
            handle = await client.subscribe(retry, 0, 0, keep_events=not args.json)
        rec = await client.status(handle.task_id)
    ok = rec.get("status") == TaskStatus.COMPLETED and not rec.get("is_error")
    if args.json:
        print_json(rec)
    else:
        result = rec.get("result")
        # A failure's result is its error text (shown below); partial text of a run that
        # timed out is still worth having.
        if result is not None and (ok or (rec.get("partial") and guard.signum is None)):
            sys.stdout.write(result if result.endswith("\n") else result + "\n")
            sys.stdout.flush()
        summary = [str(rec.get("status"))]
        if rec.get("num_turns") is not None:
            summary.append(f"{rec['num_turns']} turn(s)")
        if rec.get("total_cost_usd") is not None:
            summary.append(f"${rec['total_cost_usd']}")
        if rec.get("claude_session_id"):
            summary.append(f"session {rec['claude_session_id']}")
        summary.append(f"task {rec.get('task_id')}")
        err("[" + " | ".join(summary) + "]")
        if not ok and guard.signum is None:
            kind = rec.get("error_kind")
            err(f"error{f' ({kind})' if kind else ''}: {rec.get('error') or rec.get('status')}")
            if rec.get("error_hint"):
                err(f"hint: {rec['error_hint']}")
    if guard.signum is not None:
        return guard.exit_code
    return 0 if ok else 1


def add_claude_command(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `claude PROMPT [options]`."""
    p = sub.add_parser(
        "claude",
        parents=COMMON,
        help="run a fresh Claude on a prompt; the result text goes to stdout",
        description=(
            "Run `claude -p PROMPT` as a task. Progress (assistant text, tool uses) goes to "
            "stderr, the final result to stdout. Exit 0 if it completed without error."
        ),
    )
    p.add_argument("prompt", help=ExecuteClaudeParams.model_fields["prompt"].description)
    add_options(p.add_argument_group("Claude options"), ClaudeOptions)
    run = p.add_argument_group("the run")
    add_options(run, ExecuteClaudeParams, only=RUN_FIELDS)
    add_options(p.add_argument_group("workspace"), WorkspaceOptions)
    p.set_defaults(func=_cmd_claude)
