"""The log's repeat limiter: bursts of one warning are counted, not written."""

from __future__ import annotations

import logging

from cc_executor.logs import RepeatLimiter


def _record(msg: str, level: int = logging.ERROR, at: float = 0.0) -> logging.LogRecord:
    rec = logging.LogRecord("asyncio", level, __file__, 1, msg, None, None)
    rec.created = at
    return rec


def test_a_burst_is_cut_and_counted() -> None:
    f = RepeatLimiter(burst=3, window=60.0)
    kept = [f.filter(_record("accept failed", at=i * 0.001)) for i in range(1000)]
    assert sum(kept) == 3
    # The first line of the next window says how many were left out.
    later = _record("accept failed", at=61.0)
    assert f.filter(later) and later.repeats_suppressed == 997
    assert f.filter(_record("another message", at=1.0))


def test_info_lines_are_never_held_back() -> None:
    f = RepeatLimiter(burst=1, window=60.0)
    assert all(f.filter(_record("task finished", logging.INFO)) for _ in range(100))
