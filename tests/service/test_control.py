"""PAUSE / RESUME / CANCEL, time limits and wrong-state errors, checked in the process table."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from cc_executor.client import ExecutorClient, TaskHandle
from cc_executor.engine import process
from cc_executor.protocol import ErrorCode, ProtocolError
from cc_executor.server import ExecutorService
from tests.support import live_members, wait_until

from .conftest import raw_connect

# sh (leader) -> sh -> sleep (a child of a child), and sh -> sleep: four processes.
TREE = "sh -c 'sleep 300; true' & sleep 300 & wait"


def comms(pgid: int) -> list[str]:
    out = []
    for pid in live_members(pgid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                out.append(f.read().strip())
        except OSError:
            pass
    return sorted(out)


async def start_tree(client: ExecutorClient, command: str = TREE) -> TaskHandle:
    """Start the tree and wait until it is settled: every sleep exec'd, nobody forking."""
    h = await client.execute(command)
    pgid = h.pid
    assert pgid is not None
    assert await wait_until(lambda: comms(pgid) == ["sh", "sh", "sleep", "sleep"]), comms(pgid)
    return h


def ppids(pgid: int) -> dict[int, int]:
    out = {}
    for pid in live_members(pgid):
        raw = open(f"/proc/{pid}/stat", "rb").read()
        out[pid] = int(raw[raw.rfind(b")") + 2 :].split()[1])
    return out


async def test_pause_stops_every_process_and_resume_continues(client: ExecutorClient) -> None:
    h = await start_tree(client)
    pgid = h.pid
    assert pgid is not None
    # There really is a grandchild: someone whose parent is not the leader.
    parents = ppids(pgid)
    assert any(pp != pgid and pp in parents for pp in parents.values()), parents

    res = await h.pause()
    assert res == {"task_id": h.task_id, "action": "PAUSE", "status": "paused"}
    # The reply came after the group really stopped: no waiting here.
    states = process.group_members(pgid)
    assert len(states) == 4 and set(states.values()) <= {"T", "t"}, states
    assert (await client.status(h.task_id))["status"] == "paused"

    res = await h.resume()
    assert res["status"] == "running"
    states = process.group_members(pgid)
    assert len(states) == 4 and not set(states.values()) & {"T", "t"}, states

    await h.cancel()
    events = [e["method"] async for e in h.events()]
    assert events == [
        "process.started",
        "process.paused",
        "process.resumed",
        "process.completed",
    ]


async def test_cancel_of_a_paused_task_leaves_no_process(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    h = await start_tree(client)
    assert h.pid is not None
    await h.pause()
    res = await h.cancel()
    assert res["status"] == "cancelled"
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)
    done = await h.wait(10)
    assert done["status"] == "cancelled"
    assert done["signal"] == signal.SIGTERM  # SIGCONT let it see the SIGTERM


async def test_cancel_running_group(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    h = await start_tree(client)
    assert h.pid is not None
    assert (await h.cancel())["status"] == "cancelled"
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)


async def test_sigterm_ignoring_group_is_killed_after_grace(
    client: ExecutorClient, service: ExecutorService, assert_group_gone: Callable[[int], None]
) -> None:
    assert service.settings.kill_grace_seconds == 1.0
    h = await start_tree(client, "trap '' TERM; " + TREE)
    assert h.pid is not None
    res = await h.cancel()
    assert res["status"] == "cancelled"
    done = await h.wait(10)
    assert done["signal"] == signal.SIGKILL
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)


async def test_leader_exit_takes_its_group_along(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    """A leader that exits while its children linger: the group goes with the task."""
    h = await client.execute("sleep 300 >/dev/null 2>&1 & echo started")
    assert h.pid is not None
    done = await h.wait(30)
    assert done["status"] == "completed"
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)


async def test_timeout_keeps_output_so_far(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    h = await client.execute("echo before; echo err >&2; " + TREE, timeout=1)
    done = await h.wait(30)
    assert done["status"] == "timed_out"
    assert "timed out" in done["error"]
    assert done["stdout_bytes"] == 7
    assert (await client.output(h.task_id))["data"] == "before\n"
    assert (await client.output(h.task_id, "stderr"))["data"] == "err\n"
    rec = await client.status(h.task_id)
    assert rec["status"] == "timed_out" and rec["timeout_kind"] == "timeout"
    assert h.pid is not None
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)


