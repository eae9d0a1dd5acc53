"""How every tool answers: structured results, `is_error` failures, progress, cancellation.

Shared by the task tools (`mcp_bridge.server`) and the session tools
(`mcp_bridge.session_tools`), so both answer the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ValidationError

from cc_executor.protocol import ProtocolError
from cc_executor.tasklist import TemplateError
from cc_executor.transport import ExecutorConnectionError
from mcp_bridge.failures import ToolFailure, failure
from mcp_bridge.watch import Report

log = logging.getLogger("mcp_bridge.server")

JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


def ok(data: dict[str, Any]) -> CallToolResult:
    text = orjson.dumps(data, option=JSON_OPTS, default=str).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def error(exc: BaseException) -> CallToolResult:
    f = failure(exc)
    if isinstance(exc, ExecutorConnectionError):  # expected: the service is down or went away
        log.warning("tool call failed: %s", f.message)
    elif not isinstance(exc, ToolFailure | ProtocolError | ValidationError | TemplateError):
        log.exception("tool failed unexpectedly", exc_info=exc)
    return CallToolResult(
        content=[TextContent(type="text", text=f"Error: {f.message}")],
        structured_content=f.to_dict(),
        is_error=True,
    )


def reporter(ctx: Context) -> Report:
    """Progress notifications for this call (the SDK drops them if the client gave no token).

    The first one goes out only once a task has run for `progress_interval`, so quick
    calls pay nothing for it.
    """
    count = 0

    async def report(message: str) -> None:
        nonlocal count
        count += 1
        await ctx.report_progress(count, None, message)

    return report


def peer_cancelled(ctx: Context) -> Callable[[], bool]:
    """Whether the client sent notifications/cancelled for this call (not a shutdown).

    The SDK cancels the tool's scope in both cases; only the request's dispatch context
    knows which. If that ever moves, count every cancellation as the client's.
    """

    def check() -> bool:
        try:
            outbound = ctx.request_context.session._request_outbound
            return bool(outbound.cancel_requested.is_set())
        except Exception:
            return True

    return check


async def guard(call: Awaitable[dict[str, Any]]) -> CallToolResult:
    try:
        return ok(await call)
    except Exception as exc:
        return error(exc)


def runs(title: str) -> ToolAnnotations:
    """Tools that run things: they can change anything the command can reach."""
    return ToolAnnotations(
        title=title,
        read_only_hint=False,
        destructive_hint=True,
        idempotent_hint=False,
        open_world_hint=True,
    )


def reads(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    )
