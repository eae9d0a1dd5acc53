"""Following one task while a tool call waits on it: output capture, progress text, clipping.

A `TaskWatch` is fed the task's notifications (`process.output`, `claude.event`,
`process.completed`, ...) from the transport's notification sink (`Watches.feed`),
synchronously and without copying more than it keeps: the first and last bytes of each
stream (enough to answer inline), the latest line or Claude event (the progress message),
and the completion. `follow` sleeps until a watched thing ends, reporting progress; `clip`
turns captured bytes into the head-and-tail text a tool returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cc_executor.client import ExecutorConnectionError, output_bytes
from cc_executor.protocol import Notification
from cc_executor.transport import CHANNEL_LOST
from mcp_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

Report = Callable[[str], Awaitable[None]]
"""Sends one progress notification with this message (the counter is the caller's)."""

MESSAGE_CHARS = 200

OUTPUT_PAGE_MAX = 1024 * 1024
"""The most bytes one get_execution_output call returns (its `limit` cap): every hint that
names a call stays within it."""


class OutputCapture:
    """The first `keep` bytes of a stream and its last `keep` bytes, plus its size.

    `complete` says the whole stream is held (nothing trimmed, no gap); otherwise the
    caller fetches what it needs from the task's log.
    """

    __slots__ = ("gap", "head", "keep", "last", "size", "tail", "trimmed")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0
        self.gap = False
        self.trimmed = False
        self.last = b""  # the latest chunk, for the progress message

    def add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end <= self.size:
            return  # a replay of bytes already held
        if offset > self.size:
            self.gap = True  # bytes [size, offset) never reached us
        elif offset < self.size:
            data = data[self.size - offset :]
        self.size = end
        self.last = data
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.keep:
                del self.tail[: len(self.tail) - self.keep]
                self.trimmed = True

    @property
    def complete(self) -> bool:
        return not self.gap and not self.trimmed

    def data(self) -> bytes:
        return bytes(self.head + self.tail)


def _last_line(data: bytes) -> str:
    text = data[-4096:].decode("utf-8", "replace")
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[-MESSAGE_CHARS:]
    return ""


def claude_event_text(params: dict[str, Any]) -> str:
    """A one-line summary of a `claude.event` notification, for a progress message."""
    inner = params.get("event")
    ev: dict[str, Any] = inner if isinstance(inner, dict) else params
    etype = ev.get("type")
    if etype == "system" and ev.get("subtype") == "init":
        return f"claude started (model {ev.get('model')}, session {ev.get('session_id')})"
    if etype == "system" and ev.get("subtype") == "api_retry":
        return f"claude: API retry {ev.get('attempt')}: {ev.get('error')}"
    if etype == "assistant":
        uses = [u.get("name") for u in ev.get("tool_uses") or () if isinstance(u, dict)]
        text = (ev.get("text") or "").strip().replace("\n", " ")
        if uses:
            text = (text + " " if text else "") + f"[tool: {', '.join(map(str, uses))}]"
        return f"claude: {text}"[:MESSAGE_CHARS]
    if etype == "user":
        return "claude: tool result received"
    if etype == "result":
        return f"claude finished ({ev.get('num_turns')} turns)"
    if etype == "rate_limit_event":
        return f"claude: rate limit {ev.get('status')}"
    return f"claude: {etype}"


class TaskWatch:
    """What a waiting tool call knows of one task, updated as its notifications arrive."""

    __slots__ = (
        "_message",
        "_message_version",
        "claude",
        "completed",
        "ended",
        "lost",
        "pid",
        "status",
        "stderr",
        "stdout",
        "task_id",
        "version",
    )

    def __init__(self, task_id: str | None, keep: int) -> None:
        self.task_id = task_id
        self.stdout = OutputCapture(keep)
        self.stderr = OutputCapture(keep // 4)
        self.completed: dict[str, Any] | None = None
        self.lost: BaseException | None = None
        self.pid: int | None = None
        self.status = "running"
        self.claude: str | None = None  # the latest Claude event summary
        self.version = 0  # bumps on every notification
        self.ended = asyncio.Event()  # completed, or its channel lost
        self._message = ""
        self._message_version = -1

    def feed(self, method: str, params: dict[str, Any]) -> None:
        if method == Notification.OUTPUT:
            cap = self.stdout if params.get("stream") == "stdout" else self.stderr
            cap.add(params["offset"], output_bytes(params))
        elif method == Notification.CLAUDE_EVENT:
            self.claude = claude_event_text(params)
        elif method == Notification.DROPPED:
            cap = self.stdout if params.get("stream") == "stdout" else self.stderr
            cap.gap = True
        elif method == Notification.STARTED:
            self.pid = params.get("pid")
        elif method in (Notification.PAUSED, Notification.RESUMED):
            self.status = str(params.get("status", self.status))
        elif method == Notification.COMPLETED:
            self.completed = params
            self.status = str(params.get("status"))
            self.ended.set()
        elif method == CHANNEL_LOST:
            self.fail(ExecutorConnectionError(str(params.get("error") or "connection lost")))
        self.version += 1

    def fail(self, exc: BaseException) -> None:
        """The channel feeding this watch is gone (a dropped service connection)."""
        if self.completed is None:
            self.lost = exc
            self.ended.set()

    @property
    def finished(self) -> bool:
        return self.completed is not None or self.lost is not None

    def message(self) -> str:
        """The progress message: latest Claude event, else latest output line, else status."""
        if self._message_version != self.version:
            self._message_version = self.version
            msg = self.claude or _last_line(self.stdout.last)
            if not msg and self.stderr.last:
                msg = "stderr: " + _last_line(self.stderr.last)
            if not msg:
                msg = f"{self.status} (pid {self.pid})" if self.pid else self.status
            if self.status == "paused":
                msg = f"[paused] {msg}"
            self._message = msg
        return self._message


class Watches:
    """The watches of the tasks tool calls wait on, fed from the transport's sink.

    A notification of a task nobody watches is dropped: a task's notifications come after
    the reply that names it, and the bridge opens its watch as soon as it has that reply
    (or before it subscribes to a task it did not start).
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._by_task: dict[str, TaskWatch] = {}

    def feed(self, method: str, params: dict[str, Any]) -> None:
        watch = self._by_task.get(params.get("task_id") or "")
        if watch is not None:
            watch.feed(method, params)

    def open(self, task_id: str) -> TaskWatch:
        watch = self._by_task[task_id] = TaskWatch(task_id, self.keep)
        return watch

    def get(self, task_id: str) -> TaskWatch | None:
        return self._by_task.get(task_id)

    def close(self, task_id: str) -> TaskWatch | None:
        return self._by_task.pop(task_id, None)


class Followed(Protocol):
    """Anything a wait can follow: a task's watch, or a task list run."""

    version: int  # bumps whenever there is something new to report
    ended: asyncio.Event  # set once it is finished

    @property
    def finished(self) -> bool: ...


async def follow(
    target: Followed,
    deadline: float | None,
    on_progress: Callable[[], Awaitable[None]] | None,
    s: BridgeSettings,
) -> None:
    """Sleep until `target` is finished or the deadline (loop time) passes, reporting progress.

    Only the end wakes the wait: output does not (a chatty task costs no wake-ups). With
    progress, it also looks every `progress_interval` and reports when something changed,
    or every `heartbeat_interval` when nothing did; a task ending sooner reports nothing.
    """
    loop = asyncio.get_running_loop()
    reported = -1
    reported_at = loop.time()
    while not target.finished:
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        wake = deadline
        if on_progress is not None:
            gap = s.progress_interval if target.version != reported else s.heartbeat_interval
            if now >= reported_at + gap:
                reported, reported_at = target.version, now
                try:
                    await on_progress()
                except Exception:  # a client that went away must not fail the wait
                    log.debug("progress notification failed", exc_info=True)
                continue
            tick = min(now + s.progress_interval, reported_at + gap)
            wake = tick if wake is None else min(wake, tick)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(wake):
                await target.ended.wait()


@dataclass(slots=True)
class Clip:
    """Output as returned inline: all of it, or its head and tail around a marker."""

    text: str
    truncated: bool
    total_bytes: int
    omitted_offset: int = 0
    omitted_bytes: int = 0


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def clip(head: bytes, tail: bytes, total: int, max_chars: int, task_id: str, stream: str) -> Clip:
    """Clip a stream to `max_chars` characters: head and tail with a marker naming the gap.

    `head` + `tail` is the whole stream when `len(head) + len(tail) == total`; otherwise
    they are its first and last bytes. Byte offsets in the marker are exact (undecodable
    bytes count as themselves), so `get_execution_output` fetches exactly the missing part.
    """
    whole = len(head) + len(tail) == total
    if whole:
        s = (head + tail).decode("utf-8", "surrogateescape")
        if len(s) <= max_chars:
            return Clip(_text(head + tail), False, total)
        hs, ts = s, s
    else:
        hs = head.decode("utf-8", "surrogateescape")
        ts = tail.decode("utf-8", "surrogateescape")
    half = max_chars // 2
    h = hs[:half]
    t = ts[len(ts) - half :] if len(ts) > half else ts
    hb = h.encode("utf-8", "surrogateescape")
    tb = t.encode("utf-8", "surrogateescape")
    start, end = len(hb), total - len(tb)
    omitted = end - start
    resource = ""
    if stream == "stdout":
        resource = f" or the resource cc-executor://tasks/{task_id}/output"
    call = (
        f'get_execution_output(task_id="{task_id}", stream="{stream}", offset={start}, '
        f"limit={min(omitted, OUTPUT_PAGE_MAX)})"
    )
    if omitted > OUTPUT_PAGE_MAX:  # more than one call may return: name the pages
        pages = -(-omitted // OUTPUT_PAGE_MAX)
        call += f", then again with offset=next_offset until it reaches {end} ({pages} pages)"
    marker = (
        f"\n\n[... {omitted} bytes of {stream} omitted (offset {start} to {end}); read them with "
        f"{call}{resource} ...]\n\n"
    )
    return Clip(_text(hb) + marker + _text(tb), True, total, start, omitted)


def omitted_range(c: Clip) -> dict[str, int]:
    """What a clipped result's `output_omitted` says: the first page to fetch (`offset`,
    `limit`, within what one get_execution_output call returns) and where the gap ends."""
    end = c.omitted_offset + c.omitted_bytes
    return {"offset": c.omitted_offset, "limit": min(c.omitted_bytes, OUTPUT_PAGE_MAX), "end": end}


def clip_text(text: str, max_chars: int, where: str) -> tuple[str, bool]:
    """`text` cut to `max_chars` around a marker saying how much is omitted and where it is
    whole; and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    half = max_chars // 2
    omitted = len(text) - 2 * half
    marker = f"\n\n[... {omitted} characters omitted; {where} ...]\n\n"
    return text[:half] + marker + text[-half:], True
