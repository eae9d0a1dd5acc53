"""Subscriber: a stalled reader costs bounded memory, and every lost byte is named exactly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cc_executor.engine import Event, Subscriber, SubscriberClosed
from cc_executor.protocol import Notification

MB = 1024 * 1024
CHUNK = 64 * 1024
_DATA = "y" * CHUNK  # shared by every event: the test itself stays small


def output(task: str, stream: str, offset: int, n: int = CHUNK) -> Event:
    data = _DATA if n == CHUNK else "y" * n
    return Event(
        Notification.OUTPUT, {"task_id": task, "stream": stream, "offset": offset, "data": data}, n
    )


def control(task: str, method: str, seq: int) -> Event:
    return Event(method, {"task_id": task, "seq": seq})


def drain(sub: Subscriber) -> list[Event]:
    out = []
    while (ev := sub.get_nowait()) is not None:
        out.append(ev)
    return out


def check_tiling(events: list[Event], task: str, stream: str, total: int) -> tuple[int, int]:
    """Output and dropped ranges of one stream cover [0, total) exactly, in order.

    Returns (bytes delivered, bytes dropped).
    """
    pos = delivered = dropped = 0
    for ev in events:
        p: dict[str, Any] = ev.params
        if ev.task_id != task or p.get("stream") != stream:
            continue
        if ev.method == Notification.OUTPUT:
            assert p["offset"] == pos, (ev, pos)
            pos += ev.nbytes
            delivered += ev.nbytes
        elif ev.method == Notification.DROPPED:
            assert p["from_offset"] == pos, (p, pos)
            assert p["to_offset"] > p["from_offset"]
            dropped += p["to_offset"] - p["from_offset"]
            pos = p["to_offset"]
    assert pos == total
    return delivered, dropped


def test_100mb_into_1mb_subscriber_stays_bounded() -> None:
    drops: list[int] = []
    sub = Subscriber(1 * MB, on_drop=drops.append)
    total = 100 * MB
    n_chunks = total // CHUNK
    peak_len = 0
    sub.push(control("t", Notification.STARTED, 0))
    for i in range(n_chunks):
        sub.push(output("t", "stdout", i * CHUNK))
        if i % 100 == 50:
            sub.push(control("t", Notification.PAUSED if i % 200 == 50 else "x.other", i))
        peak_len = max(peak_len, len(sub))
    sub.push(control("t", Notification.COMPLETED, n_chunks))

    events = drain(sub)
    queued_output = sum(ev.nbytes for ev in events)
    assert queued_output <= 1 * MB
    # Bounded in events too: a budget's worth of chunks, the control events (never dropped)
    # and at most one marker between two of them.
    controls = [ev for ev in events if ev.method not in (Notification.OUTPUT, "process.dropped")]
    assert peak_len <= 1 * MB // CHUNK + 1 + 2 * len(controls) + 1
    # Every control event kept, in order.
    assert [ev.params["seq"] for ev in controls] == sorted(ev.params["seq"] for ev in controls)
    assert len(controls) == 2 + len([i for i in range(n_chunks) if i % 100 == 50])
    assert controls[0].method == Notification.STARTED
    assert controls[-1].method == Notification.COMPLETED
    # The newest output survives; markers name exactly what is missing.
    delivered, dropped = check_tiling(events, "t", "stdout", total)
    assert delivered == queued_output
    assert dropped == total - delivered == sum(drops) == sub.dropped_bytes
    assert events[-2].method == Notification.OUTPUT
    assert events[-2].params["offset"] == total - CHUNK


def test_interleaved_streams_and_tasks_keep_markers_bounded() -> None:
    """Two tasks, two streams each, interleaved: markers merge per stream, never pile up."""
    sub = Subscriber(1 * MB)
    per_stream = 20 * MB
    keys = [("a", "stdout"), ("a", "stderr"), ("b", "stdout"), ("b", "stderr")]
    peak_len = 0
    for i in range(per_stream // CHUNK):
        for task, stream in keys:
            sub.push(output(task, stream, i * CHUNK))
        peak_len = max(peak_len, len(sub))
    events = drain(sub)
    assert sum(ev.nbytes for ev in events) <= 1 * MB
    markers = [ev for ev in events if ev.method == Notification.DROPPED]
    assert len(markers) <= 2 * len(keys)
    assert peak_len <= 1 * MB // CHUNK + 2 * len(keys) + 1
    total_dropped = 0
    for task, stream in keys:
        _, dropped = check_tiling(events, task, stream, per_stream)
        total_dropped += dropped
    assert total_dropped == sub.dropped_bytes


def test_frame_of_a_merged_marker_is_current() -> None:
    sub = Subscriber(4 * CHUNK)
    for i in range(6):
        sub.push(output("t", "stdout", i * CHUNK))
    first = sub.get_nowait()
    assert first is not None and first.method == Notification.DROPPED
    import orjson

    frame = orjson.loads(first.frame())
    assert frame["method"] == "process.dropped"
    assert frame["params"] == first.params
    assert frame["params"]["from_offset"] == 0


def test_control_events_never_dropped_even_alone() -> None:
    sub = Subscriber(10)
    for i in range(1000):
        sub.push(control("t", Notification.PAUSED, i))
    assert [ev.params["seq"] for ev in drain(sub)] == list(range(1000))


def test_oversized_single_chunk_becomes_a_marker() -> None:
    sub = Subscriber(1000)
    sub.push(output("t", "stdout", 0, 5000))
    sub.push(control("t", Notification.COMPLETED, 1))
    events = drain(sub)
    assert [ev.method for ev in events] == [Notification.DROPPED, Notification.COMPLETED]
    assert events[0].params["from_offset"] == 0 and events[0].params["to_offset"] == 5000


async def test_get_waits_then_raises_when_closed() -> None:
    sub = Subscriber(MB)
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not getter.done()
    sub.push(control("t", Notification.STARTED, 0))
    ev = await getter
    assert ev.method == Notification.STARTED
    sub.push(control("t", Notification.COMPLETED, 1))
    sub.close()
    sub.push(control("t", "late", 2))  # ignored once closed
    assert (await sub.get()).method == Notification.COMPLETED  # drained first
    with pytest.raises(SubscriberClosed):
        await sub.get()


def test_claude_event_summaries_count_and_are_shed_without_markers() -> None:
    sub = Subscriber(64 * 1024)
    for i in range(1000):
        sub.push(Event(Notification.CLAUDE_EVENT, {"task_id": "t", "event": {"n": i}}))
    sub.push(Event(Notification.COMPLETED, {"task_id": "t", "status": "completed"}))
    got = []
    while (ev := sub.get_nowait()) is not None:
        got.append(ev)
    summaries = [ev for ev in got if ev.method == Notification.CLAUDE_EVENT]
    assert len(summaries) <= 16  # bounded by the budget, not by how many came
    assert sub.dropped_summaries == 1000 - len(summaries)
    assert [ev.params["event"]["n"] for ev in summaries] == sorted(
        ev.params["event"]["n"] for ev in summaries
    )  # the newest kept, in order
    assert got[-1].method == Notification.COMPLETED  # control events are never shed
    assert not [ev for ev in got if ev.method == Notification.DROPPED]
