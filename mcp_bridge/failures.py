"""How a failure reaches the agent: `ToolFailure`, and `failure` turning the project's errors
(JSON-RPC errors, an unreachable service, bad params, bad placeholders) into one.

Shared by the task tools, the task lists and the session tools, so they fail alike.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cc_executor.problems import problems
from cc_executor.protocol import ErrorCode, ProtocolError
from cc_executor.tasklist import TemplateError
from cc_executor.transport import ExecutorConnectionError, ServiceUnavailable


class ToolFailure(Exception):
    """A tool call that failed in a way the agent should read: becomes an is_error result."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"error": self.message}
        if self.code is not None:
            d["code"] = self.code
        if self.data is not None:
            d["data"] = self.data
        return d


def invalid(
    tool: str | None, lines: list[str], code: int = ErrorCode.INVALID_PARAMS
) -> ToolFailure:
    """Bad arguments, a line per problem (`cc_executor.problems`), under one heading."""
    head = f"invalid arguments for {tool}" if tool else "invalid arguments"
    lines = lines or ["invalid arguments"]
    text = f"{head}: {lines[0]}" if len(lines) == 1 else head + ":\n" + "\n".join(lines)
    return ToolFailure(text, code, {"problems": lines})


def failure(exc: BaseException) -> ToolFailure:
    """The project's errors as a message an agent can act on."""
    if isinstance(exc, ToolFailure):
        return exc
    if isinstance(exc, ProtocolError):
        msg = exc.message
        if isinstance(exc.data, dict) and "errors" in exc.data:
            msg = f"{msg}: {exc.data['errors']}"
        elif isinstance(exc.data, list) and all(
            isinstance(e, dict) and "msg" in e for e in exc.data
        ):  # the service's -32602 details: [{loc, msg}, ...]
            return invalid(None, problems(exc.data), exc.code)
        return ToolFailure(msg, exc.code, exc.data)
    if isinstance(exc, ServiceUnavailable):
        return ToolFailure(
            f"the cc-executor service is unreachable: {exc}", ErrorCode.SERVICE_UNAVAILABLE
        )
    if isinstance(exc, ExecutorConnectionError):
        return ToolFailure(
            f"lost the connection to the cc-executor service: {exc}. A task it was running "
            "may still be running: check it with get_execution_status.",
            ErrorCode.SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, ValidationError):
        return invalid(None, problems(exc.errors(include_url=False)))
    if isinstance(exc, TemplateError):
        return ToolFailure(str(exc), ErrorCode.INVALID_PARAMS)
    return ToolFailure(f"{type(exc).__name__}: {exc}", ErrorCode.INTERNAL_ERROR)
