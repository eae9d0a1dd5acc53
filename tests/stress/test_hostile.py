"""Hostile input: fuzzed JSON-RPC over a real WebSocket (access attacks: test_hostile_access.py).

Guarantees checked: every fuzzed frame gets a well-formed JSON-RPC reply (an error, or a
result for the well-formed requests) and never -32603 (an internal error is a bug), or a
clean close (1007 for invalid UTF-8 in a text frame, which websockets enforces); the
connection and the service answer `ping` after each; the service logs no traceback.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from cc_executor.protocol import ErrorCode, Method
from tests.support import ServiceProcess

from .support import REPORT, P, stress_service

pytestmark = pytest.mark.stress

# ------------------------------------------------------------------ fuzzing

METHODS = [str(m) for m in Method]
APP_CODES = set(range(-32099, -32000 + 1))
SPEC_CODES = {-32700, -32600, -32601, -32602}
FUZZ = settings(
    max_examples=P.fuzz_examples,
    deadline=None,
    database=None,
    derandomize=P.name == "short",  # CI: the same examples every run; full: new ones
    # CI: report a failing example as found (shrinking one can take minutes); full: shrink.
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    if P.name == "short"
    else [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)
huge_strings = st.builds(
    lambda n, c: c * n,
    st.integers(10_000, 400_000),
    st.sampled_from(["a", "é", "\u0000", "😀", "'", "\n", "\\"]),
)
edgy = (
    json_values
    | huge_strings
    | st.integers(-(2**63), 2**64 - 1)  # beyond: see test_integers_beyond_64_bits
    | st.sampled_from([-1, 0, 2**31, 2**64, -(2**63), 1e308, -0.0, "", " ", "PAUSE", "stdout"])
)
FIELDS = [
    "task_id",
    "session_id",
    "action",
    "command",
    "cwd",
    "env",
    "timeout",
    "idle_timeout",
    "name",
    "stream",
    "offset",
    "limit",
    "from_offset",
    "stderr_from_offset",
    "prompt",
    "enabled",
    "model",
    "max_turns",
    "resume",
]
# Values of the right type, often at the edges, so that requests get past validation and
# into the handlers (the allow-list lets only `true` run on this service).
hexid = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
TYPED: dict[str, st.SearchStrategy[Any]] = {
    "task_id": hexid | st.text(max_size=30),
    "session_id": hexid,
    "action": st.sampled_from(["PAUSE", "resume", "Cancel", "STOP", ""]),
    "command": st.sampled_from(["true", ["true"], "true x y", ["true", "-x"], "true;true"])
    | st.lists(st.text(max_size=20), min_size=1, max_size=3)
    | st.text(max_size=40),
    "cwd": st.sampled_from(["/", "/tmp", "/nonexistent", "", ".", "~"]),
    "env": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
    "timeout": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**64 - 1),
    "idle_timeout": st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**64 - 1),
    "name": st.text(max_size=300),
    "stream": st.sampled_from(["stdout", "stderr", "both"]),
    "offset": st.integers(-(2**63), 2**64 - 1),
    "limit": st.integers(-(2**63), 2**64 - 1),
    "from_offset": st.integers(-(2**63), 2**64 - 1),
    "stderr_from_offset": st.integers(-(2**63), 2**64 - 1),
    "prompt": st.text(max_size=50),
    "model": st.text(max_size=20),
    "enabled": st.booleans(),
    "max_turns": st.integers(-(2**63), 2**64 - 1),
}
METHOD_FIELDS: dict[str, list[str]] = {
    "execute": ["command", "cwd", "env", "timeout", "idle_timeout", "name"],
    "execute_claude": ["prompt", "model", "env", "cwd", "timeout", "max_turns", "name"],
    "control": ["task_id", "session_id", "action"],
    "status": ["task_id", "limit"],
    "output": ["task_id", "stream", "offset", "limit"],
    "subscribe": ["task_id", "from_offset", "stderr_from_offset"],
    "unsubscribe": ["task_id"],
    "listen": ["enabled"],
    "ping": [],
    "hook_status": [],
    "session.status": ["session_id"],
    "session.logs": ["session_id", "offset", "limit"],
    "session.kill": ["session_id"],
    "session.send": ["session_id", "prompt"],
    "session.create": ["prompt", "model", "name", "cwd"],
}


def _typed_params(method: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = METHOD_FIELDS.get(method, FIELDS)
    return st.fixed_dictionaries(
        {}, optional={f: st.one_of(TYPED.get(f, edgy), TYPED.get(f, edgy), edgy) for f in fields}
    )


param_dicts = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), edgy, max_size=5)
ids = st.integers(-(2**53), 2**53) | st.text(max_size=20)


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    """A request object with an id (so a reply is owed) and fuzzed everything else."""
    req: dict[str, Any] = {"id": draw(ids)}
    req["jsonrpc"] = "2.0" if draw(st.integers(0, 9)) else draw(json_values)
    if draw(st.integers(0, 4)):
        req["method"] = draw(st.sampled_from(METHODS))
    else:
        req["method"] = draw(st.text(max_size=30) | json_values)
    choice = draw(st.integers(0, 9))
    if choice < 6 and isinstance(req["method"], str):
        req["params"] = draw(_typed_params(req["method"]))
    elif choice < 7:
        req["params"] = draw(param_dicts)
    elif choice < 8:
        req["params"] = draw(json_values)
    elif choice == 8:
        req["params"] = draw(st.lists(edgy, max_size=4))
    if draw(st.integers(0, 19)) == 0:
        req[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return req


class Counter:
    frames = 0
    internal = 0
    outcomes: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module")
def fuzz_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service whose allow-list lets only `true` run: fuzzed executes cannot do harm."""
    d = tmp_path_factory.mktemp("fuzz")
    svc = stress_service(d / "data", d / "svc.log", CC_EXECUTOR_ALLOWED_COMMANDS='["true"]')
    svc.start_sync()
    t0 = time.monotonic()
    yield svc
    row = REPORT.row("fuzzed JSON-RPC frames")
    row.tasks = Counter.frames
    row.failures = Counter.internal + len(svc.errors())
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    seen = ", ".join(f"{k} x{v}" for k, v in Counter.outcomes.most_common())
    row.note = f"{Counter.frames} frames (the tasks column counts frames); replies: {seen}"
    svc.stop()


