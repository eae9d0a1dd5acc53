"""The SQLite thread survives callers that give up, and keeps order."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from cc_executor.sqlite_thread import SqliteThread

SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
PUT = "INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v"


async def test_reads_see_every_earlier_write(tmp_path: Path) -> None:
    db = SqliteThread(tmp_path / "x.sqlite3", SCHEMA, "test-db")
    await db.open()
    for i in range(200):
        db.put(PUT, ("k", str(i)))
    row = await db.call(lambda c: c.execute("SELECT v FROM kv WHERE k='k'").fetchone())
    assert row == ("199",)
    await db.close()


async def test_a_cancelled_read_does_not_kill_the_thread(tmp_path: Path) -> None:
    db = SqliteThread(tmp_path / "x.sqlite3", SCHEMA, "test-db")
    await db.open()
    gate = threading.Event()

    def blocked(c: sqlite3.Connection) -> None:
        gate.wait(10)  # holds the thread so the next call is still queued when cancelled

    first = asyncio.ensure_future(db.call(blocked))
    second = asyncio.ensure_future(db.call(lambda c: c.execute("SELECT 1").fetchone()))
    await asyncio.sleep(0)  # let both calls enqueue
    second.cancel()
    gate.set()
    await first
    # The thread skipped the abandoned call and still serves reads and writes.
    db.put(PUT, ("a", "b"))
    read = db.call(lambda c: c.execute("SELECT v FROM kv").fetchone())
    assert await asyncio.wait_for(read, 10) == ("b",)
    await asyncio.wait_for(db.close(), 10)
