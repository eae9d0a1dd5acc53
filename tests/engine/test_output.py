"""OutputStream: every byte logged, offsets exact, UTF-8 kept whole, the tail bounded."""

from __future__ import annotations

import base64
import random
from pathlib import Path

from cc_executor.engine.output import OutputStream, _incomplete_utf8_tail, encode_data


def feed(out: OutputStream, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    notes = [n for p in pieces if (n := out.write(p)) is not None]
    if (rest := out.flush_pending()) is not None:
        notes.append(rest)
    return notes


def test_utf8_split_across_chunks_stays_text(tmp_path: Path) -> None:
    text = "héllo € 😀 wörld ✓" * 50
    raw = text.encode()
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(raw)), 200))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    out = OutputStream(tmp_path / "log", 1 << 20, 1000)
    notes = feed(out, pieces)
    pos = 0
    for offset, data in notes:
        assert offset == pos
        _, encoding = encode_data(data)
        assert encoding is None, data  # never base64: no character was cut
        pos += len(data)
    assert b"".join(d for _, d in notes) == raw
    assert out.offset == out.logged == len(raw)
    out.close()
    assert (tmp_path / "log").read_bytes() == raw


def test_a_lone_lead_byte_is_held_then_sent(tmp_path: Path) -> None:
    out = OutputStream(tmp_path / "log", 1 << 20, 1000)
    assert out.write(b"\xe2") is None
    assert out.write(b"\x82") is None
    assert out.write(b"\xacX") == (0, "€X".encode())
    # A truncated character at EOF goes out as-is (and is then base64 on the wire).
    assert out.write(b"\xf0\x9f") is None
    assert out.flush_pending() == (4, b"\xf0\x9f")
    assert encode_data(b"\xf0\x9f") == (base64.b64encode(b"\xf0\x9f").decode(), "base64")


def test_binary_output_is_logged_exactly(tmp_path: Path) -> None:
    raw = bytes(range(256)) * 300 + b"\xff\xfe\x00"
    out = OutputStream(tmp_path / "log", 1 << 20, 1000)
    notes = feed(out, [raw[i : i + 1000] for i in range(0, len(raw), 1000)])
    assert b"".join(d for _, d in notes) == raw
    for _, data in notes:
        text, enc = encode_data(data)
        back = base64.b64decode(text) if enc == "base64" else text.encode()
        assert back == data
    out.close()
    assert (tmp_path / "log").read_bytes() == raw


def test_incomplete_tail_detection() -> None:
    assert _incomplete_utf8_tail(b"abc") == 0
    assert _incomplete_utf8_tail("é".encode()) == 0
    assert _incomplete_utf8_tail("é".encode()[:1]) == 1
    assert _incomplete_utf8_tail("😀".encode()[:3]) == 3
    assert _incomplete_utf8_tail(b"a\x80\x80\x80\x80") == 0  # garbage, not a pending char
    assert _incomplete_utf8_tail(b"") == 0


def test_ring_buffer_bounded_in_bytes_and_lines(tmp_path: Path) -> None:
    out = OutputStream(tmp_path / "log", 1000, 10)
    for i in range(500):
        out.write(f"line {i}\n".encode())
    tail = out.tail()
    assert tail.splitlines() == [f"line {i}".encode() for i in range(490, 500)]
    out2 = OutputStream(tmp_path / "log2", 100, 10_000)
    big = bytes(range(256)) * 40
    out2.write(big)
    assert out2.tail() == big[-100:]
    assert out2.tail(10) == big[-10:]
    assert out2.offset == len(big)


def test_unwritable_log_is_reported_not_fatal(tmp_path: Path) -> None:
    out = OutputStream(tmp_path / "missing-dir" / "log", 1000, 10)
    assert out.log_error is not None
    assert out.write(b"still streamed") == (0, b"still streamed")
    assert out.offset == 14 and out.logged == 0