def _ws(svc: ServiceProcess) -> ClientConnection:
    return connect(
        svc.url,
        additional_headers={"Authorization": f"Bearer {svc.token}"},
        compression=None,
        max_size=None,
        proxy=None,
        open_timeout=30,
    )


def _exchange(ws: ClientConnection, frame: str | bytes, text: bool, owed: int) -> list[Any]:
    """Send a frame, then a ping; return the `owed` replies (notifications skipped)."""
    Counter.frames += 1
    ws.send(frame, text=text)
    ws.send('{"jsonrpc":"2.0","id":"sentinel","method":"ping"}')
    replies: list[Any] = []
    pong = False
    while not (pong and len(replies) >= owed):
        msg = json.loads(ws.recv(timeout=60))
        if isinstance(msg, dict) and "method" in msg and "id" not in msg:
            continue
        if isinstance(msg, dict) and msg.get("id") == "sentinel" and "result" in msg:
            assert msg["result"]["pong"] is True
            pong = True
            continue
        replies.append(msg)
    assert len(replies) == owed, replies
    return replies


def _check_reply(reply: Any, rid: Any = ...) -> None:
    assert isinstance(reply, dict) and reply.get("jsonrpc") == "2.0", reply
    assert ("result" in reply) != ("error" in reply), reply
    if rid is not ...:
        assert reply["id"] == rid, (reply, rid)
    Counter.outcomes["result" if "result" in reply else str(reply["error"].get("code"))] += 1
    if "error" in reply:
        err = reply["error"]
        assert isinstance(err["code"], int) and isinstance(err["message"], str), err
        if err["code"] == ErrorCode.INTERNAL_ERROR:
            Counter.internal += 1
        assert err["code"] in SPEC_CODES | APP_CODES, err


def _dumps(obj: Any) -> str:
    frame = json.dumps(obj, ensure_ascii=False)
    # Oversize frames are closed with 1009 (tests/service/test_security.py covers it).
    assume(len(frame.encode()) < 3_500_000)
    return frame


@FUZZ
@given(req=requests())
def test_fuzzed_requests_get_a_reply(fuzz_svc: ServiceProcess, req: dict[str, Any]) -> None:
    with _ws(fuzz_svc) as ws:
        (reply,) = _exchange(ws, _dumps(req), True, 1)
        valid = isinstance(req["id"], str | int) and not isinstance(req["id"], bool)
        _check_reply(reply, req["id"] if valid and abs(_int(req["id"])) < 2**63 else ...)


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


