"""Events and subscribers: how task notifications reach a client without ever blocking a child.

An `Event` is one notification; its JSON frame is encoded once and shared by every
subscriber. A `Subscriber` is a bounded queue: when a reader stalls and its queued output
passes the byte budget, the oldest output chunks are dropped and replaced by a
`process.dropped` marker naming the byte range, which the client can fetch with `output`.
Control events (started, paused, completed ...) are never dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from cc_executor import jsonrpc
from cc_executor.protocol import Notification

CLAUDE_EVENT_WEIGHT = 4096


class Event:
    __slots__ = ("_frame", "method", "nbytes", "params", "task_id", "weight")

    def __init__(self, method: str, params: dict[str, Any], nbytes: int = 0) -> None:
        self.method = method
        self.params = params
        self.task_id: str = params["task_id"]
        self.nbytes = nbytes  # raw output bytes carried; 0 for control events
        # What it costs a subscriber's budget. claude.event summaries count too (their
        # texts are cut to a few KB): a stalled client must not pile them up without bound.
        self.weight = nbytes or (CLAUDE_EVENT_WEIGHT if method == Notification.CLAUDE_EVENT else 0)
        self._frame: bytes | None = None

    @property
    def is_output(self) -> bool:
        return self.nbytes > 0 and self.method == Notification.OUTPUT

    def frame(self) -> bytes:
        """The JSON-RPC notification as bytes, encoded at most once."""
        if self._frame is None:
            self._frame = jsonrpc.encode(jsonrpc.notification(self.method, self.params))
        return self._frame

    def __repr__(self) -> str:
        return f"Event({self.method}, {self.task_id}, nbytes={self.nbytes})"


class SubscriberClosed(Exception):
    """get() on a subscriber that was closed."""


class Subscriber:
    """A bounded, drop-oldest queue of events for one consumer (a connection, an API caller)."""

    def __init__(
        self,
        max_bytes: int,
        on_drop: Callable[[int], None] | None = None,
        name: str = "",
    ) -> None:
        self.max_bytes = max(1, max_bytes)
        self.name = name
        self._queue: deque[Event] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self._on_drop = on_drop
        self.dropped_bytes = 0
        self.dropped_summaries = 0  # claude.event notifications shed
        # Tasks whose events wait until the reply that named them has gone out: a client
        # learns a task's id from the `execute` reply before any notification of it.
        # A connection sets hold_new_tasks; the engine then holds each task it creates
        # for this subscriber, and the connection releases them after the reply.
        self.hold_new_tasks = False
        self._held: dict[str, list[Event]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    def hold(self, task_id: str) -> None:
        """Keep this task's events back until `release_held()` (called once the reply of
        the request that created it has been delivered)."""
        self._held.setdefault(task_id, [])

    def release_held(self) -> None:
        """Deliver every held event, in order, and stop holding."""
        if not self._held:
            return
        held, self._held = self._held, {}
        for events in held.values():
            for ev in events:
                self.push(ev)

    def push(self, event: Event) -> None:
        if self._held:
            waiting = self._held.get(event.task_id)
            if waiting is not None:
                waiting.append(event)
                return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self._closed:
            return
        self._queue.append(event)
        if event.weight:
            self._queued_bytes += event.weight
            if self._queued_bytes > self.max_bytes:
                self._shed()
        self._wakeup.set()

    def _shed(self) -> None:
        """Drop the oldest output down to half the budget, leaving gap markers in place.

        A gap joins the marker already queued for its task and stream when nothing of that
        stream (nor a control event of that task) was kept after it, so interleaved streams
        cannot pile up markers: at most one per stream between two kept events.
        """
        target = self.max_bytes // 2
        kept: deque[Event] = deque()
        open_markers: dict[tuple[str, str], Event] = {}
        dropped = 0
        for ev in self._queue:
            if self._queued_bytes > target and ev.method == Notification.CLAUDE_EVENT:
                # A summary of lines that are in the log: dropped without a marker.
                self._queued_bytes -= ev.weight
                self.dropped_summaries += 1
                continue
            if self._queued_bytes > target and ev.is_output:
                self._queued_bytes -= ev.nbytes
                dropped += ev.nbytes
                p = ev.params
                start = p["offset"]
                end = start + ev.nbytes
                key = (ev.task_id, p["stream"])
                marker = open_markers.get(key)
                if marker is not None and marker.params["to_offset"] == start:
                    marker.params["to_offset"] = end
                    marker._frame = None
                else:
                    marker = Event(
                        Notification.DROPPED,
                        {
                            "task_id": ev.task_id,
                            "stream": p["stream"],
                            "from_offset": start,
                            "to_offset": end,
                        },
                    )
                    kept.append(marker)
                    open_markers[key] = marker
            else:
                kept.append(ev)
                stream: str | None = ev.params.get("stream")
                if ev.method == Notification.DROPPED and stream is not None:
                    open_markers[(ev.task_id, stream)] = ev
                elif ev.is_output and stream is not None:
                    open_markers.pop((ev.task_id, stream), None)
                elif ev.task_id and open_markers:
                    # A control event of this task: later gaps must come after it.
                    for k in [k for k in open_markers if k[0] == ev.task_id]:
                        del open_markers[k]
        self._queue = kept
        self.dropped_bytes += dropped
        if self._on_drop is not None and dropped:
            self._on_drop(dropped)

    def get_nowait(self) -> Event | None:
        if not self._queue:
            return None
        ev = self._queue.popleft()
        if ev.weight:
            self._queued_bytes -= ev.weight
        return ev

    async def get(self) -> Event:
        """The next event; raises SubscriberClosed once closed and drained."""
        while True:
            ev = self.get_nowait()
            if ev is not None:
                return ev
            if self._closed:
                raise SubscriberClosed
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()


class CallbackSubscriber(Subscriber):
    """An in-process consumer: each event goes straight to a function, in order, with no
    queue (it never falls behind). Holds work as for any subscriber."""

    def __init__(self, fn: Callable[[Event], None], name: str = "") -> None:
        super().__init__(1, name=name)
        self._fn = fn

    def _deliver(self, event: Event) -> None:
        if not self._closed:
            self._fn(event)
