"""Events and subscribers: how notifications reach a client without a child ever waiting.

An `Event` is one notification; its JSON frame is encoded once and shared by every
subscriber. A `Subscriber` (one per connection) holds an ordered queue of events and, per
task stream it follows, a `Cursor`: the offset up to which it has been given output.

While a cursor is caught up, each chunk read from the pipe is queued to it as the live
event. When the queue holds more output than `max_bytes` (the client reads slower than the
task prints), the cursor falls behind: live chunks are no longer queued, and the
subscriber's reader later reads what it missed from the task's `OutputLog` in large
chunks, at the client's pace, until it reaches the live end and rejoins live delivery. No
byte is dropped, memory per subscriber stays bounded, and `process.completed` of a task
is held until its cursors have delivered the last byte. `process.dropped` remains for one
case only: bytes a failed log write lost (the disk was full) that a cursor had not yet
been given live.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from cc_executor import jsonrpc
from cc_executor.engine.output import OutputLog, encode_data, incomplete_utf8_tail
from cc_executor.protocol import Notification, Stream

CLAUDE_EVENT_WEIGHT = 4096
CATCH_UP_BYTES = 1024 * 1024  # one frame of output read back from a log


class Event:
    __slots__ = ("_frame", "_params", "method", "nbytes", "task_id", "weight")

    def __init__(self, method: str, params: dict[str, Any], nbytes: int = 0) -> None:
        self.method = method
        self._params: dict[str, Any] | None = params
        self.task_id: str = params["task_id"]
        self.nbytes = nbytes  # raw output bytes carried; 0 for control events
        # What it costs a subscriber's budget. claude.event summaries count too (their
        # texts are cut to a few KB): a stalled client must not pile them up without bound.
        self.weight = nbytes or (CLAUDE_EVENT_WEIGHT if method == Notification.CLAUDE_EVENT else 0)
        self._frame: bytes | None = None

    @property
    def params(self) -> dict[str, Any]:
        assert self._params is not None
        return self._params

    def frame(self) -> bytes:
        """The JSON-RPC notification as bytes, encoded at most once."""
        if self._frame is None:
            self._frame = jsonrpc.encode(jsonrpc.notification(self.method, self.params))
        return self._frame

    def binary_frame(self) -> bytes | None:
        """The binary frame of this event for a connection that asked for binary output
        (None: it goes as text, `frame()`)."""
        return None

    def wire_frame(self, binary: bool) -> tuple[bytes, bool]:
        """(frame, is_binary) for a connection that did or did not ask for binary output."""
        if binary and (frame := self.binary_frame()) is not None:
            return frame, True
        return self.frame(), False

    def __repr__(self) -> str:
        return f"Event({self.method}, {self.task_id}, nbytes={self.nbytes})"


class OutputEvent(Event):
    """One `process.output` chunk. Its text form (UTF-8, else base64) is made only when a
    text connection or an in-process consumer needs it; a connection that asked for binary
    output gets the bytes as they came (protocol.py, BINARY_OUTPUT), with no decoding or
    JSON escaping of them on either side."""

    __slots__ = ("_binary", "data", "offset", "stream")

    def __init__(self, task_id: str, stream: Stream, offset: int, data: bytes) -> None:
        super().__init__(Notification.OUTPUT, {"task_id": task_id}, len(data))
        self._params = None  # built on first use
        self.stream = stream
        self.offset = offset
        self.data = data
        self._binary: bytes | None = None

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            text, encoding = encode_data(self.data)
            params: dict[str, Any] = {
                "task_id": self.task_id,
                "stream": self.stream.value,
                "offset": self.offset,
                "data": text,
            }
            if encoding:
                params["encoding"] = encoding
            self._params = params
        return self._params

    def binary_frame(self) -> bytes:
        if self._binary is None:
            head = jsonrpc.encode(
                jsonrpc.notification(
                    self.method,
                    {"task_id": self.task_id, "stream": self.stream.value, "offset": self.offset},
                )
            )
            self._binary = b"".join((head, b"\n", self.data))
        return self._binary


# The tasks held while one request is served (see `holds_of_this_request`).
_request_holds: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "request_holds", default=None
)


@contextlib.contextmanager
def holds_of_this_request() -> Iterator[list[str]]:
    """Collect the ids of the tasks held while the enclosed request is served, so its
    server releases exactly those once its reply is out (not another request's, whose
    reply may still be on its way)."""
    held: list[str] = []
    token = _request_holds.set(held)
    try:
        yield held
    finally:
        _request_holds.reset(token)


class Cursor:
    """A subscriber's position in one task stream's log."""

    __slots__ = ("behind", "log", "pos", "stream", "task_id")

    def __init__(self, task_id: str, stream: Stream, log: OutputLog, pos: int) -> None:
        self.task_id = task_id
        self.stream = stream
        self.log = log
        self.pos = pos  # output before this offset has been given to the subscriber
        self.behind = pos < log.notify_end or pos > log.notify_end


class SubscriberClosed(Exception):
    """get() on a subscriber that was closed."""


class Subscriber:
    """One consumer's ordered events (a connection, an API caller) and its cursors."""

    def __init__(self, max_bytes: int, name: str = "") -> None:
        self.max_bytes = max(1, max_bytes)
        self.name = name
        self._queue: deque[Event] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self._cursors: dict[tuple[str, Stream], Cursor] = {}
        self._lagging: dict[tuple[str, Stream], Cursor] = {}  # cursors that fell behind
        # Events of a task that must follow output a cursor has not delivered yet.
        self._deferred: dict[str, list[Event]] = {}
        self.dropped_bytes = 0  # lost to failed log writes before this subscriber got them
        self.dropped_summaries = 0  # claude.event notifications shed while over budget
        # A connection sets hold_new_tasks; the engine then holds each task it creates
        # for this subscriber, and the connection releases them after the reply.
        self.hold_new_tasks = False
        self._held: dict[str, list[Event]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------ cursors

    def follow(self, task_id: str, stream: Stream, log: OutputLog, pos: int | None) -> None:
        """Follow a stream from `pos` (None: from the live end on)."""
        key = (task_id, stream)
        cur = Cursor(task_id, stream, log, log.notify_end if pos is None else pos)
        self._cursors[key] = cur
        self._lagging.pop(key, None)
        if cur.behind:
            self._lagging[key] = cur
            self._wakeup.set()

    def forget(self, task_id: str) -> None:
        """Stop following a task (its held-back events go too)."""
        for stream in Stream:
            self._cursors.pop((task_id, stream), None)
            self._lagging.pop((task_id, stream), None)
        self._deferred.pop(task_id, None)

    def following(self, task_id: str) -> bool:
        return any((task_id, s) in self._cursors for s in Stream)

    def _behind_on(self, task_id: str) -> bool:
        for stream in Stream:
            cur = self._cursors.get((task_id, stream))
            if cur is not None and cur.behind:
                return True
        return False

    # ------------------------------------------------------------ the engine's side

    def offer(self, event: OutputEvent, log: OutputLog) -> None:
        """A live output chunk: queued if this subscriber's cursor is at it and there is
        room, else the cursor falls (or stays) behind and reads it from the log later."""
        if self._closed:
            return
        key = (event.task_id, event.stream)
        cur = self._cursors.get(key)
        if cur is None:  # following the task but not yet this stream: live from here
            cur = self._cursors[key] = Cursor(key[0], key[1], log, event.offset)
            cur.behind = False
        if cur.behind:
            self._wakeup.set()  # more to read back
            return
        if self._queued_bytes + event.nbytes > self.max_bytes and event.task_id not in self._held:
            cur.behind = True
            self._lagging[key] = cur
            self._wakeup.set()
            return
        cur.pos += event.nbytes
        self.push(event)

    def push(self, event: Event) -> None:
        """A control event, a reply, or a chunk `offer` let through: never dropped."""
        if self._held:
            waiting = self._held.get(event.task_id)
            if waiting is not None:
                waiting.append(event)
                self._queued_bytes += event.weight
                return
        if event.method == Notification.COMPLETED and self._behind_on(event.task_id):
            self._deferred.setdefault(event.task_id, []).append(event)
            return
        if event.method == Notification.CLAUDE_EVENT and self._queued_bytes > self.max_bytes:
            self.dropped_summaries += 1  # a summary of lines that are in the log
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self._closed:
            return
        self._queue.append(event)
        self._queued_bytes += event.weight
        self._wakeup.set()
        if event.method == Notification.COMPLETED:
            self.forget(event.task_id)

    def hold(self, task_id: str) -> None:
        """Keep this task's events back until `release_held()` (called once the reply of
        the request that created it has been delivered)."""
        self._held.setdefault(task_id, [])
        request = _request_holds.get()
        if request is not None:
            request.append(task_id)

    def release_held(self, task_ids: list[str]) -> None:
        """Deliver the held events of these tasks, in order, and stop holding them."""
        for task_id in task_ids:
            for ev in self._held.pop(task_id, ()):
                self._queued_bytes -= ev.weight
                self.push(ev)
        if self._lagging:
            self._wakeup.set()  # reads back that waited for the reply

    # ------------------------------------------------------------ the reader's side

    def get_nowait(self) -> Event | None:
        if not self._queue:
            return None
        ev = self._queue.popleft()
        if ev.weight:
            self._queued_bytes -= ev.weight
        return ev

    def _next_read(self) -> tuple[Cursor, int, int] | None:
        """The next cursor that fell behind and can move (round robin), with the live end
        and how many bytes to read; a cursor that reached the live end rejoins live
        delivery on the way. None when no cursor can move."""
        for key, cur in list(self._lagging.items()):
            if cur.task_id in self._held:
                continue  # its reads follow the reply that is on its way (`hold`)
            del self._lagging[key]
            self._lagging[key] = cur
            end = cur.log.notify_end
            if cur.pos >= end:
                if cur.pos == end or cur.log.closed:
                    self._caught_up(cur)
                continue  # past the live end: wait until the output reaches it
            return cur, end, min(CATCH_UP_BYTES, end - cur.pos)
        return None

    def _read_event(self, cur: Cursor, end: int, data: bytes | None) -> Event | None:
        """The event for what a cursor read from `cur.pos` (None: nothing to send)."""
        log = cur.log
        if data is None:  # lost to a failed log write: say so, move on
            lost_to = log.notify_end if log.failed_at is None else log._base
            lost_to = max(min(lost_to, end), cur.pos + 1)
            ev = Event(
                Notification.DROPPED,
                {
                    "task_id": cur.task_id,
                    "stream": cur.stream.value,
                    "from_offset": cur.pos,
                    "to_offset": lost_to,
                },
            )
            self.dropped_bytes += lost_to - cur.pos
            cur.pos = lost_to
            return ev
        if not data:
            return None
        if cur.pos + len(data) < end:
            cut = incomplete_utf8_tail(data)
            if cut and cut < len(data):
                data = data[:-cut]
        ev = OutputEvent(cur.task_id, cur.stream, cur.pos, data)
        cur.pos += len(data)
        return ev

    def read_back_now(self) -> Event | None:
        """`read_back` for logs on this host, whose reads do not wait (in-process callers)."""
        for _ in range(len(self._lagging)):
            job = self._next_read()
            if job is None:
                return None
            cur, end, n = job
            ev = self._read_event(cur, end, cur.log.read(cur.pos, n))
            if ev is not None:
                return ev
        return None

    async def read_back(self) -> Event | None:
        """The next chunk a cursor that fell behind missed, read from its log (a local
        file, or in a cluster a Redis stream: `aread`); a cursor that reaches the live end
        rejoins live delivery. None when no cursor can move."""
        for _ in range(len(self._lagging)):
            job = self._next_read()
            if job is None:
                return None
            cur, end, n = job
            pos = cur.pos
            data = await cur.log.aread(pos, n)
            if self._cursors.get((cur.task_id, cur.stream)) is not cur or cur.pos != pos:
                continue  # forgotten or moved while the read waited
            ev = self._read_event(cur, end, data)
            if ev is not None:
                return ev
        return None

    def position(self, task_id: str, stream: Stream) -> int | None:
        """Where this subscriber's cursor in a stream is (None: not following it)."""
        cur = self._cursors.get((task_id, stream))
        return None if cur is None else cur.pos

    def fall_behind(self, task_id: str, stream: Stream) -> None:
        """Read the rest of a stream from its log rather than from live events (a remote
        log whose end became known at once: its task completed)."""
        key = (task_id, stream)
        cur = self._cursors.get(key)
        if cur is not None and not cur.behind:
            cur.behind = True
            self._lagging[key] = cur
            self._wakeup.set()

    def _caught_up(self, cur: Cursor) -> None:
        cur.behind = False
        self._lagging.pop((cur.task_id, cur.stream), None)
        if not self._behind_on(cur.task_id):
            for ev in self._deferred.pop(cur.task_id, ()):
                self._deliver(ev)

    async def get(self) -> Event:
        """The next event: queued ones first, then output read back for a cursor that
        fell behind. Raises SubscriberClosed once closed and drained."""
        while True:
            ev = self.get_nowait()
            if ev is not None:
                return ev
            if self._closed:
                raise SubscriberClosed
            self._wakeup.clear()
            ev = await self.read_back() if self._lagging else None
            if ev is not None:
                return ev
            if self._queue:
                continue
            await self._wakeup.wait()

    def close(self) -> None:
        self._closed = True
        self._cursors.clear()
        self._lagging.clear()
        self._deferred.clear()
        self._wakeup.set()


class CallbackSubscriber(Subscriber):
    """An in-process consumer: each event goes straight to a function, in order, with no
    queue (it never falls behind). Holds work as for any subscriber."""

    def __init__(self, fn: Callable[[Event], None], name: str = "") -> None:
        super().__init__(1 << 62, name=name)
        self._fn = fn

    def _deliver(self, event: Event) -> None:
        if not self._closed:
            self._fn(event)
            if event.method == Notification.COMPLETED:
                self.forget(event.task_id)

    def follow(self, task_id: str, stream: Stream, log: OutputLog, pos: int | None) -> None:
        super().follow(task_id, stream, log, pos)
        self._read_back_all()

    def release_held(self, task_ids: list[str]) -> None:
        super().release_held(task_ids)
        self._read_back_all()

    def _read_back_all(self) -> None:
        # No reader task drains it: read what it missed back now, then go live.
        while (ev := self.read_back_now()) is not None:
            self._deliver(ev)
