"""The engine on its own: big output with nobody reading, records across engine instances."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cc_executor.engine import Engine, Subscriber, TaskSpec, command_env
from cc_executor.protocol import Notification, Stream, TaskStatus
from tests.support import wait_until

MB = 1024 * 1024


async def test_100mb_output_nobody_reads_no_deadlock(
    engine: Engine, sh: Callable[..., TaskSpec]
) -> None:
    """A child printing 100 MB never blocks on its pipe, whether or not anyone reads."""
    total = 100_000_000
    stalled = Subscriber(1 * MB)  # attached, never read
    unread = await engine.execute(sh(f"yes | head -c {total}"), stalled)
    bare = await engine.execute(sh(f"yes abc | head -c {total // 10}"))  # no subscriber at all
    done = await engine.wait(unread.task_id, timeout=120)
    done_bare = await engine.wait(bare.task_id, timeout=120)
    assert done.status == TaskStatus.COMPLETED, done
    assert done_bare.status == TaskStatus.COMPLETED, done_bare
    assert done.exit_code == 0 and done.stdout_bytes == total and done.stderr_bytes == 0
    assert done_bare.stdout_bytes == total // 10
    path = engine.log_path(unread.task_id, Stream.STDOUT)
    assert path.stat().st_size == total
    head = await engine.read_output(unread.task_id, Stream.STDOUT, 0, 8)
    assert head["data"] == "y\ny\ny\ny\n" and head["eof"] is False
    page = await engine.read_output(unread.task_id, Stream.STDOUT, total - 4, 100)
    assert page["data"] == "y\ny\n" and page["total"] == total and page["eof"] is True

    # What the stalled subscriber holds is bounded; reading now, it gets every byte.
    assert sum(ev.nbytes for ev in list(stalled._queue)) <= 1 * MB
    events = []
    while True:
        ev = await stalled.get()
        events.append(ev)
        if ev.method == Notification.COMPLETED:
            break
    assert events[0].method == Notification.STARTED
    pos = 0
    for ev in events[1:-1]:
        assert ev.method == Notification.OUTPUT and ev.params["offset"] == pos
        pos += ev.nbytes
    assert pos == total
    assert stalled.dropped_bytes == 0
    os.unlink(path)
    os.unlink(engine.log_path(bare.task_id, Stream.STDOUT))


async def test_records_and_output_survive_an_engine_restart(
    make_engine: Callable[..., Any], sh: Callable[..., TaskSpec]
) -> None:
    first: Engine = await make_engine()
    rec = await first.execute(sh("printf 'out\\377'; printf err >&2; exit 3", name="r1"))
    done = await first.wait(rec.task_id, timeout=30)
    assert done.status == TaskStatus.FAILED and done.exit_code == 3
    await first.close()

    second: Engine = await make_engine()
    again = await second.get(rec.task_id)
    assert again.status == TaskStatus.FAILED
    assert again.exit_code == 3 and again.name == "r1"
    assert again.stdout_bytes == 4 and again.stderr_bytes == 3
    assert again.pid == done.pid and again.started_at == done.started_at
    out = await second.read_output(rec.task_id, Stream.STDOUT, 0, 100)
    assert out["encoding"] == "base64" and out["total"] == 4 and out["eof"] is True
    err = await second.read_output(rec.task_id, Stream.STDERR, 0, 100)
    assert err["data"] == "err" and err["encoding"] == "utf-8"
    assert [r.task_id for r in await second.list()] == [rec.task_id]


async def test_spawn_failure_is_a_failed_task(engine: Engine) -> None:
    spec = TaskSpec(command=["/nonexistent/prog"], argv=["/nonexistent/prog"], env={})
    rec = await engine.execute(spec)
    done = await engine.wait(rec.task_id, timeout=10)
    assert done.status == TaskStatus.FAILED
    assert done.error is not None and "spawn failed" in done.error
    assert engine.stats()["spawn_failures"] == 1
    # The slot was released: the next task runs.
    ok = await engine.execute(TaskSpec(command=["true"], argv=["true"], env=dict(os.environ)))
    assert (await engine.wait(ok.task_id, timeout=10)).status == TaskStatus.COMPLETED


async def test_status_of_a_running_task_counts_bytes_so_far(engine: Engine, tmp_path: Path) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    spec = TaskSpec(
        command="x",
        argv=["sh", "-c", f"printf 12345; printf ab >&2; read x < {fifo}"],
        env=command_env(None),
    )
    rec = await engine.execute(spec)

    task = engine.live_task(rec.task_id)
    assert task is not None
    assert await wait_until(lambda: task.streams[Stream.STDOUT].read(0, 100) == b"12345")
    assert await wait_until(lambda: task.streams[Stream.STDERR].read(0, 100) == b"ab")
    live = await engine.get(rec.task_id)
    assert (live.status, live.stdout_bytes, live.stderr_bytes) == ("running", 5, 2)
    listed = {r.task_id: r for r in await engine.list()}[rec.task_id]
    assert listed.stdout_bytes == 5
    await asyncio.to_thread(fifo.write_text, "go\n")
    done = await engine.wait(rec.task_id, timeout=30)
    assert (done.status, done.stdout_bytes) == ("completed", 5)
