"""The records of recently finished tasks, kept in memory and bounded by their size.

A finished task's record is also in the store; this cache spares `get` and `list` a trip
to it. Bounded by a count alone, 200 tasks with a 1 MB argument each held hundreds of
MB: the bound is the records' encoded size (and a count), the oldest going first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

import orjson

from cc_executor.engine.records import TaskRecord


def record_bytes(rec: TaskRecord) -> int:
    """About what a record holds in memory: the size of its JSON form."""
    return len(orjson.dumps(rec.to_dict(), option=orjson.OPT_NON_STR_KEYS, default=str))


class RecentRecords(Mapping[str, TaskRecord]):
    """task id -> record, oldest first, at most `max_bytes` and `max_count` of them."""

    def __init__(self, max_bytes: int, max_count: int = 5000) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.bytes = 0
        self._records: OrderedDict[str, tuple[TaskRecord, int]] = OrderedDict()

    def __getitem__(self, task_id: str) -> TaskRecord:
        return self._records[task_id][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __setitem__(self, task_id: str, rec: TaskRecord) -> None:
        old = self._records.pop(task_id, None)
        if old is not None:
            self.bytes -= old[1]
        size = record_bytes(rec)
        if size > self.max_bytes:
            return  # larger than the whole cache: the store serves it
        self._records[task_id] = (rec, size)
        self.bytes += size
        while self.bytes > self.max_bytes or len(self._records) > self.max_count:
            _, (_, dropped) = self._records.popitem(last=False)
            self.bytes -= dropped
