"""Subscriber cursors: a reader at any speed gets every byte in order, with bounded memory,
and a task's completion only after its last byte."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cc_executor.engine import Event, Subscriber, SubscriberClosed
from cc_executor.engine.events import OutputEvent
from cc_executor.engine.output import LogWriter, OutputLog
from cc_executor.protocol import Notification, Stream

MB = 1024 * 1024


@pytest.fixture
async def writer() -> AsyncIterator[LogWriter]:
    w = LogWriter()
    w.start()
    yield w
    await asyncio.to_thread(w.stop)


class FakeTask:
    """What the engine does with a task's stream, minus the process: append, then offer."""

    def __init__(self, task_id: str, path: Path, writer: LogWriter) -> None:
        self.task_id = task_id
        self.logs = {s: OutputLog(path.with_suffix(f".{s.value}"), writer) for s in Stream}
        self.subs: list[Subscriber] = []

    def write(self, stream: Stream, data: bytes) -> None:
        out = self.logs[stream]
        chunk = out.append(data)
        if chunk is not None:
            ev = OutputEvent(self.task_id, stream, chunk[0], chunk[1])
            for sub in self.subs:
                sub.offer(ev, out)

    def complete(self) -> None:
        for stream, out in self.logs.items():
            rest = out.finish()
            if rest is not None:
                ev = OutputEvent(self.task_id, stream, rest[0], rest[1])
                for sub in self.subs:
                    sub.offer(ev, out)
        ev = Event(Notification.COMPLETED, {"task_id": self.task_id, "status": "completed"})
        for sub in self.subs:
            sub.push(ev)


async def collect(
    sub: Subscriber, task_id: str, start: int = 0
) -> tuple[dict[str, bytearray], list[Event]]:
    """Read until the task's completion; check offsets tile each stream with no gap."""
    got: dict[str, bytearray] = {s.value: bytearray() for s in Stream}
    base = {Stream.STDOUT.value: start, Stream.STDERR.value: 0}
    events: list[Event] = []
    while True:
        ev = await sub.get()
        events.append(ev)
        if ev.method == Notification.OUTPUT:
            stream = ev.params["stream"]
            assert ev.params["offset"] == base[stream] + len(got[stream]), (ev, len(got[stream]))
            got[stream] += ev.params["data"].encode()
        assert ev.method != Notification.DROPPED
        if ev.method == Notification.COMPLETED and ev.task_id == task_id:
            return got, events


async def test_a_stalled_reader_holds_one_budget_and_later_gets_every_byte(
    tmp_path: Path, writer: LogWriter
) -> None:
    task = FakeTask("t", tmp_path / "t", writer)
    sub = Subscriber(1 * MB)
    task.subs.append(sub)
    rng = random.Random(1)
    expected = bytearray()
    for i in range(1600):  # 100 MB in 64 KB chunks, nobody reading
        piece = bytes([97 + i % 26]) * 65536
        expected += piece
        task.write(Stream.STDOUT, piece)
        if i % 400 == 0:
            sub.push(Event(Notification.PAUSED, {"task_id": "t", "seq": i}))
    task.write(Stream.STDERR, b"err\n")
    task.complete()
    queued = sum(ev.nbytes for ev in list(sub._queue))
    assert queued <= 1 * MB  # what it holds is bounded whatever the task printed
    got, events = await collect(sub, "t")
    assert got["stdout"] == expected
    assert got["stderr"] == b"err\n"
    assert events[-1].method == Notification.COMPLETED  # after the last byte
    paused = [ev.params["seq"] for ev in events if ev.method == Notification.PAUSED]
    assert paused == [0, 400, 800, 1200]  # control events are never dropped, in order
    assert rng  # deterministic data above


async def test_many_readers_at_different_speeds_each_get_everything(
    tmp_path: Path, writer: LogWriter
) -> None:
    task = FakeTask("t", tmp_path / "t", writer)
    subs = [Subscriber(b) for b in (64 * 1024, 512 * 1024, 8 * MB)]
    task.subs.extend(subs)
    rng = random.Random(5)
    data = rng.randbytes(6 * MB).hex().encode()[: 6 * MB]

    async def reader(sub: Subscriber, pause: float) -> bytes:
        out = bytearray()
        while True:
            ev = await sub.get()
            if ev.method == Notification.OUTPUT:
                assert ev.params["offset"] == len(out)
                out += ev.params["data"].encode()
            elif ev.method == Notification.COMPLETED:
                return bytes(out)
            if pause:
                await asyncio.sleep(pause)

    speeds = (0.002, 0.0, 0.0005)
    readers = [asyncio.create_task(reader(s, p)) for s, p in zip(subs, speeds, strict=True)]
    pos = 0
    while pos < len(data):
        n = rng.randint(1000, 200_000)
        task.write(Stream.STDOUT, data[pos : pos + n])
        pos += n
        await asyncio.sleep(0)
    task.complete()
    results = await asyncio.wait_for(asyncio.gather(*readers), 60)
    assert all(r == data for r in results)