async def test_idle_timeout_keeps_output_so_far(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    h = await client.execute("printf 'partial'; " + TREE, idle_timeout=0.5)
    done = await h.wait(30)
    assert done["status"] == "timed_out"
    assert "idle" in done["error"]
    page = await client.output(h.task_id)
    assert page["data"] == "partial" and page["total"] == 7 and page["eof"] is True
    assert (await client.status(h.task_id))["timeout_kind"] == "idle_timeout"
    assert h.pid is not None
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    assert_group_gone(h.pid)


async def test_timeout_of_a_paused_task(
    client: ExecutorClient, assert_group_gone: Callable[[int], None]
) -> None:
    h = await start_tree(client, TREE)
    await h.pause()
    # A wall-clock timeout still ends a paused task (the group is continued to see SIGTERM).
    h2 = await client.execute("sh -c 'sleep 300; true' & sleep 300 & wait", timeout=1.5)
    pgid2 = h2.pid
    assert pgid2 is not None
    assert await wait_until(lambda: comms(pgid2) == ["sh", "sh", "sleep", "sleep"])
    try:
        assert (await h2.pause())["status"] == "paused"
    except ProtocolError as exc:  # a very slow machine: the timer won the race
        assert exc.code == ErrorCode.INVALID_STATE
    done = await h2.wait(30)
    assert done["status"] == "timed_out"
    assert await wait_until(lambda: not live_members(pgid2))
    assert_group_gone(pgid2)
    assert (await client.status(h.task_id))["status"] == "paused"  # the other one untouched
    await h.cancel()


async def test_control_unknown_task(client: ExecutorClient) -> None:
    for action in ("PAUSE", "RESUME", "CANCEL"):
        with pytest.raises(ProtocolError) as info:
            await client.control("no-such-task", action)
        assert info.value.code == ErrorCode.TASK_NOT_FOUND == -32001


async def test_control_wrong_state(client: ExecutorClient) -> None:
    h = await client.execute(["sleep", "300"])
    with pytest.raises(ProtocolError) as info:
        await h.resume()
    assert info.value.code == ErrorCode.INVALID_STATE
    assert info.value.data == {"status": "running"}
    await h.pause()
    with pytest.raises(ProtocolError) as info:
        await h.pause()
    assert info.value.code == ErrorCode.INVALID_STATE
    assert "paused" in info.value.message
    await h.cancel()
    for action in ("PAUSE", "RESUME", "CANCEL"):
        with pytest.raises(ProtocolError) as info:
            await h.control(action)
        assert info.value.code == ErrorCode.INVALID_STATE
        assert info.value.data == {"status": "cancelled"}


async def test_pause_of_a_finished_and_a_queued_task(
    client: ExecutorClient, service: ExecutorService
) -> None:
    h = await client.execute(["true"])
    await h.wait(30)
    with pytest.raises(ProtocolError) as info:
        await h.pause()
    assert info.value.code == ErrorCode.INVALID_STATE and info.value.data == {"status": "completed"}


async def test_session_id_alias_and_lowercase_action(
    service: ExecutorService, assert_group_gone: Callable[[int], None]
) -> None:
    async with raw_connect(service.url, service.token) as r:
        started = await r.result("execute", {"command": ["sleep", "300"]})
        tid, pid = started["task_id"], started["pid"]
        res = await r.result("control", {"session_id": tid, "action": "pause"})
        assert res == {"task_id": tid, "action": "PAUSE", "status": "paused"}
        assert set(process.group_members(pid).values()) <= {"T", "t"}
        res = await r.result("control", {"session_id": tid, "action": "Resume"})
        assert res["status"] == "running"
        res = await r.result("control", {"task_id": tid, "action": "cancel"})
        assert res["status"] == "cancelled"
        assert await wait_until(lambda: not live_members(pid))
        assert_group_gone(pid)
