"""Every MCP tool that maps to a protocol method takes that method's params: the same
property names, types, required-ness and enum values as its pydantic model, read from the
bridge over real stdio (what an agent sees). Bridge-only params are listed here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import BaseModel

from cc_executor.protocol import (
    ControlParams,
    ExecuteClaudeParams,
    ExecuteParams,
    Method,
    OutputParams,
    StatusParams,
)
from cc_executor.protocol_families import (
    PARAMS,
    SessionCoordinateParams,
    SessionCreateParams,
    SessionListParams,
    SessionLogsParams,
    SessionRef,
    SessionSendParams,
    SessionSpawnTempParams,
    WorkspaceDiffParams,
    WorkspaceListParams,
    WorkspaceRemoveParams,
)

ROOT = Path(__file__).resolve().parents[2]

TOOL_METHODS: dict[str, Method] = {
    "execute_task": Method.EXECUTE,
    "execute_claude": Method.EXECUTE_CLAUDE,
    "control_execution": Method.CONTROL,
    "get_execution_status": Method.STATUS,
    "get_execution_output": Method.OUTPUT,
    "list_sessions": Method.SESSION_LIST,
    "get_session_status": Method.SESSION_STATUS,
    "get_session_logs": Method.SESSION_LOGS,
    "send_message_to_session": Method.SESSION_SEND,
    "create_session": Method.SESSION_CREATE,
    "kill_session": Method.SESSION_KILL,
    "spawn_temp_session": Method.SESSION_SPAWN_TEMP,
    "coordinate_sessions": Method.SESSION_COORDINATE,
    "list_workspaces": Method.WORKSPACE_LIST,
    "get_workspace_diff": Method.WORKSPACE_DIFF,
    "remove_workspace": Method.WORKSPACE_REMOVE,
}
BRIDGE_ONLY_TOOLS = {"execute_task_list"}  # task lists run in the bridge, not the service
BRIDGE_ONLY_PARAMS = {
    "execute_task": {"wait"},  # how long the tool call waits, not how the task runs
    "execute_claude": {"wait"},
}
SERVICE_ONLY_PARAMS = {
    # The list's filters and paging (engine/listing.py) serve the dashboard and the CLI;
    # the tool reports one task or the newest ones. Optional, so leaving them out is safe.
    "get_execution_status": {"statuses", "text", "offset", "active_first", "sort", "descending"},
}
DESIGN_NOTE_NAMES = {  # tool param -> protocol field (the protocol accepts both names)
    "send_message_to_session": {"wait_for_response": "wait"},
    "coordinate_sessions": {"session_assignments": "assignments"},
}
BRIDGE_DEFAULT = {("get_execution_output", "limit"), ("get_workspace_diff", "limit")}
"""Params the tool lets the agent leave out (null) where the protocol has a default of its
own: the bridge fills in its setting (max_output_chars)."""

ANY_CASE = {("control_execution", "action")}
"""Params whose protocol model upper-cases what it is given (`ControlParams.action`): the
tool's enum lists each value in upper and in lower case, so a client that checks arguments
against the schema accepts what the service accepts."""


def both_cases(s: Any) -> Any:
    """The shape of the protocol's enum as the tool lists it: each value, then lower-cased."""
    d = dict(s)
    d["enum"] = tuple(sorted(d["enum"] + tuple(v.lower() for v in d["enum"])))
    return tuple(sorted(d.items()))


MODELS: dict[Method, type[BaseModel]] = {
    Method.EXECUTE: ExecuteParams,
    Method.EXECUTE_CLAUDE: ExecuteClaudeParams,
    Method.CONTROL: ControlParams,
    Method.STATUS: StatusParams,
    Method.OUTPUT: OutputParams,
    Method.SESSION_LIST: SessionListParams,
    Method.SESSION_STATUS: SessionRef,
    Method.SESSION_LOGS: SessionLogsParams,
    Method.SESSION_SEND: SessionSendParams,
    Method.SESSION_CREATE: SessionCreateParams,
    Method.SESSION_KILL: SessionRef,
    Method.SESSION_SPAWN_TEMP: SessionSpawnTempParams,
    Method.SESSION_COORDINATE: SessionCoordinateParams,
    Method.WORKSPACE_LIST: WorkspaceListParams,
    Method.WORKSPACE_DIFF: WorkspaceDiffParams,
    Method.WORKSPACE_REMOVE: WorkspaceRemoveParams,
}


