"""Finished records kept in memory: bounded by bytes; list replies cut long values."""

from __future__ import annotations

from cc_executor.engine.brief import LIST_ITEMS, LIST_VALUE_CHARS, brief
from cc_executor.engine.recent import RecentRecords, record_bytes
from cc_executor.engine.records import TaskRecord


def _rec(i: int, size: int) -> TaskRecord:
    return TaskRecord(task_id=f"t{i}", command=["echo", "x" * size], argv=["echo", "x" * size])


def test_cache_is_bounded_by_bytes_oldest_first() -> None:
    cache = RecentRecords(max_bytes=1_000_000)
    for i in range(10):
        cache[f"t{i}"] = _rec(i, 200_000)  # about 400 KB each (command and argv)
    assert cache.bytes <= 1_000_000
    assert list(cache) == ["t8", "t9"]
    assert cache["t9"].task_id == "t9" and cache.get("t0") is None


def test_cache_is_bounded_by_count_too_and_replaces() -> None:
    cache = RecentRecords(max_bytes=10**9, max_count=3)
    for i in range(5):
        cache[f"t{i}"] = _rec(i, 10)
    assert list(cache) == ["t2", "t3", "t4"]
    before = cache.bytes
    cache["t4"] = cache["t4"]  # the same record again: counted once
    assert cache.bytes == before and len(cache) == 3


def test_a_record_larger_than_the_cache_is_not_kept() -> None:
    cache = RecentRecords(max_bytes=1000)
    cache["big"] = _rec(0, 5000)
    assert "big" not in cache and cache.bytes == 0
    assert record_bytes(_rec(0, 5000)) > 10_000


def test_brief_cuts_long_values_and_says_which() -> None:
    d = _rec(0, 5000).to_dict() | {"prompt": "p" * 3000, "hooks": [{"out": "o" * 2000}]}
    d["argv"] = ["a"] * 100
    out = brief(d)
    assert len(out["command"][1]) == LIST_VALUE_CHARS and len(out["argv"]) == LIST_ITEMS
    assert len(out["prompt"]) == LIST_VALUE_CHARS
    assert set(out["cut"]) == {"command[1]", "argv", "prompt", "hooks[0].out"}
    assert "cut" not in brief(_rec(1, 10).to_dict())
