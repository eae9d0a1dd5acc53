"""tests/support itself: polling fails at its deadline, the /proc readers agree with the
kernel, and the service process restarts at the same URL with the same token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from cc_executor.client import ExecutorClient
from tests.support import (
    ServiceProcess,
    free_port,
    group_gone,
    group_running,
    group_states,
    group_stopped,
    happens_within,
    live_members,
    pid_alive,
    proc_state,
    wait_until,
    wait_until_sync,
)


async def test_wait_until_returns_once_true_and_fails_at_the_deadline() -> None:
    flips = iter([False, False, True])
    assert await wait_until(lambda: next(flips), timeout=5) is True
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for the moon"):
        await wait_until(lambda: False, timeout=0.05, what="the moon")
    with pytest.raises(AssertionError, match="lambda: 1 == 2"):  # names the condition
        wait_until_sync(lambda: 1 == 2, timeout=0.05)


async def test_happens_within_tells_whether_it_happened() -> None:
    assert await happens_within(lambda: True, 1) is True
    assert await happens_within(lambda: False, 0.05) is False


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_proc_readers_follow_a_group_through_stop_and_kill() -> None:
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    pgid = leader.pid
    try:
        wait_until_sync(lambda: len(live_members(pgid)) == 3)
        assert set(group_states(pgid)) >= {leader.pid} and pid_alive(leader.pid)
        assert group_running(pgid) and not group_stopped(pgid)
        os.killpg(pgid, signal.SIGSTOP)
        wait_until_sync(lambda: group_stopped(pgid))
        assert proc_state(leader.pid) in "Tt" and not group_running(pgid)
    finally:
        os.killpg(pgid, signal.SIGKILL)
        leader.wait()
    wait_until_sync(lambda: group_gone(pgid))
    assert proc_state(leader.pid) == "X" and not pid_alive(leader.pid)


async def test_service_process_restarts_at_the_same_url_with_its_token(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path / "data", tmp_path / "svc.log")
    await svc.start()
    try:
        url, token, first = svc.url, svc.token, svc.pid
        assert token == (tmp_path / "data" / "token").read_text().strip()
        svc.kill9()
        assert not svc.alive()
        await svc.start()
        async with ExecutorClient(svc.url, svc.read_token()) as c:
            assert (await c.ping())["pong"] is True
        assert (svc.url, svc.read_token()) == (url, token) and svc.pid != first
        await svc.restart()
        assert svc.alive() and svc.pids[-1] == svc.pid and len(svc.pids) == 3
    finally:
        assert await svc.stop_async() == 0  # SIGTERM: a clean exit
    assert any(r.get("msg") == "cc-executor listening" for r in svc.log_records())
    assert svc.errors() == []
