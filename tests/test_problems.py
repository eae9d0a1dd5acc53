"""`problems`: pydantic's errors, or the service's -32602 details, as one line per problem."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cc_executor.jsonrpc import validate_params
from cc_executor.problems import field_path, problems
from cc_executor.protocol import ExecuteClaudeParams, ExecuteParams, ProtocolError


def _errors(model: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(args)
    return info.value.errors(include_url=False)  # type: ignore[return-value]


def _wire(model: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ProtocolError) as info:
        validate_params(model, args)
    details: list[dict[str, Any]] = info.value.data
    return details


def test_paths_are_written_as_a_json_caller_writes_them() -> None:
    assert field_path(("tasks", 0, "env", "HOME")) == "tasks[0].env.HOME"
    assert field_path(()) == ""


def test_a_model_check_loses_its_validator_name_and_noise() -> None:
    args = {"prompt": "x", "fork_session": True}
    assert problems(_errors(ExecuteClaudeParams, args), args) == ["fork_session requires resume"]
    assert problems(_wire(ExecuteClaudeParams, args)) == ["fork_session requires resume"]


def test_a_union_field_is_one_line_saying_what_it_may_be() -> None:
    args = {"command": 5, "timeout": -1}
    want = [
        "command: should be a valid string or a valid list (got 5)",
        "timeout: should be greater than 0 (got -1)",
    ]
    assert problems(_errors(ExecuteParams, args), args) == want
    # The service's details hold no values: the same lines, without them.
    assert problems(_wire(ExecuteParams, args)) == [w.split(" (got")[0] for w in want]


def test_unknown_and_missing_fields_are_named() -> None:
    args = {"commnd": "true"}
    errors = _errors(ExecuteParams, args)
    assert problems(errors, args, unknown="argument") == [
        "command: required",
        "unknown argument 'commnd'",
    ]
    nested = [{**e, "loc": ("tasks", 0, *e["loc"])} for e in errors]
    assert problems(nested, {"tasks": [args]}, unknown="argument") == [
        "tasks[0].command: required",
        "tasks[0]: unknown field 'commnd'",
    ]


def test_a_key_the_caller_wrote_is_never_taken_for_a_union_tag() -> None:
    args = {"command": "true", "env": {"Path": 1}}  # "Path" looks like a class name
    assert problems(_errors(ExecuteParams, args), args) == [
        "env.Path: should be a valid string (got 1)"
    ]


def test_names_can_be_spelled_as_the_caller_gave_them() -> None:
    args = {"command": "true", "idle_timeout": 0}
    lines = problems(_errors(ExecuteParams, args), args, name=lambda p: "--idle-timeout")
    assert lines == ["--idle-timeout: should be greater than 0 (got 0)"]