def shape(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """What a JSON schema accepts, as a comparable value: types, items, values and enums
    (constraints and descriptions left out: a tool may cap or explain more)."""
    if "$ref" in schema:
        return shape(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return tuple(sorted({shape(s, defs) for s in schema["anyOf"]}, key=repr))
    out: dict[str, Any] = {"type": schema.get("type")}
    if "enum" in schema:
        out["enum"] = tuple(sorted(schema["enum"]))
    if schema.get("type") == "array":
        out["items"] = shape(schema.get("items", {}), defs)
    if schema.get("type") == "object":
        extra = schema.get("additionalProperties", True)
        out["values"] = shape(extra, defs) if isinstance(extra, dict) else extra
    return tuple(sorted(out.items()))


def without_null(s: Any) -> Any:
    if isinstance(s, tuple) and s and isinstance(s[0], tuple) and isinstance(s[0][0], tuple):
        rest = tuple(x for x in s if x != (("type", "null"),))
        return rest[0] if len(rest) == 1 else rest
    return s


def properties(schema: dict[str, Any]) -> dict[str, tuple[Any, bool]]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    return {n: (shape(p, defs), n in required) for n, p in schema["properties"].items()}


@pytest.fixture
async def tool_schemas(tmp_path: Path) -> dict[str, dict[str, Any]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CC_EXECUTOR_DATA_DIR": str(tmp_path / "data"),
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_bridge"], env=env, cwd=str(ROOT)
    )
    with open(tmp_path / "bridge.log", "a") as errlog:  # noqa: ASYNC230
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            tools = (await client.list_tools()).tools
    return {t.name: t.input_schema for t in tools}


def test_the_map_names_each_method_once() -> None:
    assert all(MODELS[m] is PARAMS[m] for m in MODELS)
    assert set(MODELS) == set(TOOL_METHODS.values())


async def test_every_tool_schema_matches_its_protocol_model(
    tool_schemas: dict[str, dict[str, Any]],
) -> None:
    assert set(tool_schemas) == set(TOOL_METHODS) | BRIDGE_ONLY_TOOLS
    problems: list[str] = []
    for tool, method in TOOL_METHODS.items():
        model = PARAMS[method]
        want = properties(model.model_json_schema())
        for name in SERVICE_ONLY_PARAMS.get(tool, set()):
            assert not want.pop(name)[1], (tool, name)  # the protocol's default applies
        renames = DESIGN_NOTE_NAMES.get(tool, {})
        for alias, field in renames.items():  # the protocol really accepts the tool's name
            assert alias in str(model.model_fields[field].validation_alias), (tool, alias)
        got = {
            renames.get(n, n): v
            for n, v in properties(tool_schemas[tool]).items()
            if n not in BRIDGE_ONLY_PARAMS.get(tool, set())
        }
        if set(got) != set(want):
            problems.append(
                f"{tool}: params {sorted(set(got) - set(want))} not in {model.__name__}, "
                f"{sorted(set(want) - set(got))} missing"
            )
            continue
        for name, (got_shape, got_required) in got.items():
            want_shape, want_required = want[name]
            if (tool, name) in BRIDGE_DEFAULT:
                assert not want_required and (("type", "null"),) in got_shape, (tool, name)
                got_shape = without_null(got_shape)
            if (tool, name) in ANY_CASE:
                want_shape = both_cases(want_shape)
            if got_shape != want_shape:
                problems.append(f"{tool}.{name}: type {got_shape} != {want_shape}")
            if got_required != want_required:
                problems.append(f"{tool}.{name}: required {got_required} != {want_required}")
    assert not problems, "\n".join(problems)
