"""Hooks across a SIGKILL of the service (a real process): the next start reaps the hook's
whole group before it serves, and the task record says what happened."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cc_executor.client import ExecutorClient
from tests.support import ServiceProcess, live_members, pid_alive, wait_until


def stubborn_hook(directory: Path) -> str:
    """A hook that never ends by itself, with a child that ignores TERM."""
    return (
        f"echo $$ > '{directory}/hook.pid'; "
        f'sh -c \'trap "" TERM; echo $$ > "{directory}/child.pid"; exec sleep 300\' & '
        "wait"
    )


async def hook_started(directory: Path) -> tuple[int, int]:
    assert await wait_until(
        lambda: all(
            (directory / f).exists() and (directory / f).read_text().strip()
            for f in ("hook.pid", "child.pid")
        ),
        timeout=30,
    )
    return int((directory / "hook.pid").read_text()), int((directory / "child.pid").read_text())


async def test_a_post_hook_running_at_a_sigkill_is_reaped_and_recorded(
    service_process: Callable[..., Any], tmp_path: Path
) -> None:
    hook = stubborn_hook(tmp_path)
    sp: ServiceProcess = await service_process(
        CC_EXECUTOR_HOOKS__POST_EXECUTE=json.dumps([hook]), CC_EXECUTOR_HOOKS__TIMEOUT="600"
    )
    async with ExecutorClient(sp.url, sp.token) as c:
        task = await c.execute(["echo", "done"], name="hooked")
        hook_pid, child_pid = await hook_started(tmp_path)
        sp.proc.kill()
        sp.proc.wait(timeout=10)
    # The crash left the hook's group behind, orphaned.
    assert pid_alive(hook_pid) and pid_alive(child_pid)

    again: ServiceProcess = await service_process(sp.data_dir)
    assert not live_members(hook_pid), live_members(hook_pid)  # reaped during start-up
    assert not pid_alive(child_pid)
    async with ExecutorClient(again.url, again.token) as c:
        rec = await c.status(task.task_id)
    assert rec["status"] == "lost" and rec["name"] == "hooked"
    assert rec["hooks"]["post_execute"] == [
        {
            "command": hook,
            "exit_code": None,
            "timed_out": False,
            "lost": True,
            "error": "the service stopped while this hook ran; its leftover processes were killed",
        }
    ]
    assert any(
        r.get("task_id") == task.task_id and "post_execute hook" in r.get("msg", "")
        for r in again.log_records()
    )


async def test_a_pre_hook_running_at_a_sigkill_is_reaped(
    service_process: Callable[..., Any], tmp_path: Path
) -> None:
    sp: ServiceProcess = await service_process(
        CC_EXECUTOR_HOOKS__PRE_EXECUTE=json.dumps([stubborn_hook(tmp_path)]),
        CC_EXECUTOR_HOOKS__TIMEOUT="600",
    )
    async with ExecutorClient(sp.url, sp.token) as c:
        call = asyncio.create_task(c.execute(["echo", "never"]))
        hook_pid, child_pid = await hook_started(tmp_path)
        sp.proc.kill()
        sp.proc.wait(timeout=10)
        (outcome,) = await asyncio.gather(call, return_exceptions=True)
        assert isinstance(outcome, Exception)  # the connection dropped under it
    assert pid_alive(hook_pid) and pid_alive(child_pid)

    again: ServiceProcess = await service_process(sp.data_dir)
    assert not live_members(hook_pid) and not pid_alive(child_pid)
    async with ExecutorClient(again.url, again.token) as c:
        assert (await c.status())["tasks"] == []  # the task was never created
    assert any("pre_execute hook" in r.get("msg", "") for r in again.log_records())
