"""Session params models: defaults, the design notes' aliases, and what they refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cc_executor.protocol import Method
from cc_executor.protocol_families import (
    PARAMS,
    SessionCoordinateParams,
    SessionCreateParams,
    SessionSendParams,
    SessionSpawnTempParams,
)


def test_every_session_method_has_params() -> None:
    names = [m for m in Method if m.value.startswith("session.")]
    assert len(names) == 8 and all(m in PARAMS for m in names)


def test_design_note_aliases() -> None:
    p = SessionSendParams.model_validate(
        {"session_id": "s", "message": "m", "wait_for_response": True}
    )
    assert p.wait is True
    c = SessionCoordinateParams.model_validate(
        {"task_description": "t", "session_assignments": {"s": "x"}}
    )
    assert c.assignments == {"s": "x"} and c.timeout == 600 and c.cancel_on_timeout is False


def test_create_defaults() -> None:
    p = SessionCreateParams(working_dir="/tmp")
    assert p.watch_mode is False and p.continuation_prompt == "continue" and p.max_turns is None


@pytest.mark.parametrize(
    "params",
    [
        {"working_dir": "/tmp"},
        {"working_dir": "/tmp", "command": "ls", "prompt": "hi"},
        {"working_dir": "/tmp", "command": ""},
        {"working_dir": "/tmp", "prompt": "hi", "timeout": 0},
    ],
)
def test_spawn_temp_wants_exactly_one_thing(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SessionSpawnTempParams.model_validate(params)


@pytest.mark.parametrize(
    "params",
    [
        {"session_id": "s", "message": ""},
        {"session_id": "s", "message": "m", "unknown": 1},
        {"session_id": "s", "message": "m", "timeout": -1},
    ],
)
def test_send_refuses(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SessionSendParams.model_validate(params)


def test_coordinate_needs_assignments() -> None:
    with pytest.raises(ValidationError):
        SessionCoordinateParams(task_description="t", assignments={})
