"""JSON-RPC 2.0 framing without a socket: every error path, batches, notifications, ids.

The same cases run over a real WebSocket in tests/service/test_wire.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from cc_executor import jsonrpc
from cc_executor.handlers import ROUTES
from cc_executor.protocol import ErrorCode, ProtocolError

# ------------------------------------------------------------------ a small real route table


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    times: int = 1


class Ctx:
    def __init__(self) -> None:
        self.calls: list[str] = []


async def echo(ctx: Ctx, p: EchoParams) -> dict[str, Any]:
    ctx.calls.append(p.text)
    return {"text": p.text * p.times}


async def refuse(ctx: Ctx, p: EchoParams) -> None:
    ctx.calls.append(p.text)
    raise ProtocolError(ErrorCode.TASK_NOT_FOUND, "no such thing", {"what": p.text})


async def crash(ctx: Ctx, p: EchoParams) -> None:
    ctx.calls.append(p.text)
    raise KeyError("boom")


ROUTES_T = {
    "echo": jsonrpc.Route(EchoParams, echo),
    "refuse": jsonrpc.Route(EchoParams, refuse),
    "crash": jsonrpc.Route(EchoParams, crash),
}


async def handle(frame: str | bytes, ctx: Ctx | None = None) -> Any:
    """What the server does with one frame: the decoded reply, or None for no reply."""
    ctx = ctx or Ctx()
    items, is_batch = jsonrpc.parse(frame)
    replies: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            replies.append(item)
        else:
            r = await jsonrpc.call(ROUTES_T, item, ctx)
            if r is not None:
                replies.append(r)
    if not replies:
        return None
    # Through the encoder, as on the wire.
    return json.loads(jsonrpc.encode(replies if is_batch else replies[0]))


def req(method: str, params: Any = None, id: Any = 1, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **extra}
    if params is not None:
        r["params"] = params
    if id is not jsonrpc.NO_ID:
        r["id"] = id
    return r


def dumps(obj: Any) -> str:
    return json.dumps(obj)


def assert_error(reply: Any, code: int, id: Any = None) -> dict[str, Any]:
    assert isinstance(reply, dict), reply
    assert reply["jsonrpc"] == "2.0"
    assert "result" not in reply
    assert reply["id"] == id and type(reply["id"]) is type(id)
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return reply["error"]


# ------------------------------------------------------------------ -32700


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        "",
        "not json",
        '{"jsonrpc": "2.0", "method": "echo", "id": 1',
        '[{"jsonrpc": "2.0", "method": "echo", "params": {"text": "a"}, "id": 1}, {',
        b"\xff\xfe{}",
        '{"a": NaN}',
    ],
)
async def test_parse_error(frame: str | bytes) -> None:
    ctx = Ctx()
    assert_error(await handle(frame, ctx), ErrorCode.PARSE_ERROR, None)
    assert ctx.calls == []


# ------------------------------------------------------------------ -32600


@pytest.mark.parametrize(
    ("obj", "echo_id"),
    [
        (1, None),
        ("echo", None),
        (None, None),
        ({}, None),
        ({"method": "echo", "params": {"text": "a"}, "id": 5}, 5),  # no jsonrpc member
        ({"jsonrpc": "1.0", "method": "echo", "params": {"text": "a"}, "id": 5}, 5),
        ({"jsonrpc": 2.0, "method": "echo", "params": {"text": "a"}, "id": 5}, 5),
        ({"jsonrpc": "2.0", "params": {"text": "a"}, "id": 5}, 5),  # no method
        ({"jsonrpc": "2.0", "method": 1, "params": {"text": "a"}, "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "", "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": "text", "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": 3, "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": True, "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": None, "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": {"text": "a"}, "id": 5, "x": 1}, 5),
        # An id of the wrong type cannot be echoed: the reply's id is null.
        ({"jsonrpc": "2.0", "method": "echo", "params": {"text": "a"}, "id": True}, None),
        ({"jsonrpc": "2.0", "method": "echo", "params": {"text": "a"}, "id": {"a": 1}}, None),
        ({"jsonrpc": "2.0", "method": "echo", "params": {"text": "a"}, "id": [1]}, None),
    ],
)
async def test_invalid_request(obj: Any, echo_id: Any) -> None:
    ctx = Ctx()
    assert_error(await handle(dumps(obj), ctx), ErrorCode.INVALID_REQUEST, echo_id)
    assert ctx.calls == []


async def test_invalid_notification_still_gets_an_error() -> None:
    # Without a valid request object we cannot know it was meant as a notification.
    reply = await handle(dumps({"jsonrpc": "1.0", "method": "echo", "params": {"text": "a"}}))
    assert_error(reply, ErrorCode.INVALID_REQUEST, None)


# ------------------------------------------------------------------ -32601 / -32602


async def test_method_not_found() -> None:
    err = assert_error(
        await handle(dumps(req("nope", {}, id="a"))), ErrorCode.METHOD_NOT_FOUND, "a"
    )
    assert err["data"] == {"method": "nope"}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, "text"),  # missing
        ({"text": 5}, "text"),  # wrong type
        ({"text": "a", "times": "many"}, "times"),
        ({"text": "a", "bogus": 1}, "bogus"),  # extra member
        (["a", "x"], "times"),  # by position
    ],
)
async def test_invalid_params_carry_the_validation_message(params: Any, loc: str) -> None:
    ctx = Ctx()
    err = assert_error(await handle(dumps(req("echo", params, id=7)), ctx), -32602, 7)
    assert isinstance(err["data"], list) and err["data"]
    assert any(d["loc"] == loc and d["msg"] for d in err["data"]), err["data"]
    assert ctx.calls == []


async def test_too_many_positional_params() -> None:
    err = assert_error(await handle(dumps(req("echo", ["a", 2, 3], id=1))), -32602, 1)
    assert "too many" in err["data"]


async def test_params_by_position_and_absent() -> None:
    assert await handle(dumps(req("echo", ["ab", 2], id=1))) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"text": "abab"},
    }
    # No params at all validates against an empty object.
    err = assert_error(await handle(dumps(req("echo", id=2))), -32602, 2)
    assert err["data"][0]["loc"] == "text"


async def test_real_routes_report_validation_in_data() -> None:
    """The service's own routes: execute with a number as command, control with a bad action."""
    items, _ = jsonrpc.parse(dumps(req("execute", {"command": 5}, id=1)))
    assert isinstance(items[0], jsonrpc.Request)
    reply = await jsonrpc.call(ROUTES, items[0], None)
    assert reply is not None
    err = assert_error(reply, ErrorCode.INVALID_PARAMS, 1)
    assert any(d["loc"].startswith("command") for d in err["data"])

    items, _ = jsonrpc.parse(dumps(req("control", {"task_id": "x", "action": "JUMP"}, id=2)))
    assert isinstance(items[0], jsonrpc.Request)
    reply = await jsonrpc.call(ROUTES, items[0], None)
    assert reply is not None
    err = assert_error(reply, ErrorCode.INVALID_PARAMS, 2)
    assert any(d["loc"] == "action" for d in err["data"])


