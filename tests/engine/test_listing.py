"""The task list's filters, order and paging (engine/listing.py), pure and through `status`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cc_executor.client import ExecutorClient
from cc_executor.engine.listing import select
from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import ProtocolError, StatusParams, TaskStatus


def rec(i: int, status: TaskStatus = TaskStatus.COMPLETED, **kw: object) -> TaskRecord:
    r = TaskRecord(
        task_id=f"{i:016x}",
        command=kw.pop("command", ["echo", str(i)]),  # type: ignore[arg-type]
        argv=[],
        status=status,
        created_at=1000.0 + i,
        started_at=1000.5 + i,
        ended_at=None if status.is_final is False else 1001.0 + i + (i % 7),
        **kw,  # type: ignore[arg-type]
    )
    return r


def params(**kw: object) -> StatusParams:
    return StatusParams.model_validate(kw)


def history(n: int = 300) -> list[TaskRecord]:
    recs = [rec(i, TaskStatus.FAILED if i % 10 == 3 else TaskStatus.COMPLETED) for i in range(n)]
    recs[5] = rec(5, TaskStatus.RUNNING, name="old-runner")
    recs[6] = rec(6, TaskStatus.PAUSED)
    recs[7] = rec(7, TaskStatus.QUEUED)
    return recs


def test_active_tasks_come_first_whatever_the_history() -> None:
    page = select(history(), params(limit=20, active_first=True))
    assert [r.status for r in page.tasks[:3]] == ["running", "paused", "queued"]
    assert page.total == 300
    rest = page.tasks[3:]
    assert [r.created_at for r in rest] == sorted((r.created_at for r in rest), reverse=True)
    # Without it, the list is newest first and the old running task is not on page one.
    plain = select(history(), params(limit=20))
    assert all(r.status.is_final for r in plain.tasks)


def test_status_filter_and_counts() -> None:
    page = select(history(), params(statuses="failed,running", limit=1000))
    assert {r.status for r in page.tasks} == {TaskStatus.FAILED, TaskStatus.RUNNING}
    assert page.total == 31
    # counts are per status over the text match only: the chips of every status.
    assert page.counts == {"completed": 267, "failed": 30, "running": 1, "paused": 1, "queued": 1}


def test_text_search_over_id_name_command_and_prompt() -> None:
    recs = [
        rec(1, command="make test"),
        rec(2, name="Deploy-Prod"),
        rec(3, command=["claude", "-p"], kind="claude", extra={"prompt": "Fix the login bug"}),
        rec(0xABCDEF),
    ]
    assert [r.task_id for r in select(recs, params(text="MAKE")).tasks] == [recs[0].task_id]
    assert [r.name for r in select(recs, params(text="deploy")).tasks] == ["Deploy-Prod"]
    assert [r.task_id for r in select(recs, params(text="login")).tasks] == [recs[2].task_id]
    assert [r.task_id for r in select(recs, params(text="abcdef")).tasks] == [recs[3].task_id]
    page = select(recs, params(text="nothing like it"))
    assert page.tasks == [] and page.total == 0 and page.counts == {}


def test_pages_cover_every_match_once() -> None:
    recs = history(95)
    seen: list[str] = []
    for offset in range(0, 100, 20):
        page = select(recs, params(limit=20, offset=offset, active_first=True))
        assert page.total == 95 and page.offset == offset
        seen += [r.task_id for r in page.tasks]
    assert sorted(seen) == sorted(r.task_id for r in recs) and len(seen) == 95


def test_sort_by_runtime_puts_missing_values_last() -> None:
    recs = history(30)
    page = select(recs, params(sort="runtime", descending=False, limit=100))
    runtimes = [r.duration_s for r in page.tasks if r.ended_at is not None]
    assert runtimes == sorted(runtimes)
    assert page.tasks[-1].status == TaskStatus.QUEUED or page.tasks[-1].ended_at is None
    costs = [rec(1, extra={"total_cost_usd": 0.5}), rec(2), rec(3, extra={"total_cost_usd": 2})]
    assert [r.task_id[-1] for r in select(costs, params(sort="cost")).tasks] == ["3", "1", "2"]


def test_bad_params_name_the_field() -> None:
    with pytest.raises(ValidationError, match="statuses"):
        params(statuses="running,nope")
    with pytest.raises(ValidationError, match="sort"):
        params(sort="colour")
    with pytest.raises(ValidationError, match="offset"):
        params(offset=-1)


async def test_status_filters_over_the_wire(client: ExecutorClient) -> None:
    done = await client.execute(["echo", "alpha"], name="first", keep_events=False)
    await done.wait()
    bad = await client.execute(["sh", "-c", "exit 2"], name="second", keep_events=False)
    await bad.wait()
    sleeper = await client.execute(["sleep", "30"], name="sleeper", keep_events=False)
    try:
        res = await client.status(limit=2, active_first=True)
        assert [t["task_id"] for t in res["tasks"]] == [sleeper.task_id, bad.task_id]
        assert res["total"] == 3 and res["offset"] == 0
        assert res["counts"] == {"running": 1, "failed": 1, "completed": 1}
        res = await client.status(statuses=["failed"])
        assert [t["task_id"] for t in res["tasks"]] == [bad.task_id]
        res = await client.status(text="ALPHA", offset=0)
        assert [t["task_id"] for t in res["tasks"]] == [done.task_id]
        res = await client.status(limit=1, offset=2)
        assert [t["task_id"] for t in res["tasks"]] == [done.task_id]
        with pytest.raises(ProtocolError) as info:
            await client.status(statuses=["nope"])
        assert "statuses" in info.value.message + str(info.value.data)
    finally:
        await client.control(sleeper.task_id, "CANCEL")
