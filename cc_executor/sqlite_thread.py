"""One SQLite connection on one thread, so an event loop never waits on the disk.

Writes are fire-and-forget: `put` enqueues a statement, the thread applies them in order
and batches whatever is waiting into one transaction. Reads (`call`) run on the same
thread after every earlier write, so a read sees everything put before it. The task store
and the session store are both built on this.

A write the disk refuses (full, an I/O error) is not dropped: it is kept, in order, and
tried again with the next batch, or every `RETRY_S` while nothing else comes, until the
disk takes it; meanwhile `failing` says why, so the owner can report it and refuse new
work. Reads are still answered (without what is waiting). At `close`, what still cannot
be written is logged as lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_Op = tuple[str, Any, concurrent.futures.Future[Any] | None]
_Write = tuple[str, tuple[Any, ...]]
_WRITES = frozenset({"write", "write_many"})

RETRY_S = 1.0
"""How often writes the disk refused are tried again while no other write comes."""


class SqliteThread:
    def __init__(self, path: Path, schema: str, name: str) -> None:
        self.path = path
        self.schema = schema
        self.name = name
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.write_errors = 0
        self._backlog: list[_Write] = []  # refused by the disk, in order: tried again
        self.failing: str | None = None
        """Why writes are being refused now (the SQLite error), None while they succeed."""
        self.failing_since: float | None = None

    # -- thread side -------------------------------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 here: SQLite gives its -wal and -shm files the database's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self.schema)
            self._conn = conn
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            try:
                op = self._ops.get(timeout=RETRY_S if self._backlog else None)
            except queue.Empty:
                self._write([])  # try what is waiting again
                continue
            if op[0] not in _WRITES:
                if self._handle(op):
                    return
                continue
            writes: list[_Write] = []
            nxt: _Op | None = op
            while nxt is not None and nxt[0] in _WRITES:
                # Batch every write already waiting into one transaction.
                if nxt[0] == "write":
                    writes.append(nxt[1])
                else:
                    sql, rows = nxt[1]
                    writes.extend((sql, row) for row in rows)
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    nxt = None
            self._write(writes)
            if nxt is not None and self._handle(nxt):
                return

    def _write(self, writes: list[_Write]) -> bool:
        """Apply what is waiting, then `writes`, in one transaction; True if written."""
        assert self._conn is not None
        batch = self._backlog + writes if self._backlog else writes
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                for sql, row in batch:
                    self._conn.execute(sql, row)
        except sqlite3.OperationalError as exc:  # the disk: full, I/O, read-only...
            self.write_errors += 1
            self._backlog = batch
            if self.failing is None:
                self.failing_since = time.time()
                log.error(
                    "%s: write failed: %s; kept, tried again until the disk takes it",
                    self.name,
                    exc,
                )
            self.failing = str(exc)
            return False
        except sqlite3.Error as exc:  # the statement itself: trying again cannot help
            self.write_errors += 1
            self._backlog = []
            log.error("%s: write failed, dropped: %s", self.name, exc)
            return False
        if self.failing is not None:
            log.warning(
                "%s: writes succeed again (%d kept while they failed, now written)",
                self.name,
                len(self._backlog),
            )
            self.failing = self.failing_since = None
        self._backlog = []
        return True

    @property
    def waiting(self) -> int:
        """Writes the disk refused, kept to be tried again."""
        return len(self._backlog)

    def _handle(self, op: _Op) -> bool:
        """Run a non-write op; True means stop the thread."""
        assert self._conn is not None
        kind, arg, fut = op
        if kind == "close":
            if self._backlog and not self._write([]):
                log.error(
                    "%s: closing with %d writes the disk still refuses: they are lost (%s)",
                    self.name,
                    len(self._backlog),
                    self.failing,
                )
            self._conn.close()
            if fut is not None and fut.set_running_or_notify_cancel():
                fut.set_result(None)
            return True
        fn: Callable[[sqlite3.Connection], Any] = arg
        if fut is not None and not fut.set_running_or_notify_cancel():
            return False  # the caller gave up (e.g. its client disconnected): skip it
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
            target=self._run, args=(ready,), name=self.name, daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    def put(self, sql: str, row: tuple[Any, ...]) -> None:
        """Apply a write statement soon, in order with every other put."""
        self._ops.put(("write", (sql, row), None))

    def put_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Apply one statement to many rows soon, in one transaction: one wake-up."""
        self._ops.put(("write_many", (sql, rows), None))

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the thread after every earlier write; return its result."""
        if self._closed or self._thread is None:
            raise RuntimeError(f"{self.name} is not open")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._ops.put(("call", fn, fut))
        return await asyncio.wrap_future(fut)

    async def flush(self) -> None:
        await self.call(lambda c: None)

    async def close(self) -> None:
        if self._closed or self._thread is None or not self._thread.is_alive():
            return
        self._closed = True
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ops.put(("close", None, fut))
        await asyncio.wrap_future(fut)
        self._thread.join(timeout=5)
