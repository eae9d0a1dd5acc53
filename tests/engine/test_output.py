"""OutputLog: every byte logged by the writer thread, readable at any offset at any moment,
offsets exact, UTF-8 kept whole in notifications, a failed write named, never fatal."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cc_executor.engine.output import LogWriter, OutputLog, encode_data, incomplete_utf8_tail


@pytest.fixture
async def writer() -> AsyncIterator[LogWriter]:
    w = LogWriter()
    w.start()
    yield w
    await asyncio.to_thread(w.stop)


def feed(out: OutputLog, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    notes = [n for p in pieces if (n := out.append(p)) is not None]
    if (rest := out.finish()) is not None:
        notes.append(rest)
    return notes


async def drained(writer: LogWriter) -> None:
    """Wait until the writer has written everything queued (it stops after)."""
    await asyncio.to_thread(writer.stop)


async def test_utf8_split_across_chunks_stays_text(tmp_path: Path, writer: LogWriter) -> None:
    text = "héllo € 😀 wörld ✓" * 50
    raw = text.encode()
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(raw)), 200))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    out = OutputLog(tmp_path / "log", writer)
    notes = feed(out, pieces)
    pos = 0
    for offset, data in notes:
        assert offset == pos
        _, encoding = encode_data(data)
        assert encoding is None, data  # never base64: no character was cut
        pos += len(data)
    assert b"".join(d for _, d in notes) == raw
    assert out.offset == out.notify_end == len(raw)
    await drained(writer)
    assert out.written == len(raw)
    assert (tmp_path / "log").read_bytes() == raw


async def test_a_lone_lead_byte_is_held_then_sent(tmp_path: Path, writer: LogWriter) -> None:
    out = OutputLog(tmp_path / "log", writer)
    assert out.append(b"\xe2") is None
    assert out.append(b"\x82") is None
    assert out.append(b"\xacX") == (0, "€X".encode())
    # A truncated character at EOF goes out as-is (and is then base64 on the wire).
    assert out.append(b"\xf0\x9f") is None
    assert out.finish() == (4, b"\xf0\x9f")
    assert encode_data(b"\xf0\x9f") == (base64.b64encode(b"\xf0\x9f").decode(), "base64")


async def test_binary_output_is_logged_exactly(tmp_path: Path, writer: LogWriter) -> None:
    raw = bytes(range(256)) * 300 + b"\xff\xfe\x00"
    out = OutputLog(tmp_path / "log", writer)
    notes = feed(out, [raw[i : i + 1000] for i in range(0, len(raw), 1000)])
    assert b"".join(d for _, d in notes) == raw
    for _, data in notes:
        text, enc = encode_data(data)
        back = base64.b64decode(text) if enc == "base64" else text.encode()
        assert back == data
    await drained(writer)
    assert (tmp_path / "log").read_bytes() == raw


async def test_any_range_reads_back_while_being_written(tmp_path: Path, writer: LogWriter) -> None:
    """Reads never wait for the writer: what it has not written yet comes from memory."""
    rng = random.Random(3)
    raw = rng.randbytes(8 * 1024 * 1024)
    out = OutputLog(tmp_path / "log", writer)
    pos = 0
    checks = 0
    while pos < len(raw):
        n = rng.randint(1, 300_000)
        out.append(raw[pos : pos + n])
        pos += n
        start = rng.randint(0, pos - 1)
        got = out.read(start, rng.randint(1, 2_000_000))
        assert got is not None and got == raw[start : start + len(got)]
        assert len(got) == min(pos - start, len(got)) and got
        checks += 1
    assert out.read(len(raw), 10) == b""
    out.finish()
    await drained(writer)
    assert out.read(0, len(raw) + 1) == raw
    view = OutputLog.finished(tmp_path / "log", len(raw))
    assert view.read(123, 456) == raw[123 : 123 + 456]
    assert checks > 20


def test_incomplete_tail_detection() -> None:
    assert incomplete_utf8_tail(b"abc") == 0
    assert incomplete_utf8_tail("é".encode()) == 0
    assert incomplete_utf8_tail("é".encode()[:1]) == 1
    assert incomplete_utf8_tail("😀".encode()[:3]) == 3
    assert incomplete_utf8_tail(b"a\x80\x80\x80\x80") == 0  # garbage, not a pending char
    assert incomplete_utf8_tail(b"") == 0


async def test_unwritable_log_is_reported_not_fatal(tmp_path: Path, writer: LogWriter) -> None:
    out = OutputLog(tmp_path / "missing-dir" / "log", writer)
    assert out.append(b"still streamed") == (0, b"still streamed")
    await drained(writer)
    assert out.offset == 14 and out.written == 0
    assert out.error is not None and "cannot open log file" in out.error
    assert out.read(0, 100) is None  # lost, and said so: not an empty read
