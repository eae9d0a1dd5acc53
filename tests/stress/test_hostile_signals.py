"""Issue 17: SIGTERM to a process running tasks in-process ends their groups.

A Python program using the API (`cc_execute`) and a bridge with a local engine
(`CC_EXECUTOR_BRIDGE_MODE=local`) each run `sleep 1000` in a process group of its own.
SIGTERM to the program (or the bridge): it exits by SIGTERM (status -15, as the default
disposition would) and the task's group is gone, found by a scan of the whole of /proc for
the test's mark. A program that handles SIGTERM itself keeps its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support import pid_alive, processes_with_env, wait_until

from ..bridge.conftest import bridge_in_task
from .support import leftovers, marked_processes

pytestmark = pytest.mark.stress

ROOT = Path(__file__).resolve().parents[2]

API_PROGRAM = """
import signal, sys
from cc_executor import api
from cc_executor.config import Settings
if sys.argv[3] == "own-handler":
    signal.signal(signal.SIGTERM, lambda *a: print("own handler", flush=True))
api.configure(Settings(data_dir=sys.argv[1], kill_grace_seconds=1))
if sys.argv[3] == "a-thread-takes-it":
    api.cc_execute(command=["true"])  # the API's threads start, with SIGTERM unblocked
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # so one of them takes it
api.cc_execute(command=["sleep", "1000"], env={"CC_STRESS_MARK": sys.argv[2]})
"""


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CC_EXECUTOR_", "CC_STRESS"))}
    return {**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}


async def _api_program(tmp_path: Path, mark: str, how: str) -> asyncio.subprocess.Process:
    script = tmp_path / "uses_the_api.py"
    script.write_text(textwrap.dedent(API_PROGRAM))
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path / "data"), mark, how,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_clean_env(tmp_path),
    )  # fmt: skip


async def test_sigterm_to_an_api_caller_ends_its_task(tmp_path: Path, mark: str) -> None:
    proc = await _api_program(tmp_path, mark, "default")
    await wait_until(lambda: marked_processes(mark), timeout=60, what="the task's sleep runs")
    (sleeper,) = marked_processes(mark)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == -signal.SIGTERM, err.decode()[-3000:]
    left = await leftovers(mark, [sleeper])
    assert not left, (left, f"{time.monotonic() - t0:.2f}s after SIGTERM")


async def test_sigterm_taken_by_another_thread_still_ends_the_call(
    tmp_path: Path, mark: str
) -> None:
    """The kernel gives a process's signal to any thread not blocking it; the Python
    handler runs on the main thread once it runs Python again. A caller blocked in an
    untimed wait never did (5 SIGTERMs of 55 went unheard under load); here the caller's
    thread blocks SIGTERM, so another thread always takes it."""
    proc = await _api_program(tmp_path, mark, "a-thread-takes-it")
    await wait_until(lambda: marked_processes(mark), timeout=60, what="the task's sleep runs")
    (sleeper,) = marked_processes(mark)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == -signal.SIGTERM, err.decode()[-3000:]
    assert not await leftovers(mark, [sleeper])


async def test_an_api_callers_own_sigterm_handler_is_kept(tmp_path: Path, mark: str) -> None:
    proc = await _api_program(tmp_path, mark, "own-handler")
    try:
        await wait_until(lambda: marked_processes(mark), timeout=60, what="the task's sleep runs")
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line == b"own handler\n"
        assert proc.returncode is None and marked_processes(mark)  # it chose to go on
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the API cancels the task
        await asyncio.wait_for(proc.communicate(), 30)
    assert not await leftovers(mark, [])


async def test_sigterm_to_a_local_bridge_ends_its_task(tmp_path: Path, mark: str) -> None:
    bridge_mark = f"CC_TEST_BRIDGE={uuid.uuid4().hex}"
    env = {
        **_clean_env(tmp_path),
        "CC_EXECUTOR_DATA_DIR": str(tmp_path / "bridge-data"),
        "CC_EXECUTOR_BRIDGE_MODE": "local",
        "CC_EXECUTOR_KILL_GRACE_SECONDS": "1",
        "CC_EXECUTOR_BRIDGE_LOG_LEVEL": "INFO",
        bridge_mark.split("=")[0]: bridge_mark.split("=")[1],
    }
    log = tmp_path / "bridge.log"
    bridge_pid = pgid = 0
    try:
        async with bridge_in_task(env, log) as bridge:
            r = await bridge.call_tool(
                "execute_task", {"command": f"CC_STRESS_MARK={mark} sleep 1000", "wait": False}
            )
            assert not r.is_error, r.content
            assert r.structured_content["backend"] == "local"
            pgid = r.structured_content["pid"]
            found = processes_with_env(bridge_mark)  # the bridge, and its task (inherited)
            (bridge_pid,) = [pid for pid, cmd in found.items() if "mcp_bridge" in cmd]
            os.kill(bridge_pid, signal.SIGTERM)  # its client still there, as in real life
            await wait_until(lambda: not pid_alive(bridge_pid), timeout=30, what="it exits")
    except Exception:
        if not bridge_pid:
            raise  # before the signal: a failure of the test itself
        # after it, the client sees its server die: that is what the test does
    assert not pid_alive(bridge_pid)
    assert "SIGTERM: ending the local engine's tasks" in log.read_text()
    left = await leftovers(mark, [pgid])
    assert not left, left
