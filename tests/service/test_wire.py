"""JSON-RPC 2.0 over a real WebSocket, raw frames: error paths, batches, notifications, ids."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cc_executor.protocol import ErrorCode
from cc_executor.server import ExecutorService

from .conftest import MakeService, RawWS, raw_connect

PING = {"jsonrpc": "2.0", "method": "ping"}


def err_of(reply: dict[str, Any], code: int, rid: Any) -> dict[str, Any]:
    assert reply["jsonrpc"] == "2.0" and "result" not in reply, reply
    assert reply["id"] == rid and type(reply["id"]) is type(rid), reply
    assert reply["error"]["code"] == code, reply
    return reply["error"]


async def next_is_pong(raw: RawWS) -> None:
    """Send a ping; the very next frame must be its reply (so nothing came before it)."""
    await raw.send({**PING, "id": "sentinel"})
    reply = await raw.recv()
    assert reply.get("id") == "sentinel" and reply["result"]["pong"] is True, reply


@pytest.mark.parametrize("frame", ["{", "", "nope", '[{"jsonrpc":"2.0","method":"ping","id":1},{'])
async def test_parse_error(raw: RawWS, frame: str) -> None:
    err_of(await _send_recv(raw, frame), ErrorCode.PARSE_ERROR, None)


async def _send_recv(raw: RawWS, frame: Any) -> Any:
    await raw.send(frame)
    return await raw.recv()


async def test_parse_error_binary_frame(raw: RawWS) -> None:
    err_of(await _send_recv(raw, b"\xff\x00{"), ErrorCode.PARSE_ERROR, None)
    # A binary frame holding valid JSON is served like a text one.
    reply = await _send_recv(raw, json.dumps({**PING, "id": 3}).encode())
    assert reply["id"] == 3 and reply["result"]["pong"] is True


@pytest.mark.parametrize(
    ("obj", "rid"),
    [
        (1, None),
        ({}, None),
        ({"method": "ping", "id": 1}, 1),
        ({"jsonrpc": "1.0", "method": "ping", "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": 7, "id": 1}, 1),
        ({"jsonrpc": "2.0", "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "ping", "params": "x", "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "ping", "params": 1, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "ping", "params": None, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "ping", "id": True}, None),
        ({"jsonrpc": "2.0", "method": "ping", "id": {"x": 1}}, None),
        ({"jsonrpc": "2.0", "method": "ping", "id": [1]}, None),
        ({"jsonrpc": "2.0", "method": "ping", "id": 1, "extra": 1}, 1),
    ],
)
async def test_invalid_request(raw: RawWS, obj: Any, rid: Any) -> None:
    err_of(await _send_recv(raw, obj), ErrorCode.INVALID_REQUEST, rid)


async def test_method_not_found(raw: RawWS) -> None:
    reply = await raw.call("no.such.method", {})
    assert reply["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert reply["error"]["data"] == {"method": "no.such.method"}


@pytest.mark.parametrize(
    ("method", "params", "loc"),
    [
        ("execute", {"command": 5}, "command"),
        ("execute", {"command": []}, "command"),
        ("execute", {"command": "  "}, "command"),
        ("execute", {"command": "true", "timeout": -1}, "timeout"),
        ("execute", {"command": "true", "bogus": 1}, "bogus"),
        ("execute", {}, "command"),
        ("control", {"task_id": "x", "action": "JUMP"}, "action"),
        ("control", {"action": "PAUSE"}, "task_id"),
        ("output", {"task_id": "x", "stream": "stdin"}, "stream"),
        ("output", {"task_id": "x", "offset": -1}, "offset"),
        ("ping", {"x": 1}, "x"),
    ],
)
async def test_invalid_params_with_validation_data(
    raw: RawWS, method: str, params: Any, loc: str
) -> None:
    reply = await raw.call(method, params)
    err = err_of(reply, ErrorCode.INVALID_PARAMS, reply["id"])
    assert isinstance(err["data"], list)
    assert any(d["loc"].startswith(loc) and d["msg"] for d in err["data"]), err


async def test_params_by_position(raw: RawWS) -> None:
    res = await raw.result("status", [])
    assert "tasks" in res and "stats" in res
    reply = await raw.call("output", ["no-such-task"])
    assert reply["error"]["code"] == ErrorCode.TASK_NOT_FOUND


@pytest.mark.parametrize("rid", ["abc", "", "ünï ✓", 0, 7, -3, 2**63 - 1, 1.5, 1.0, -0.001, None])
async def test_any_id_echoed_exactly(raw: RawWS, rid: Any) -> None:
    raw_text = json.dumps({**PING, "id": rid})
    await raw.send(raw_text)
    reply_text = await raw.ws.recv()
    reply = json.loads(reply_text)
    assert reply["id"] == rid and type(reply["id"]) is type(rid)
    assert reply["result"]["pong"] is True
    # Errors echo it too.
    bad = await _send_recv(raw, {"jsonrpc": "2.0", "method": "nope", "id": rid})
    err_of(bad, ErrorCode.METHOD_NOT_FOUND, rid)


async def test_notifications_get_no_reply(raw: RawWS) -> None:
    await raw.send(PING)  # valid notification
    await raw.send({"jsonrpc": "2.0", "method": "nope"})  # unknown method
    await raw.send({"jsonrpc": "2.0", "method": "status", "params": {"limit": 0}})  # bad params
    cancel = {"task_id": "x", "action": "CANCEL"}  # unknown task
    await raw.send({"jsonrpc": "2.0", "method": "control", "params": cancel})
    await next_is_pong(raw)


async def test_execute_as_notification_runs_without_reply(raw: RawWS) -> None:
    await raw.send(
        {"jsonrpc": "2.0", "method": "execute", "params": {"command": ["true"], "name": "quiet"}}
    )
    # The connection that started it is subscribed: started and completed come, no response.
    first = await raw.recv()
    assert first["method"] == "process.started" and "id" not in first, first
    task_id = first["params"]["task_id"]
    while True:
        msg = await raw.recv()
        assert "id" not in msg, msg
        if msg["method"] == "process.completed":
            break
    assert msg["params"]["task_id"] == task_id and msg["params"]["status"] == "completed"
    await next_is_pong(raw)
    rec = await raw.result("status", {"task_id": task_id})
    assert rec["name"] == "quiet" and rec["status"] == "completed"


async def test_batch_mixed(raw: RawWS) -> None:
    batch = [
        {**PING, "id": 1},
        PING,  # notification
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "nope", "id": "5"},
        {"jsonrpc": "2.0", "method": "status", "params": {"task_id": "missing"}, "id": 2.5},
        {"jsonrpc": "2.0", "method": "execute", "params": {"command": 1}, "id": None},
        3,
    ]
    replies = await _send_recv(raw, batch)
    assert isinstance(replies, list) and len(replies) == 6
    by_id = {json.dumps(r["id"]): r for r in replies if r["id"] is not None}
    assert by_id["1"]["result"]["pong"] is True
    err_of(by_id['"5"'], ErrorCode.METHOD_NOT_FOUND, "5")
    err_of(by_id["2.5"], ErrorCode.TASK_NOT_FOUND, 2.5)
    null_codes = sorted(r["error"]["code"] for r in replies if r["id"] is None)
    assert null_codes == sorted([-32600, -32600, -32602])
    await next_is_pong(raw)


async def test_batch_of_notifications_gets_no_reply(raw: RawWS) -> None:
    await raw.send([PING, PING, {"jsonrpc": "2.0", "method": "nope"}])
    await next_is_pong(raw)


async def test_empty_batch(raw: RawWS) -> None:
    reply = await _send_recv(raw, "[]")
    assert isinstance(reply, dict)
    err_of(reply, ErrorCode.INVALID_REQUEST, None)


async def test_batch_of_invalid_items(raw: RawWS) -> None:
    replies = await _send_recv(raw, "[1,2,3]")
    assert isinstance(replies, list) and len(replies) == 3
    for r in replies:
        err_of(r, ErrorCode.INVALID_REQUEST, None)


async def test_batch_executes_in_one_frame(raw: RawWS, service: ExecutorService) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "execute", "params": {"command": ["true"]}, "id": i}
        for i in range(5)
    ]
    await raw.send(batch)
    while not isinstance(replies := await raw.recv(), list):
        raw.notifications.append(replies)  # process.* of the new tasks may come first
    assert sorted(r["id"] for r in replies) == list(range(5))
    ids = {r["result"]["task_id"] for r in replies}
    assert len(ids) == 5
    for tid in ids:
        await raw.until("process.completed", tid)


async def test_disconnect_with_requests_in_flight(make_service: MakeService) -> None:
    """Clients that vanish mid-request (their handlers cancelled) leave the service whole."""
    svc = await make_service()
    tid = ""
    for _ in range(20):
        async with raw_connect(svc.url, svc.token) as r:
            if not tid:
                tid = (await r.result("execute", {"command": ["true"]}))["task_id"]
            for i in range(10):
                await r.send({"jsonrpc": "2.0", "method": "status", "params": {}, "id": i})
                await r.send({"jsonrpc": "2.0", "method": "output", "params": {"task_id": tid}})
    async with raw_connect(svc.url, svc.token) as r:
        res = await asyncio.wait_for(r.result("status", {"task_id": tid}), 30)
        assert res["status"] == "completed"
    await asyncio.wait_for(svc.stop(), 30)
