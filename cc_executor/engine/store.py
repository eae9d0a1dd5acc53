"""Where task records live. `TaskStore` is the small interface; SQLite is the embedded default.

The SQLite store owns one connection on one writer thread, so the event loop never waits on
the disk: `save` only enqueues a snapshot (fire and forget, applied in order, batched into
one transaction), and reads are answered by the same thread after every earlier write.
A shared store (Redis, for several hosts) would implement the same methods.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import TaskStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskStore(Protocol):
    async def open(self) -> None: ...
    def save(self, record: TaskRecord) -> None: ...
    async def get(self, task_id: str) -> TaskRecord | None: ...
    async def list(
        self, limit: int = 1000, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...


def record_to_row(rec: TaskRecord) -> tuple[str, float, str, bytes]:
    data = {
        "task_id": rec.task_id,
        "command": rec.command,
        "argv": rec.argv,
        "kind": rec.kind,
        "name": rec.name,
        "cwd": rec.cwd,
        "status": str(rec.status),
        "pid": rec.pid,
        "pgid": rec.pgid,
        "start_ticks": rec.start_ticks,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "exit_code": rec.exit_code,
        "signal": rec.signal,
        "stdout_bytes": rec.stdout_bytes,
        "stderr_bytes": rec.stderr_bytes,
        "timeout": rec.timeout,
        "idle_timeout": rec.idle_timeout,
        "error": rec.error,
        "extra": rec.extra,
    }
    return rec.task_id, rec.created_at, str(rec.status), orjson.dumps(data, default=str)


def row_to_record(blob: bytes) -> TaskRecord:
    d: dict[str, Any] = orjson.loads(blob)
    d["status"] = TaskStatus(d["status"])
    return TaskRecord(**d)


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


class SqliteTaskStore:
    """Task records in one SQLite file, written by a dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ops: queue.SimpleQueue[tuple[str, Any, concurrent.futures.Future[Any] | None]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.write_errors = 0

    # -- thread side -------------------------------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            op, arg, fut = self._ops.get()
            if op == "save":
                rows = {arg[0]: arg}
                # Batch every save already waiting into the same transaction.
                pending: list[tuple[str, Any, concurrent.futures.Future[Any] | None]] = []
                while True:
                    try:
                        nxt = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if nxt[0] == "save":
                        rows[nxt[1][0]] = nxt[1]
                    else:
                        pending.append(nxt)
                        break
                self._write(list(rows.values()))
                for p in pending:
                    if self._handle(*p):
                        return
            elif self._handle(op, arg, fut):
                return

    def _write(self, rows: list[tuple[str, float, str, bytes]]) -> None:
        assert self._conn is not None
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT INTO tasks(task_id, created_at, status, data) VALUES (?,?,?,?) "
                    "ON CONFLICT(task_id) DO UPDATE SET status=excluded.status, "
                    "data=excluded.data",
                    rows,
                )
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.error("task store write failed: %s", exc)

    def _handle(self, op: str, arg: Any, fut: concurrent.futures.Future[Any] | None) -> bool:
        """Run a non-save op; True means stop the thread."""
        assert self._conn is not None
        if op == "save":
            self._write([arg])
            return False
        if op == "close":
            self._conn.close()
            if fut is not None:
                fut.set_result(None)
            return True
        fn: Callable[[sqlite3.Connection], Any] = arg
        try:
            result = fn(self._conn)
        except Exception as exc:
            if fut is not None:
                fut.set_exception(exc)
        else:
            if fut is not None:
                fut.set_result(result)
        return False

    # -- loop side ---------------------------------------------------------------------

    async def open(self) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="cc-executor-store", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    def save(self, record: TaskRecord) -> None:
        self._ops.put(("save", record_to_row(record), None))

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._ops.put(("call", fn, fut))
        return await asyncio.wrap_future(fut)

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
        return [row_to_record(r[0]) for r in rows]

    async def flush(self) -> None:
        await self._call(lambda c: None)

    async def close(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ops.put(("close", None, fut))
        await asyncio.wrap_future(fut)
        self._thread.join(timeout=5)
