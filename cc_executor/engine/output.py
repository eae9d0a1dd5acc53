"""One output stream of a task: every byte to its log file, a bounded tail in memory.

Chunks arrive as the pipe gives them (up to 256 KB). Each is written to the log file,
appended to a ring buffer bounded in bytes and lines, and turned into one notification.
Notification data is text when the chunk is valid UTF-8 and base64 otherwise; a multi-byte
character split across two reads is held back (at most 3 bytes) so text stays text.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


def _incomplete_utf8_tail(data: bytes) -> int:
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


class OutputStream:
    """Log file + ring buffer + offsets for one of a task's streams."""

    def __init__(self, path: Path, ring_bytes: int, ring_lines: int) -> None:
        self.path = path
        self.offset = 0  # bytes received so far (== bytes logged unless the disk failed)
        self.logged = 0
        self.log_error: str | None = None
        self._ring: deque[tuple[bytes, int]] = deque()  # (chunk, newlines in it)
        self._ring_bytes = 0
        self._ring_lines = 0
        self._max_bytes = ring_bytes
        self._max_lines = ring_lines
        self._pending = b""  # incomplete UTF-8 tail held back from the last notification
        self._file: BinaryIO | None = None
        # The log file is created on the first write: creating a file costs ~0.25 ms on
        # some disks, and most tasks never write to stderr (a missing log reads as empty).
        self._opened = False
        if not path.parent.is_dir():
            self._opened = True
            self.log_error = f"cannot open log file {path}: no such directory"
            log.error(self.log_error)

    def _open(self) -> None:
        self._opened = True
        try:
            self._file = open(self.path, "wb", buffering=0)
        except OSError as exc:
            self.log_error = f"cannot open log file {self.path}: {exc}"
            log.error(self.log_error)

    def write(self, data: bytes) -> tuple[int, bytes] | None:
        """Record a chunk; returns (offset, bytes) to notify, or None if all held back."""
        if not self._opened:
            self._open()
        if self._file is not None:
            try:
                # An unbuffered write may be short (a disk filling up): the bytes it did not
                # take must not go missing silently; the next write says why (ENOSPC).
                view = memoryview(data)
                while view:
                    n = self._file.write(view) or 0
                    if n <= 0:
                        raise OSError("log write accepted no bytes")
                    self.logged += n
                    view = view[n:]
            except OSError as exc:
                self.log_error = f"log write failed after {self.logged} bytes: {exc}"
                log.error(self.log_error)
                self._close_file()
        self.offset += len(data)
        self._remember(data)
        if self._pending:
            data = self._pending + data
        cut = _incomplete_utf8_tail(data)
        if cut:
            self._pending = data[-cut:]
            data = data[:-cut]
        else:
            self._pending = b""
        if not data:
            return None
        return self.offset - len(self._pending) - len(data), data

    def flush_pending(self) -> tuple[int, bytes] | None:
        """At EOF: whatever was held back, as-is."""
        if not self._pending:
            return None
        data, self._pending = self._pending, b""
        return self.offset - len(data), data

    def _remember(self, data: bytes) -> None:
        if self._max_bytes <= 0:
            return
        if len(data) > self._max_bytes:
            data = data[-self._max_bytes :]
        lines = data.count(b"\n")  # counted once per chunk: this is the hot path
        self._ring.append((data, lines))
        self._ring_bytes += len(data)
        self._ring_lines += lines
        while len(self._ring) > 1 and (
            self._ring_bytes > self._max_bytes or self._ring_lines > self._max_lines
        ):
            old, old_lines = self._ring.popleft()
            self._ring_bytes -= len(old)
            self._ring_lines -= old_lines

    def tail(self, max_bytes: int | None = None) -> bytes:
        data = b"".join(chunk for chunk, _ in self._ring)
        if self._ring_lines > self._max_lines:
            excess = self._ring_lines - self._max_lines
            idx = -1
            for _ in range(excess):
                idx = data.find(b"\n", idx + 1)
            data = data[idx + 1 :]
        if max_bytes is not None and len(data) > max_bytes:
            data = data[-max_bytes:]
        return data

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        self._close_file()
        self._ring.clear()
        self._ring_bytes = 0
        self._ring_lines = 0

    def status(self) -> dict[str, Any]:
        return {"bytes": self.offset, "logged": self.logged, "log_error": self.log_error}
