"""Pure parts of the bridge: output capture, clipping with exact offsets, progress text."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.protocol import Notification
from mcp_bridge.watch import OutputCapture, TaskWatch, claude_event_text, clip


def _feed(cap: OutputCapture, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        cap.add(i, data[i : i + step])


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode),
    max_chars=st.integers(min_value=10, max_value=400),
    step=st.integers(min_value=1, max_value=700),
)
def test_clip_offsets_are_exact(data: bytes, max_chars: int, step: int) -> None:
    cap = OutputCapture(2 * max_chars)
    _feed(cap, data, step)
    assert cap.size == len(data)
    if cap.complete:
        assert cap.data() == data
        head, tail = cap.data(), b""
    else:
        head, tail = bytes(cap.head), bytes(cap.tail)
        assert data.startswith(head) and data.endswith(tail)
    c = clip(head, tail, len(data), max_chars, "t1", "stdout")
    assert c.total_bytes == len(data)
    if not c.truncated:
        assert c.text == data.decode("utf-8", "replace")
        return
    start, omitted = c.omitted_offset, c.omitted_bytes
    assert 0 < omitted and start + omitted <= len(data)
    head_text, _, rest = c.text.partition("\n\n[... ")
    tail_text = rest.split("...]\n\n", 1)[1]
    assert head_text == data[:start].decode("utf-8", "replace")
    assert tail_text == data[start + omitted :].decode("utf-8", "replace")
    assert f"offset={start}, limit={omitted}" in c.text
    assert len(head_text) <= max_chars and len(tail_text) <= max_chars


def test_capture_ignores_replays_and_marks_gaps() -> None:
    cap = OutputCapture(8)
    cap.add(0, b"abcd")
    cap.add(0, b"abcd")  # replayed after a resubscribe
    cap.add(2, b"cdef")  # overlaps
    assert cap.data() == b"abcdef" and cap.complete
    cap.add(10, b"zz")  # bytes 6..10 never arrived
    assert not cap.complete and cap.size == 12


def test_watch_follows_notifications() -> None:
    w = TaskWatch("t1", 100)
    assert w.message() == "running"
    w.feed(Notification.STARTED, {"task_id": "t1", "pid": 42})
    assert w.message() == "running (pid 42)"
    w.feed(
        Notification.OUTPUT, {"task_id": "t1", "stream": "stdout", "offset": 0, "data": "a\nb\n"}
    )
    assert w.message() == "b"
    raw = base64.b64encode(b"\xff\xfe").decode()
    w.feed(
        Notification.OUTPUT,
        {"task_id": "t1", "stream": "stdout", "offset": 4, "data": raw, "encoding": "base64"},
    )
    assert w.stdout.data() == b"a\nb\n\xff\xfe"
    w.feed(Notification.PAUSED, {"task_id": "t1", "status": "paused"})
    assert w.message().startswith("[paused]")
    w.feed(
        Notification.CLAUDE_EVENT,
        {
            "task_id": "t1",
            "event": {"type": "assistant", "text": "Working", "tool_uses": [{"name": "Bash"}]},
        },
    )
    assert w.message() == "[paused] claude: Working [tool: Bash]"
    assert not w.finished
    w.feed(Notification.COMPLETED, {"task_id": "t1", "status": "completed", "exit_code": 0})
    assert w.finished and w.status == "completed"


def test_claude_event_text() -> None:
    assert "session s1" in claude_event_text(
        {"event": {"type": "system", "subtype": "init", "model": "m", "session_id": "s1"}}
    )
    assert claude_event_text({"event": {"type": "result", "num_turns": 3}}) == (
        "claude finished (3 turns)"
    )
    assert claude_event_text({"type": "user"}) == "claude: tool result received"