async def test_following_from_an_offset_reads_back_then_goes_live(
    tmp_path: Path, writer: LogWriter
) -> None:
    task = FakeTask("t", tmp_path / "t", writer)
    task.write(Stream.STDOUT, b"0123456789" * 1000)
    sub = Subscriber(MB)
    sub.follow("t", Stream.STDOUT, task.logs[Stream.STDOUT], 5)
    task.subs.append(sub)
    task.write(Stream.STDOUT, b"live!")
    task.complete()
    got, _ = await collect(sub, "t", start=5)
    assert bytes(got["stdout"]) == (b"0123456789" * 1000)[5:] + b"live!"


async def test_a_finished_log_is_followed_the_same_way(tmp_path: Path, writer: LogWriter) -> None:
    path = tmp_path / "done.stdout"
    path.write_bytes(b"x" * (3 * MB + 7))
    sub = Subscriber(64 * 1024)
    sub.follow("d", Stream.STDOUT, OutputLog.finished(path, 3 * MB + 7), 1)
    sub.push(Event(Notification.COMPLETED, {"task_id": "d", "status": "completed"}))
    got, events = await collect(sub, "d", start=1)
    assert len(got["stdout"]) == 3 * MB + 6
    assert max(ev.nbytes for ev in events) <= 1 * MB  # read back in bounded chunks


async def test_bytes_a_failed_log_write_lost_are_named_exactly(
    tmp_path: Path, writer: LogWriter
) -> None:
    out = OutputLog(tmp_path / "no-such-dir" / "log", writer)
    sub = Subscriber(10)  # too small for anything: the cursor falls behind at once
    out.append(b"a" * 100)
    ev = OutputEvent("t", Stream.STDOUT, 0, b"a" * 100)
    sub.offer(ev, out)
    out.finish()
    await asyncio.to_thread(writer.stop)  # the failed write has happened
    sub.push(Event(Notification.COMPLETED, {"task_id": "t", "status": "completed"}))
    first = await sub.get()
    assert first.method == Notification.DROPPED
    assert (first.params["from_offset"], first.params["to_offset"]) == (0, 100)
    assert sub.dropped_bytes == 100
    assert (await sub.get()).method == Notification.COMPLETED


def test_held_events_follow_the_release() -> None:
    sub = Subscriber(MB)
    sub.hold("t")
    sub.push(Event(Notification.STARTED, {"task_id": "t"}))
    sub.push(Event("reply", {"task_id": ""}))
    assert [e.method for e in (sub.get_nowait(),)] == ["reply"]
    assert sub.get_nowait() is None
    sub.release_held(["t"])
    ev = sub.get_nowait()
    assert ev is not None and ev.method == Notification.STARTED


def test_control_events_never_dropped_even_alone() -> None:
    sub = Subscriber(10)
    for i in range(1000):
        sub.push(Event(Notification.PAUSED, {"task_id": "t", "seq": i}))
    got = []
    while (ev := sub.get_nowait()) is not None:
        got.append(ev.params["seq"])
    assert got == list(range(1000))


async def test_get_waits_then_raises_when_closed() -> None:
    sub = Subscriber(MB)
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not getter.done()
    sub.push(Event(Notification.STARTED, {"task_id": "t"}))
    assert (await getter).method == Notification.STARTED
    sub.push(Event(Notification.COMPLETED, {"task_id": "t"}))
    sub.close()
    sub.push(Event("late", {"task_id": "t"}))  # ignored once closed
    assert (await sub.get()).method == Notification.COMPLETED  # drained first
    with pytest.raises(SubscriberClosed):
        await sub.get()


def test_claude_event_summaries_are_shed_past_the_budget() -> None:
    sub = Subscriber(64 * 1024)
    for i in range(1000):
        sub.push(Event(Notification.CLAUDE_EVENT, {"task_id": "t", "event": {"n": i}}))
    sub.push(Event(Notification.COMPLETED, {"task_id": "t", "status": "completed"}))
    got = []
    while (ev := sub.get_nowait()) is not None:
        got.append(ev)
    summaries = [ev for ev in got if ev.method == Notification.CLAUDE_EVENT]
    assert len(summaries) <= 17  # bounded by the budget, not by how many came
    assert sub.dropped_summaries == 1000 - len(summaries)
    assert got[-1].method == Notification.COMPLETED  # control events are never shed