garbage_text = (
    st.text(max_size=200).filter(lambda s: _not_json(s))
    | st.builds(lambda d: "[" * d + "]" * d, st.integers(1, 5000))
    | st.builds(lambda d: '{"a":' * d + "1" + "}" * d, st.integers(1, 5000))
    | st.builds(
        lambda d: (
            '{"jsonrpc":"2.0","id":1,"method":"status","params":{"task_id":'
            + "[" * d
            + "]" * d
            + "}}"
        ),
        st.integers(1, 3000),
    )
    | json_values.filter(lambda v: not isinstance(v, dict | list)).map(_dumps)
)


def _not_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return True
    return False


@FUZZ
@given(frame=garbage_text, as_binary=st.booleans())
def test_garbage_frames_get_an_error(fuzz_svc: ServiceProcess, frame: str, as_binary: bool) -> None:
    data: str | bytes = frame.encode() if as_binary else frame
    with _ws(fuzz_svc) as ws:
        (reply,) = _exchange(ws, data, not as_binary, 1)
        if isinstance(reply, list):  # a nested-array frame is a batch of invalid requests
            for r in reply:
                _check_reply(r, None)
                assert r["error"]["code"] == ErrorCode.INVALID_REQUEST
        else:
            _check_reply(reply)
            assert "error" in reply


@FUZZ
@given(raw=st.binary(min_size=1, max_size=2000))
def test_invalid_utf8_binary_frames_get_a_parse_error(fuzz_svc: ServiceProcess, raw: bytes) -> None:
    data = raw + b"\xff\xfe"  # never valid UTF-8
    with _ws(fuzz_svc) as ws:
        (reply,) = _exchange(ws, data, False, 1)
        _check_reply(reply, None)
        assert reply["error"]["code"] == ErrorCode.PARSE_ERROR


@FUZZ
@given(raw=st.binary(max_size=200))
def test_invalid_utf8_text_frames_close_cleanly(fuzz_svc: ServiceProcess, raw: bytes) -> None:
    with _ws(fuzz_svc) as ws:
        Counter.frames += 1
        ws.send(b'{"x":"' + raw + b'\xc3\x28"}', text=True)  # \xc3\x28: invalid sequence
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=60)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    with _ws(fuzz_svc) as ws:  # the service still answers
        assert _exchange(ws, '{"jsonrpc":"2.0","id":1,"method":"ping"}', True, 1)


@FUZZ
@given(
    batch=st.lists(
        requests() | json_values.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=8
    )
)
def test_batches_of_garbage(fuzz_svc: ServiceProcess, batch: list[Any]) -> None:
    with _ws(fuzz_svc) as ws:
        (reply,) = _exchange(ws, _dumps(batch), True, 1)
        assert isinstance(reply, list) and len(reply) == len(batch), reply
        for r in reply:
            _check_reply(r)


@FUZZ
@given(frames=st.lists(requests().map(_dumps) | garbage_text, min_size=2, max_size=6))
def test_one_connection_many_frames(fuzz_svc: ServiceProcess, frames: list[str]) -> None:
    with _ws(fuzz_svc) as ws:
        for frame in frames:
            (reply,) = _exchange(ws, frame, True, 1)
            if isinstance(reply, list):
                for r in reply:
                    _check_reply(r)
            else:
                _check_reply(reply)


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**40, 10**400])
def test_integers_beyond_64_bits(fuzz_svc: ServiceProcess, big: int) -> None:
    """orjson reads an integer beyond 64 bits as a float (and one beyond a double's range
    not at all): a clear -32602 (or -32700) either way, never a crash."""
    with _ws(fuzz_svc) as ws:
        frame = f'{{"jsonrpc":"2.0","id":1,"method":"status","params":{{"limit":{big}}}}}'
        (reply,) = _exchange(ws, frame, True, 1)
        _check_reply(reply)
        assert reply["error"]["code"] in (ErrorCode.INVALID_PARAMS, ErrorCode.PARSE_ERROR)


def test_fuzzed_service_is_healthy(fuzz_svc: ServiceProcess) -> None:
    """Run last in this module: after all of the above, the service is up and clean."""
    assert fuzz_svc.alive()
    with _ws(fuzz_svc) as ws:
        (reply,) = _exchange(ws, '{"jsonrpc":"2.0","id":7,"method":"status"}', True, 1)
        assert reply["result"]["stats"]["running"] == 0
    assert Counter.internal == 0, "a fuzzed frame hit an internal error (-32603)"
    assert not fuzz_svc.errors(), fuzz_svc.errors()[:3]
