"""The SQLite task store: records round-trip, and a caller that gives up never wedges it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from cc_executor.engine import SqliteTaskStore, TaskRecord
from cc_executor.protocol import TaskStatus


async def test_round_trip_and_order(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "t.sqlite3")
    await store.open()
    try:
        a = TaskRecord(task_id="a", command="echo 1", argv=["sh", "-c", "echo 1"], created_at=1.0)
        b = TaskRecord(task_id="b", command=["x"], argv=["x"], created_at=2.0, extra={"k": [1]})
        store.save(a)
        store.save(b)
        b.status = TaskStatus.COMPLETED
        b.exit_code = 0
        store.save(b)  # a later save of the same record wins
        got = await store.get("b")
        assert got is not None and got.status == TaskStatus.COMPLETED and got.extra == {"k": [1]}
        assert [r.task_id for r in await store.list()] == ["b", "a"]
        assert [r.task_id for r in await store.list(statuses=[TaskStatus.QUEUED])] == ["a"]
        assert await store.get("nope") is None
    finally:
        await store.close()


async def test_a_cancelled_read_does_not_wedge_the_store(tmp_path: Path) -> None:
    """A request handler is cancelled when its client disconnects mid-read."""
    store = SqliteTaskStore(tmp_path / "t.sqlite3")
    await store.open()
    release = threading.Event()
    # Hold the store's thread so the next read is surely still pending when cancelled.
    busy = asyncio.ensure_future(store._db.call(lambda c: release.wait(10)))
    reader = asyncio.create_task(store.get("x"))
    await asyncio.sleep(0)  # the read is queued behind the busy call
    reader.cancel()
    release.set()
    assert await busy is True
    store.save(TaskRecord(task_id="after", command="c", argv=["c"]))
    got = await asyncio.wait_for(store.get("after"), 10)
    assert got is not None and got.task_id == "after"
    await asyncio.wait_for(store.close(), 10)
