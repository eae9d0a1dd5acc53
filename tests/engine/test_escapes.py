"""What leaves a task's group, in an engine embedded in another program (no subreaper):
found by its tag in /proc and ended with its task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cc_executor.engine import Engine, TaskSpec, reaper
from cc_executor.protocol import Action, TaskStatus
from tests.support import pid_alive, wait_until


async def _escapee(engine: Engine, sh: Callable[..., TaskSpec], tmp: Path, then: str) -> int:
    pidfile = tmp / "escapee.pid"
    script = f"setsid sleep 60 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; {then}"
    rec = await engine.execute(sh(script))
    await wait_until(pidfile.exists, 10, "the escapee's pid file")
    pid = int(pidfile.read_text())
    done = await engine.wait(rec.task_id, 30)
    assert done.status.is_final, done
    return pid


async def test_an_escapee_ends_when_its_short_task_exits(
    engine: Engine, sh: Callable[..., TaskSpec], tmp_path: Path
) -> None:
    assert not reaper.collects_orphans()  # the embedded case: a scan of /proc finds it
    pid = await _escapee(engine, sh, tmp_path, "exit 0")
    assert not pid_alive(pid)


async def test_an_escapee_ends_with_a_long_task_cancelled(
    engine: Engine, sh: Callable[..., TaskSpec], tmp_path: Path
) -> None:
    """Past a second, the scan cannot rely on pids given out since the spawn: it reads all."""
    waiting = asyncio.ensure_future(_escapee(engine, sh, tmp_path, "sleep 60"))
    await wait_until(lambda: engine.stats()["running"] == 1, 10)
    await asyncio.sleep(1.2)  # no event says "a second has passed": its age is the point
    (task_id,) = [r.task_id for r in await engine.list() if r.status == TaskStatus.RUNNING]
    assert (await engine.control(task_id, Action.CANCEL)).status == TaskStatus.CANCELLED
    pid = await waiting
    assert not pid_alive(pid)
