"""A task stream's output as a log: the source of truth that every reader reads by offset.

The loop appends each chunk as the pipe gives it (up to 1 MiB) and hands it to one
writer thread, so a disk write never holds up the loop; until the thread has written a
chunk, reads of its range are served from memory. Readers (a subscriber's cursor, the
`output` method) ask for any byte range, `read(start, limit)`, and get it byte-exact.

Notification text stays text: `notify_end` is where the next live notification starts;
a UTF-8 character split across two pipe reads is held back (at most 3 bytes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cc_executor.protocol import Stream

log = logging.getLogger(__name__)

# The writer may fall this far behind the pipes before a task's pipes stop being read
# (the disk is then the limit, as it would be for a synchronous write).
BACKLOG_HIGH = 32 * 1024 * 1024
BACKLOG_LOW = 8 * 1024 * 1024


def incomplete_utf8_tail(data: bytes) -> int:
    """How many trailing bytes of data start a UTF-8 sequence that is not yet complete."""
    n = len(data)
    for back in range(1, min(4, n + 1)):
        b = data[n - back]
        if b & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if b & 0x80 == 0:  # ASCII: nothing pending
            return 0
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 0
        return back if need > back else 0
    return 0


def encode_data(data: bytes) -> tuple[str, str | None]:
    """(data, encoding): UTF-8 text with encoding None, or base64 with encoding 'base64'."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class OutputSink(Protocol):
    """Where a copy of every chunk goes as the loop reads it (cluster mode: a Redis stream
    per task stream, so any node can read it)."""

    def append(self, task_id: str, stream: Stream, offset: int, data: bytes) -> None: ...

    async def finish(self, task_id: str) -> None:
        """Until the task's chunks are all delivered (or given up on): before `completed`."""