# ------------------------------------------------------------------ handler errors


async def test_protocol_error_from_handler() -> None:
    err = assert_error(await handle(dumps(req("refuse", {"text": "t"}, id=3))), -32001, 3)
    assert err == {"code": -32001, "message": "no such thing", "data": {"what": "t"}}


async def test_unexpected_exception_becomes_internal_error() -> None:
    err = assert_error(await handle(dumps(req("crash", {"text": "t"}, id=4))), -32603, 4)
    assert err["data"] == "KeyError"


# ------------------------------------------------------------------ notifications


@pytest.mark.parametrize(
    "obj",
    [
        req("echo", {"text": "a"}, id=jsonrpc.NO_ID),
        req("nope", {"text": "a"}, id=jsonrpc.NO_ID),  # unknown method: still silent
        req("echo", {"bad": 1}, id=jsonrpc.NO_ID),  # invalid params: still silent
        req("refuse", {"text": "a"}, id=jsonrpc.NO_ID),
        req("crash", {"text": "a"}, id=jsonrpc.NO_ID),
    ],
)
async def test_notifications_get_no_reply(obj: dict[str, Any]) -> None:
    ctx = Ctx()
    assert await handle(dumps(obj), ctx) is None
    if obj["method"] in ("echo", "refuse", "crash") and "text" in obj["params"]:
        assert ctx.calls == ["a"]  # it did run


async def test_null_id_is_a_request_not_a_notification() -> None:
    assert await handle(dumps(req("echo", {"text": "a"}, id=None))) == {
        "jsonrpc": "2.0",
        "id": None,
        "result": {"text": "a"},
    }


# ------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    "rid",
    ["abc", "", "ünï ✓", "1", 0, 1, -7, 2**53 + 1, 2**63 - 1, 1.5, -0.25, 1.0, 1e-7, None],
)
async def test_any_id_echoed_exactly(rid: Any) -> None:
    frame = dumps(req("echo", {"text": "x"}, id=rid))
    raw = jsonrpc.encode(jsonrpc.result_response(jsonrpc.parse(frame)[0][0].id, 1))  # type: ignore[union-attr]
    reply = await handle(frame)
    assert reply["id"] == rid and type(reply["id"]) is type(rid)
    assert json.loads(raw)["id"] == rid
    # Also on the error path.
    err = await handle(dumps(req("nope", {}, id=rid)))
    assert err["id"] == rid and type(err["id"]) is type(rid)


@settings(max_examples=200, deadline=None)
@given(
    rid=st.one_of(
        st.none(),
        st.text(max_size=30),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    )
)
async def test_any_id_echoed_exactly_property(rid: Any) -> None:
    reply = await handle(dumps(req("echo", {"text": "x"}, id=rid)))
    assert reply["id"] == rid and type(reply["id"]) is type(rid)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
