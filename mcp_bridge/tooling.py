"""`ToolServer`: the SDK's `MCPServer` with tools as an agent should meet them.

- a tool's description is its docstring dedented (`inspect.cleandoc`), not indented by
  the source it was written in;
- its input schema says `additionalProperties: false`, and an argument it does not take
  is refused by name (`unknown argument 'foo' for execute_task`), never silently dropped;
- arguments the schema refuses come back like every other failure (an `is_error` result,
  `code` -32602), one line per problem naming the argument as the agent wrote it
  (`cc_executor.problems`), not as pydantic's report on the tool's internal model.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp_types import CallToolResult, Icon, InputRequiredResult, Tool, ToolAnnotations
from pydantic import ValidationError

from cc_executor.problems import problems, suggest
from cc_executor.protocol import ErrorCode
from mcp_bridge.failures import ToolFailure, invalid
from mcp_bridge.results import error

log = logging.getLogger("mcp_bridge.server")


class ToolServer(MCPServer):
    """`MCPServer` whose tools are dedented, strict about their argument names, and say
    what is wrong with an argument in words (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arguments: dict[str, tuple[str, ...]] = {}  # tool -> the arguments it takes

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        tool = name or fn.__name__
        super().add_tool(
            fn,
            name=tool,
            title=title,
            description=inspect.cleandoc(description or fn.__doc__ or ""),
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )
        context = find_context_parameter(fn)
        self._arguments[tool] = tuple(
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.name != context and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    async def list_tools(self) -> list[Tool]:
        tools = await super().list_tools()
        for t in tools:
            if t.name in self._arguments:
                t.input_schema = {**t.input_schema, "additionalProperties": False}
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        takes = self._arguments.get(name)
        if takes is not None:
            extra = [a for a in arguments if a not in takes]
            if extra:
                lines = [
                    f"unknown argument {a!r} for {name}{suggest(a, takes)}; it takes: "
                    + ", ".join(takes)
                    for a in extra
                ]
                log.info("tool %s refused unknown arguments %s", name, extra)
                return error(
                    ToolFailure("\n".join(lines), ErrorCode.INVALID_PARAMS, {"problems": lines})
                )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            lines = problems(cause.errors(include_url=False), arguments, unknown="argument")
            log.info("tool %s refused its arguments (%d problems)", name, len(lines))
            return error(invalid(name, lines))
