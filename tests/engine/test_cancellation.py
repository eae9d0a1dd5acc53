"""A caller that goes away mid-request (its connection closed, its handler cancelled) must
not leave a task half-done: the engine finishes what it started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cc_executor.engine import Engine, TaskSpec, process
from cc_executor.protocol import Action, TaskStatus
from tests.support import group_stopped, live_members, wait_until


async def test_pause_whose_caller_is_cancelled_still_settles(
    engine: Engine, sh: Callable[..., TaskSpec]
) -> None:
    rec = await engine.execute(sh("sleep 300 & sleep 300; wait"))
    assert rec.pid is not None
    pgid = rec.pid
    assert await wait_until(lambda: len(live_members(pgid)) == 3)
    call = asyncio.create_task(engine.control(rec.task_id, Action.PAUSE))
    await asyncio.sleep(0)  # SIGSTOP sent, now waiting for the group to stop
    call.cancel()
    # The group does stop (the signal was sent) and the record must say so.
    assert await wait_until(lambda: group_stopped(pgid)), process.group_members(pgid)
    assert await wait_until(lambda: engine.live_task(rec.task_id).record.status == "paused")  # type: ignore[union-attr]
    # And it can be resumed and cancelled as usual.
    assert (await engine.control(rec.task_id, Action.RESUME)).status == TaskStatus.RUNNING
    assert not set(process.group_members(pgid).values()) & {"T", "t"}
    assert (await engine.control(rec.task_id, Action.CANCEL)).status == TaskStatus.CANCELLED


async def test_cancel_whose_caller_is_cancelled_still_ends_the_group(
    engine: Engine, sh: Callable[..., TaskSpec]
) -> None:
    rec = await engine.execute(sh("trap '' TERM; sleep 300 & sleep 300; wait"))
    assert rec.pid is not None
    pgid = rec.pid
    assert await wait_until(lambda: len(live_members(pgid)) == 3)
    call = asyncio.create_task(engine.control(rec.task_id, Action.CANCEL))
    await asyncio.sleep(0)
    call.cancel()
    done = await engine.wait(rec.task_id, timeout=30)
    assert done.status == TaskStatus.CANCELLED
    assert await wait_until(lambda: not live_members(pgid))


async def test_execute_whose_caller_is_cancelled_still_streams(
    engine: Engine, sh: Callable[..., TaskSpec]
) -> None:
    """Cancelled while its pipes were being attached: the task must still run to its end,
    its stderr read (a child writing 1 MB to it would block forever otherwise)."""
    spec = sh("head -c 1000000 /dev/zero >&2; echo out", timeout=60)
    call = asyncio.create_task(engine.execute(spec))
    # Step the loop until the child is spawned and its pipes are being attached.
    while engine.stats()["running"] == 0:  # noqa: ASYNC110
        await asyncio.sleep(0)
    call.cancel()
    (rec,) = [r for r in await engine.list() if r.command == spec.command]
    done = await engine.wait(rec.task_id, timeout=30)
    assert done.status == TaskStatus.COMPLETED, done
    assert done.stderr_bytes == 1_000_000 and done.stdout_bytes == 4


async def test_pause_of_a_forking_shell_loop(engine: Engine, sh: Callable[..., TaskSpec]) -> None:
    """A shell busy spawning programs: a pause often lands while a vfork child has not
    exec'd yet, leaving its parent blocked (D). The pause must still settle at once."""
    rec = await engine.execute(sh("while :; do /bin/true; done"))
    assert rec.pid is not None
    pgid = rec.pid
    for _ in range(40):
        paused = await engine.control(rec.task_id, Action.PAUSE)
        assert paused.status == TaskStatus.PAUSED
        assert "control_warning" not in paused.extra, process.group_members(pgid)
        assert group_stopped(pgid), process.group_members(pgid)
        resumed = await engine.control(rec.task_id, Action.RESUME)
        assert resumed.status == TaskStatus.RUNNING
        assert not set(process.group_members(pgid).values()) & {"T", "t"}
    assert (await engine.control(rec.task_id, Action.CANCEL)).status == TaskStatus.CANCELLED