class LogWriter:
    """One thread that writes every log's chunks in order, so the loop never waits on disk.

    `backlog` is the bytes handed over but not yet written; past BACKLOG_HIGH the engine
    stops reading the pipes of the task that pushed it there, and `on_drained` (called on
    the loop) tells it to read again once the backlog is under BACKLOG_LOW.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[OutputLog, bytes | None]] = queue.SimpleQueue()
        # Two counters, each moved by one thread only: no lock on the hot path.
        self._submitted = 0  # the loop's
        self._written = 0  # the writer thread's
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.throttled = False
        self.on_drained: list[Callable[[], None]] = []  # run on the loop once drained

    def start(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="cc-executor-logs", daemon=True)
            self._thread.start()

    @property
    def backlog(self) -> int:
        return self._submitted - self._written

    def submit(self, out: OutputLog, data: bytes | None) -> None:
        """Queue a chunk (None: close the file once everything before it is written)."""
        self._queue.put((out, data))
        if data is not None:
            self._submitted += len(data)
            if self._submitted - self._written > BACKLOG_HIGH and not self.throttled:
                self.throttled = True
                # The writer may have caught up before it could see the flag: look again.
                if self._submitted - self._written < BACKLOG_LOW:
                    self.throttled = False

    def stop(self) -> None:
        """Write everything queued, then end the thread (blocks: at shutdown only)."""
        if self._thread is not None:
            self._queue.put((None, None))  # type: ignore[arg-type]
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while True:
            out, data = self._queue.get()
            if out is None:
                return
            if data is None:
                out._close_file()
                continue
            out._write(data)
            self._written += len(data)
            if self.throttled and self._submitted - self._written < BACKLOG_LOW:
                self.throttled = False
                wake = True
            else:
                wake = False
            if wake and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed
                    self._loop.call_soon_threadsafe(self._drained)

    def _drained(self) -> None:
        callbacks, self.on_drained = self.on_drained, []
        for cb in callbacks:
            cb()


class OutputLog:
    """Every byte of one task stream, in a log file, readable at any offset at any time.

    Live (`writer` given): the loop appends; the writer thread writes. Finished logs are
    read-only views of a file whose size the record knows (`OutputLog.finished`).
    """

    def __init__(self, path: Path, writer: LogWriter | None) -> None:
        self.path = path
        self.offset = 0  # bytes received from the pipe
        self.written = 0  # bytes in the file (the writer thread moves it)
        self.notify_end = 0  # live notifications have covered [0, notify_end)
        self.closed = writer is None
        self.error: str | None = None
        self.failed_at: int | None = None  # the first offset the file does not hold
        self._writer = writer
        self._unwritten: deque[bytes] = deque()  # chunks covering [_base, offset)
        self._base = 0  # == written, unless a failed write lost [written, _base)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._opened = False
        self._pending = b""  # an incomplete UTF-8 tail held back from notifications
        self._flushed_waiter: asyncio.Future[None] | None = None

    @classmethod
    def finished(cls, path: Path, size: int) -> OutputLog:
        """A read-only view of a finished task's log of `size` bytes."""
        out = cls(path, None)
        out.offset = out.written = out.notify_end = out._base = size
        return out

    # ------------------------------------------------------------ the loop's side

    def append(self, data: bytes) -> tuple[int, bytes] | None:
        """Take a chunk; returns (offset, bytes) to notify, or None if all held back."""
        assert self._writer is not None
        self._unwritten.append(data)  # only this thread appends; the writer pops the left
        self.offset += len(data)
        self._writer.submit(self, data)
        return self._whole_chars(data)

    def _whole_chars(self, data: bytes) -> tuple[int, bytes] | None:
        """What of a new chunk to notify: a character split across chunks is held back
        until its last byte comes. Returns (offset, bytes), or None if all is held back."""
        if self._pending:
            data = self._pending + data
        cut = incomplete_utf8_tail(data)
        if cut:
            self._pending = data[-cut:]
            data = data[:-cut]
        elif self._pending:
            self._pending = b""
        if not data:
            return None
        start = self.notify_end
        self.notify_end = start + len(data)
        return start, data

    def finish(self) -> tuple[int, bytes] | None:
        """At EOF: the held-back tail, as-is, to notify; the file closes once written."""
        if self.closed:
            return None
        self.closed = True
        rest = None
        if self._pending:
            rest = (self.notify_end, self._pending)
            self.notify_end = self.offset
            self._pending = b""
        if self._writer is not None:
            self._writer.submit(self, None)
        return rest

    @property
    def flushed(self) -> bool:
        """Everything received is in the file (or lost to a failed write)."""
        return not self._unwritten

    async def wait_flushed(self) -> None:
        """Until the writer thread has written everything received so far. Costs a
        wake-up from that thread only when it is behind (it rarely is at a task's end)."""
        if not self._unwritten:  # only the writer empties it: flushed for good
            return
        with self._lock:
            if not self._unwritten:
                return
            waiter = self._flushed_waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _wake_if_flushed(self) -> None:
        """Writer thread, with the lock held: tell a waiting loop the log is flushed."""
        waiter = self._flushed_waiter
        if waiter is not None and not self._unwritten:
            self._flushed_waiter = None
            with contextlib.suppress(RuntimeError):  # the loop closed
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    # ------------------------------------------------------------ the writer's side

    def _write(self, data: bytes) -> None:
        if not self._opened:
            self._opened = True
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                self._fail(f"cannot open log file {self.path}: {exc}")
        view = memoryview(data)
        if self._fd is not None:
            try:
                # A write may be short (a disk filling up): what it did not take must not
                # go missing silently; the next write says why (ENOSPC).
                while view:
                    n = os.write(self._fd, view)
                    if n <= 0:
                        raise OSError("log write accepted no bytes")
                    view = view[n:]
                    with self._lock:
                        self.written += n
                        self._base += n
                        if view:
                            self._unwritten[0] = bytes(view)
                        else:
                            self._unwritten.popleft()
                            self._wake_if_flushed()
                return
            except OSError as exc:
                self._fail(f"log write failed after {self.written} bytes: {exc}")
        with self._lock:  # not written: these bytes are lost to the log
            self._base += len(view)
            self._unwritten.popleft()
            self._wake_if_flushed()

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self.failed_at = self.written
            log.error(message)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------ readers

    async def aread(self, start: int, limit: int) -> bytes | None:
        """`read` for a cursor's reader: a local log reads at once (no thread, no wait)."""
        return self.read(start, limit)

    def read(self, start: int, limit: int) -> bytes | None:
        """Up to `limit` bytes from `start` (fewer at the end); None if the range starts in
        bytes lost to a failed log write (neither the file nor memory holds them)."""
        with self._lock:
            written, base = self.written, self._base
            chunks = list(self._unwritten) if self._unwritten else ()
        end = base + sum(len(c) for c in chunks)
        stop = min(start + limit, end)
        if start >= stop:
            return b""
        if written <= start < base:
            return None
        if start < written:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                got = os.pread(fd, min(stop, written) - start, start)
            finally:
                os.close(fd)
            if len(got) < min(stop, written) - start or stop <= written or written < base:
                return got or None  # all from the file (or the file is shorter: removed)
            head = got
        else:
            head = b""
        parts = [head] if head else []
        pos = base
        for chunk in chunks:
            if pos >= stop:
                break
            lo, hi = max(start, pos), min(stop, pos + len(chunk))
            if lo < hi:
                parts.append(chunk[lo - pos : hi - pos])
            pos += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)
