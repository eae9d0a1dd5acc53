"""How chunks become Redis stream entries: every byte at its offset, no entry over the
size that keeps trimming by offset close to the retention."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cc_executor.cluster.output import _coalesce, entry_size

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
