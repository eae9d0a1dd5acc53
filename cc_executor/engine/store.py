"""Where task records live. `TaskStore` is the small interface; SQLite is the embedded default.

The SQLite store runs on a `SqliteThread`, so the event loop never waits on the disk: `save`
only enqueues a snapshot (fire and forget, applied in order, batched into one
transaction), and reads are answered by the same thread after every earlier write.
A shared store (Redis, for several hosts) would implement the same methods.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import TaskStatus
from cc_executor.sqlite_thread import RETRY_S, SqliteThread

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskStore(Protocol):
    # Whether other engines (other nodes) keep their records here too. A store that only
    # this engine uses holds nothing but its own records, whatever node name they carry.
    shared: bool

    async def open(self) -> None: ...
    def save(self, record: TaskRecord) -> None: ...
    async def get(self, task_id: str) -> TaskRecord | None: ...
    async def list(
        self, limit: int = 1000, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]: ...
    async def flush(self) -> None: ...
    async def visible(self, task_id: str) -> None:
        """Until a shared store holds the record (saved by now), for the other nodes."""

    async def close(self) -> None: ...


def record_to_row(rec: TaskRecord) -> tuple[str, float, str, bytes]:
    """The row of a record: every field, as one JSON object in field order.

    orjson serializes the (slotted) dataclass itself, with `status` as its string value;
    anything else it cannot encode, in `extra`, becomes its `str`.
    """
    data = orjson.dumps(rec, default=str)
    return rec.task_id, rec.created_at, str(rec.status), data


_FIELDS = tuple(f.name for f in fields(TaskRecord))
_STATUSES = {str(s): s for s in TaskStatus}  # a dict lookup: calling the enum costs more
_in_field_order = operator.itemgetter(*_FIELDS)


def row_to_record(blob: bytes) -> TaskRecord:
    d: dict[str, Any] = orjson.loads(blob)
    d["status"] = _STATUSES.get(d["status"]) or TaskStatus(d["status"])
    if len(d) == len(_FIELDS):
        try:
            # Positional: ~6x cheaper than keywords for 21 fields; `status` of 1000
            # records decodes 1000 rows.
            return TaskRecord(*_in_field_order(d))
        except KeyError:
            pass
    return TaskRecord(**d)  # a row of another shape: missing fields get their defaults


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);
"""


_UPSERT = (
    "INSERT INTO tasks(task_id, created_at, status, data) VALUES (?,?,?,?) "
    "ON CONFLICT(task_id) DO UPDATE SET status=excluded.status, data=excluded.data"
)


_DECODED_MAX = 5000  # final records kept decoded (at most _DECODED_MAX_BLOB bytes each)
_DECODED_MAX_BLOB = 4096


class SqliteTaskStore:
    """Task records in one SQLite file, written by a dedicated thread."""

    shared = False  # one engine's own: its data dir is locked

    # Saves within this long are written together: one wake-up of the store thread for
    # many saves (a task is saved when it starts and when it ends; a burst of tasks, more).
    COALESCE_S = 0.005

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteThread(path, _SCHEMA, "cc-executor-store")
        self._pending: dict[str, tuple[str, float, str, bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # row -> its record, of final rows (see `_decoded`): bounded by count and row size
        self._final: OrderedDict[bytes, TaskRecord] = OrderedDict()

    @property
    def write_errors(self) -> int:
        return self._db.write_errors

    def write_problem(self) -> str | None:
        """Why records cannot be written now (they are kept and retried), else None."""
        db = self._db
        if db.failing is None:
            return None
        since = time.time() - (db.failing_since or time.time())
        return (
            f"task records cannot be written to {self.path}: {db.failing} "
            f"(for {since:.0f} s; {db.waiting} writes kept, tried again every {RETRY_S:g} s)"
        )

    async def open(self) -> None:
        await self._db.open()

    def save(self, record: TaskRecord) -> None:
        """Save the record as it is now, written with the next batch (a later save of the
        same task in the same batch replaces it)."""
        self._pending[record.task_id] = record_to_row(record)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test, a tool): write now
                self._write_pending()
                return
            self._timer = loop.call_later(self.COALESCE_S, self._write_pending)

    def _write_pending(self) -> None:
        """Hand every pending save to the store thread (before any read, so reads see them)."""
        self._timer, timer = None, self._timer
        if timer is not None:
            timer.cancel()
        if self._pending:
            rows = list(self._pending.values())
            self._pending.clear()
            self._db.put_many(_UPSERT, rows)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._write_pending()  # a read sees every earlier save
        # Shielded: a caller cancelled mid-read (its client went away) must not cancel the
        # thread's future under it; the thread's set_result would raise and end the thread.
        return await asyncio.shield(self._db.call(fn))

    async def get(self, task_id: str) -> TaskRecord | None:
        row = await self._call(
            lambda c: c.execute("SELECT data FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        )
        return row_to_record(row[0]) if row else None

    async def list(
        self, limit: int = 1000, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]:
        if statuses is None:
            sql = "SELECT data FROM tasks ORDER BY created_at DESC LIMIT ?"
            args: list[Any] = [limit]
        else:
            st = [str(s) for s in statuses]
            marks = ",".join("?" * len(st))
            sql = (
                f"SELECT data FROM tasks WHERE status IN ({marks}) ORDER BY created_at DESC LIMIT ?"
            )
            args = [*st, limit]
        rows = await self._call(lambda c: c.execute(sql, args).fetchall())
        return [self._decoded(r[0]) for r in rows]

    def _decoded(self, blob: bytes) -> TaskRecord:
        """The record of a row; a small final record decoded before is reused: `status` of
        1000 records decodes each row of its list, and final rows no longer change."""
        if len(blob) > _DECODED_MAX_BLOB:
            return row_to_record(blob)
        cached = self._final.get(blob)
        if cached is not None:
            return cached
        rec = row_to_record(blob)
        if rec.status.is_final:
            self._final[blob] = rec
            if len(self._final) > _DECODED_MAX:
                self._final.popitem(last=False)
        return rec

    async def flush(self) -> None:
        await self._call(lambda c: None)

    async def visible(self, task_id: str) -> None:
        return None  # this engine's alone: its own reads see pending saves at once

    async def close(self) -> None:
        self._write_pending()
        await self._db.close()