async def test_parse_never_raises(frame: bytes | str) -> None:
    items, _ = jsonrpc.parse(frame)
    assert items
    for item in items:
        assert isinstance(item, jsonrpc.Request | dict)


# ------------------------------------------------------------------ batches


async def test_batch_mixed() -> None:
    ctx = Ctx()
    batch = [
        req("echo", {"text": "a"}, id=1),
        req("echo", {"text": "n"}, id=jsonrpc.NO_ID),  # notification: no reply
        {"foo": "boo"},  # invalid request
        req("nope", {}, id="5"),  # unknown method
        req("echo", {"text": 3}, id=2.5),  # invalid params
        1,
        req("refuse", {"text": "r"}, id=None),
    ]
    replies = await handle(dumps(batch), ctx)
    assert isinstance(replies, list)
    assert len(replies) == 6
    by_code: dict[Any, list[dict[str, Any]]] = {}
    for r in replies:
        by_code.setdefault(r["error"]["code"] if "error" in r else "ok", []).append(r)
    assert by_code["ok"] == [{"jsonrpc": "2.0", "id": 1, "result": {"text": "a"}}]
    assert [r["id"] for r in by_code[-32600]] == [None, None]
    assert [r["id"] for r in by_code[-32601]] == ["5"]
    assert [r["id"] for r in by_code[-32602]] == [2.5]
    assert [r["id"] for r in by_code[-32001]] == [None]
    assert sorted(ctx.calls) == ["a", "n", "r"]


async def test_batch_of_invalid_items() -> None:
    replies = await handle("[1, 2, 3]")
    assert isinstance(replies, list) and len(replies) == 3
    for r in replies:
        assert_error(r, ErrorCode.INVALID_REQUEST, None)


async def test_batch_of_notifications_gets_no_reply() -> None:
    ctx = Ctx()
    batch = [req("echo", {"text": t}, id=jsonrpc.NO_ID) for t in "abc"]
    assert await handle(dumps(batch), ctx) is None
    assert sorted(ctx.calls) == ["a", "b", "c"]


async def test_empty_batch_is_one_invalid_request() -> None:
    reply = await handle("[]")
    assert not isinstance(reply, list)
    assert_error(reply, ErrorCode.INVALID_REQUEST, None)


async def test_batch_of_one_is_still_a_batch() -> None:
    assert await handle(dumps([req("echo", {"text": "a"}, id=9)])) == [
        {"jsonrpc": "2.0", "id": 9, "result": {"text": "a"}}
    ]


async def test_nested_batch_items_are_invalid() -> None:
    replies = await handle("[[]]")
    assert isinstance(replies, list) and len(replies) == 1
    assert_error(replies[0], ErrorCode.INVALID_REQUEST, None)


# ------------------------------------------------------------------ encoding


def test_encode_notification_and_error_shapes() -> None:
    n = jsonrpc.notification("process.output", {"task_id": "t", "data": "é\x00"})
    assert json.loads(jsonrpc.encode(n)) == {
        "jsonrpc": "2.0",
        "method": "process.output",
        "params": {"task_id": "t", "data": "é\x00"},
    }
    e = jsonrpc.error_response(jsonrpc.NO_ID, ProtocolError(-32000, "m"))
    assert e == {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "m"}}


# ------------------------------------------------------------------ the reply budget


def test_encode_frame_joins_replies_encoded_one_by_one() -> None:
    parts = [jsonrpc.encode(jsonrpc.result_response(i, i)) for i in range(3)]
    assert json.loads(jsonrpc.encode_frame(parts, True)) == [
        {"jsonrpc": "2.0", "id": i, "result": i} for i in range(3)
    ]
    assert jsonrpc.encode_frame(parts[:1], False) == parts[0]


async def test_budget_refuses_what_one_frame_cannot_hold() -> None:
    budget = jsonrpc.ReplyBudget(100)
    f = budget.new_frame()
    assert await budget.take(f, 60)
    assert not await budget.take(f, 50)  # this frame alone would pass the budget
    assert budget.used == 60
    err = budget.refusal(7, 50)
    assert err["id"] == 7 and err["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE


async def test_budget_makes_later_frames_wait_for_earlier_ones() -> None:
    budget = jsonrpc.ReplyBudget(100)
    first, second = budget.new_frame(), budget.new_frame()
    assert await budget.take(first, 80)
    waiting = asyncio.ensure_future(budget.take(second, 50))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # waits: an earlier frame holds the budget
    budget.give_back(first, 80)  # its reply was sent
    assert await asyncio.wait_for(waiting, 1)
    assert budget.used == 50


async def test_budget_never_makes_an_earlier_frame_wait_for_a_later_one() -> None:
    budget = jsonrpc.ReplyBudget(100)
    first, second = budget.new_frame(), budget.new_frame()
    assert await budget.take(second, 90)
    # Only a later frame holds the rest: waiting for it could deadlock, so it is taken.
    assert await asyncio.wait_for(budget.take(first, 50), 1)
    assert budget.used == 140 < 2 * budget.max_bytes
