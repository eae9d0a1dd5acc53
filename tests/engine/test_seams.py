"""The engine's seams: one lifecycle, the queue's accounting, records owned by a node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cc_executor.config import Settings
from cc_executor.engine import Engine, SqliteTaskStore, TaskRecord, TaskSpec, command_env, process
from cc_executor.engine.lifecycle import InvalidTransition, can_transition, transition
from cc_executor.engine.queue import Admission, LocalTaskQueue
from cc_executor.protocol import ErrorCode, ProtocolError, TaskStatus


def test_the_lifecycle_allows_only_forward_moves() -> None:
    rec = TaskRecord(task_id="t", command="x", argv=["x"])
    transition(rec, TaskStatus.RUNNING)
    transition(rec, TaskStatus.PAUSED)
    transition(rec, TaskStatus.RUNNING)
    transition(rec, TaskStatus.COMPLETED)
    for status in TaskStatus:
        assert not can_transition(TaskStatus.COMPLETED, status)
    with pytest.raises(InvalidTransition, match="completed -> running"):
        transition(rec, TaskStatus.RUNNING)
    queued = TaskRecord(task_id="q", command="x", argv=["x"])
    with pytest.raises(InvalidTransition):
        transition(queued, TaskStatus.PAUSED)


async def test_the_queue_counts_slots_and_refuses_past_capacity() -> None:
    q: LocalTaskQueue[str] = LocalTaskQueue(max_running=2, max_waiting=1)
    assert await q.admit("a") is Admission.START and await q.admit("b") is Admission.START
    assert await q.admit("c") is Admission.WAIT
    assert len(q) == 1 and q.running == 2
    with pytest.raises(ProtocolError) as err:
        await q.check_capacity()
    assert err.value.code == ErrorCode.CAPACITY_EXCEEDED
    assert q.next_startable() is None  # no free slot
    q.release()
    assert q.next_startable() == "c" and q.running == 2 and len(q) == 0
    assert not q.remove("c")


class SharedSqliteStore(SqliteTaskStore):
    """The SQLite store, declared shared with other nodes (as a cluster's store is)."""

    shared = True


async def test_recovery_touches_only_this_nodes_records(tmp_path: Path) -> None:
    """In a shared store, a record another node left running is that node's to recover."""
    sleeper = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    try:
        settings = Settings(data_dir=tmp_path / "data", node_id="node-a", log_format="text")
        settings.data_dir.mkdir()
        store = SqliteTaskStore(settings.db_path)
        await store.open()
        mine = TaskRecord(task_id="mine", command="c", argv=["c"], node="node-a")
        theirs = TaskRecord(
            task_id="theirs",
            command="c",
            argv=["c"],
            node="node-b",
            pid=sleeper.pid,
            pgid=sleeper.pid,
        )
        for rec in (mine, theirs):
            rec.status = TaskStatus.RUNNING
            store.save(rec)
        await store.close()

        engine = Engine(settings, store=SharedSqliteStore(settings.db_path))
        await engine.start()
        try:
            assert (await engine.get("mine")).status == TaskStatus.LOST
            assert (await engine.get("theirs")).status == TaskStatus.RUNNING
            # Its group was not touched.
            assert process.group_members(sleeper.pid) == {sleeper.pid: "S"}
            done = await engine.execute(
                TaskSpec(command="true", argv=["true"], env=command_env(None))
            )
            final = await engine.wait(done.task_id, 10)
            assert final.node == "node-a"  # every record names the engine that ran it
            assert (await engine.get(done.task_id)).to_dict()["node"] == "node-a"
        finally:
            await engine.close()
    finally:
        sleeper.kill()
        await sleeper.wait()


async def test_an_own_store_recovers_records_of_an_earlier_node_name(tmp_path: Path) -> None:
    """The default node name carries the port: a restart on another port still recovers."""
    settings = Settings(data_dir=tmp_path / "data", port=8101, log_format="text")
    settings.data_dir.mkdir()
    store = SqliteTaskStore(settings.db_path)
    await store.open()
    old = TaskRecord(task_id="old", command="c", argv=["c"], node="host:8100")
    old.status = TaskStatus.RUNNING
    store.save(old)
    await store.close()
    engine = Engine(settings)
    await engine.start()
    try:
        assert (await engine.get("old")).status == TaskStatus.LOST
    finally:
        await engine.close()
