"""How chunks become Redis stream entries: every byte at its offset, no entry over the
size that keeps trimming by offset close to the retention."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cc_executor.cluster import keys
from cc_executor.cluster.connection import connect
from cc_executor.cluster.output import OutputStreams, _coalesce, entry_size
from cc_executor.protocol import Stream
from tests.support import eventually

chunk_runs = st.lists(
    st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=300)), min_size=1, max_size=10
)


@given(chunk_runs, st.integers(1, 120))
def test_entries_hold_every_byte_at_its_offset_and_none_is_too_big(
    runs: list[tuple[int, bytes]], most: int
) -> None:
    chunks, pos = [], 0
    for gap, data in runs:
        pos += gap  # a gap: chunks the sink shed while Redis was away
        chunks.append((pos, data))
        pos += len(data)
    entries = _coalesce(chunks, most)
    assert all(0 < len(d) <= most for _, d in entries)
    assert [o for o, _ in entries] == sorted({o for o, _ in entries})

    def bytes_at(pieces: list[tuple[int, bytes]]) -> dict[int, int]:
        return {o + i: b for o, d in pieces for i, b in enumerate(d)}

    assert bytes_at(entries) == bytes_at(chunks)


def test_entries_are_a_sixteenth_of_the_retention_within_bounds() -> None:
    assert entry_size(64 * 1024 * 1024) == 1024 * 1024
    assert entry_size(1_000_000) == 64 * 1024
    assert entry_size(4_000_000) == 250_000


async def test_reads_of_a_redis_stream_are_byte_exact_up_to_a_gap(redis_server: Any) -> None:
    """Chunks of every size through the sink into a real Redis, then random ranges back:
    byte-exact, stopping at a gap, empty (with the first retained offset) before it."""
    r = connect(redis_server.url)
    out = OutputStreams(r, retention=400_000)  # entries of 64 KiB: many per read
    out.start()
    rng = random.Random(5)
    truth = bytearray()
    for _ in range(60):
        data = rng.randbytes(rng.choice([1, 100, 4096, 65536, 200_000]))
        out.append("t1", Stream.STDOUT, len(truth), data)
        truth += data
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # let the writer send part of it: entries of all sizes
    await out.finish("t1")
    end = len(truth)
    kept_from = end - 400_000
    _, first = await out.read("t1", Stream.STDOUT, 0, 10)
    assert kept_from <= first <= kept_from + 64 * 1024  # trimmed by offset
    for _ in range(200):
        start = rng.randrange(first, end)
        limit = rng.randrange(1, 300_000)
        data, _ = await out.read("t1", Stream.STDOUT, start, limit)
        assert data == truth[start : start + limit]
    assert await out.read("t1", Stream.STDOUT, first - 1, 10) == (b"", first)
    assert await out.read("t1", Stream.STDOUT, end, 10) == (b"", first)
    # a gap: bytes [end, end + 10) never reached Redis (the sink shed them)
    out.append("t1", Stream.STDOUT, end + 10, b"after the gap")
    await out.finish("t1")
    data, _ = await out.read("t1", Stream.STDOUT, end - 5, 100)
    assert data == truth[-5:]
    assert (await out.read("t1", Stream.STDOUT, end + 10, 100))[0] == b"after the gap"
    await out.stop()
    await r.aclose()


async def test_a_finished_tasks_streams_expire_after_the_set_time(redis_server: Any) -> None:
    """Redis does not keep every finished task's output forever: once its last chunks are
    in, the task's streams get `output_expiry_seconds`; a running task's get none."""
    r = connect(redis_server.url)
    out = OutputStreams(r, retention=1_000_000, expiry_s=300)
    out.start()
    out.append("done", Stream.STDOUT, 0, b"x" * 200_000)
    out.append("done", Stream.STDERR, 0, b"oops\n")
    out.append("running", Stream.STDOUT, 0, b"still going\n")
    await out.finish("done")
    stdout, stderr = keys.output("done", Stream.STDOUT), keys.output("done", Stream.STDERR)
    assert await eventually(lambda: r.ttl(stdout), lambda ttl: 0 < ttl <= 300)
    assert 0 < await r.ttl(stderr) <= 300
    assert await r.ttl(keys.output("running", Stream.STDOUT)) == -1  # no expiry
    data, _ = await out.read("done", Stream.STDOUT, 0, 300_000)
    assert data == b"x" * 200_000  # every byte is still there until then
    await out.stop()
    await r.aclose()
