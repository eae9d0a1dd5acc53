"""Processes that leave their task's group, and a service that is PID 1.

Each task here starts four escapees the way real programs do (`setsid sleep &`, `set -m;
sleep &` in bash, Python's `start_new_session=True`, and a double-forked daemon that
ignores SIGTERM), each in a process group of its own, so a `killpg` of the task's group
misses them. They carry the task's tag (`CC_EXECUTOR_TASK_ID`) and the test's mark.

Guarantees checked: the reply to CANCEL, the end of a timed-out task and of a task whose
leader simply exits, the exit of a service sent SIGTERM, and the first answer of a service
restarted after `kill -9`, each come only once all four are gone (a SIGTERM-ignoring daemon
gets SIGKILL after the grace). As PID 1 of its own pid namespace (`unshare --pid`), the
service reaps the orphans that come to it, and the exit codes of its tasks stay theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient, TaskHandle
from tests.support import ServiceProcess, wait_until

from .conftest import MakeSvc
from .support import PY, REPORT, child, leftovers, marked_processes

pytestmark = pytest.mark.stress

KINDS = ("setsid", "set_m", "new_session", "daemon")


def _pids(d: Path) -> dict[str, int]:
    return {k: int((d / k).read_text()) for k in KINDS}


def _state(pid: int) -> str:
    """One-letter state; "X" when the pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "X"
    return raw[raw.rfind(b")") + 2 :][:1].decode()


def _alive(pids: dict[str, int]) -> dict[str, str]:
    return {k: s for k, p in pids.items() if (s := _state(p)) not in "ZX"}


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


async def _escaped(
    c: ExecutorClient, d: Path, mark: str, mode: str, **kw: Any
) -> tuple[TaskHandle, dict[str, int]]:
    """Start an `escape` task; return it and its escapees' pids, once they all run."""
    os.mkdir(d)
    h = await c.execute(child("escape", d, mode), env={"CC_STRESS_MARK": mark}, **kw)
    await wait_until(lambda: all((d / k).exists() for k in KINDS), 30, "the escapees")
    pids = _pids(d)
    # Really out of the task's group: a killpg of it would not reach them.
    assert all(_pgid(p) not in (h.pid, -1) for p in pids.values()), pids
    return h, pids


async def test_escapees_end_with_their_task(make_svc: MakeSvc, tmp_path: Path, mark: str) -> None:
    """CANCEL, a timeout and a leader's own exit each end what left the group."""
    row = REPORT.row("escaped processes: cancel / timeout / exit")
    t0 = time.monotonic()
    svc = await make_svc()
    every: list[int] = []
    async with svc.client() as c:
        h, pids = await _escaped(c, tmp_path / "cancel", mark, "stay")
        every += pids.values()
        t = time.perf_counter()
        reply = await c.control(h.task_id, "CANCEL")
        cancel_s = time.perf_counter() - t
        assert reply["status"] == "cancelled"
        assert not _alive(pids), f"alive when CANCEL replied: {_alive(pids)}"

        h, pids = await _escaped(c, tmp_path / "timeout", mark, "stay", timeout=1.0)
        every += pids.values()
        done = await h.wait(30)
        assert done["status"] == "timed_out"
        assert not _alive(pids), f"alive when the timeout ended the task: {_alive(pids)}"

        h, pids = await _escaped(c, tmp_path / "exit", mark, "exit")
        every += pids.values()
        done = await h.wait(30)
        assert done["status"] == "completed" and done["exit_code"] == 0
        assert not _alive(pids), f"alive when the task completed: {_alive(pids)}"
    # And reaped: the service is their subreaper, no zombie stays behind.
    await wait_until(lambda: all(_state(p) == "X" for p in every), 10, "the escapees reaped")
    left = await leftovers(mark, [])
    row.tasks = 3
    row.leftovers = len(left)
    row.wall_s = time.monotonic() - t0
    row.max_rss = svc.sample_rss()
    row.note = f"4 escapees per task; CANCEL replied in {cancel_s:.2f} s (the daemon ignores TERM)"
    assert not left, left


async def test_escapees_end_with_the_service(make_svc: MakeSvc, tmp_path: Path, mark: str) -> None:
    """The service's SIGTERM ends them before it exits; after a `kill -9` they outlive
    it (nothing can stop that), and the restarted service ends them before it serves."""
    row = REPORT.row("escaped processes: SIGTERM / kill -9 + restart")
    t0 = time.monotonic()
    svc = await make_svc()
    async with svc.client() as c:
        _, pids = await _escaped(c, tmp_path / "term", mark, "stay")
    svc.stop()
    assert svc.proc is not None and svc.proc.returncode == 0
    assert not _alive(pids), f"alive after the service exited: {_alive(pids)}"

    svc = await make_svc()
    async with svc.client() as c:
        h, pids = await _escaped(c, tmp_path / "kill9", mark, "stay")
    svc.kill9()
    orphaned = _alive(pids)
    assert set(orphaned) == set(KINDS), orphaned  # the crash left them running
    await svc.start()  # same data dir: recovery
    assert not _alive(pids), f"alive when the restarted service answered: {_alive(pids)}"
    async with svc.client() as c:
        assert (await c.status(h.task_id))["status"] == "lost"
    left = await leftovers(mark, [h.pid or 0])
    row.tasks = 2
    row.leftovers = len(left)
    row.wall_s = time.monotonic() - t0
    row.max_rss = svc.sample_rss()
    row.note = f"{len(orphaned)} escapees survived the kill -9, none the restart"
    assert not left, left


# ------------------------------------------------------------------ PID 1


class Pid1Service(ServiceProcess):
    """The service as PID 1 of its own pid namespace (a container without an init)."""

    def spawn(self) -> None:
        assert not self.alive(), "the service is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        argv += [PY, "-m", "cc_executor.server", "--port", str(self.port)]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env
            )
        self.pids.append(self.proc.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        # unshare(1) does not pass SIGTERM on: the service (its child) must get it itself.
        if self.alive():
            with contextlib.suppress(OSError, AssertionError):
                os.kill(self.host_pid(), signal.SIGTERM)
        return super().stop(timeout)

    def host_pid(self) -> int:
        """The service's pid as seen from here (the namespace's PID 1)."""
        kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        assert len(kids) == 1, kids
        return int(kids[0])


def _zombie_children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        for kid in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            if _state(int(kid)) == "Z":
                out.append(int(kid))
    return out


def _child_running(pid: int, argv: list[str], found: list[int]) -> bool:
    """Is a child of `pid` running exactly `argv`? (Its pid goes into `found`.)"""
    want = "\0".join(argv) + "\0"
    for tid in os.listdir(f"/proc/{pid}/task"):
        for kid in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{kid}/cmdline").read_text() == want:
                    found.append(int(kid))
                    return True
    return False


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
        capture_output=True,
    )
    if probe.returncode != 0:
        return f"unshare --pid is not permitted here: {probe.stderr.decode().strip()[:200]}"
    return None


async def test_as_pid_1_orphans_are_reaped_and_exit_codes_kept(tmp_path: Path, mark: str) -> None:
    why = _unshare_works()
    if why is not None:
        pytest.skip(why)
    row = REPORT.row("service as PID 1: orphans reaped")
    t0 = time.monotonic()
    svc = Pid1Service(tmp_path / "data", tmp_path / "svc.log")
    await svc.start()
    try:
        host = svc.host_pid()
        async with svc.client() as c:
            # An orphan that exits while its task still runs: a zombie of PID 1 unless reaped.
            # Its pid inside the namespace is not ours to see: find it as PID 1's child.
            orphan = "import time; time.sleep(1.0)"
            script = f"({PY} -c '{orphan}' &)"
            h = await c.execute(["sh", "-c", f"{script}; sleep 30"], env={"CC_STRESS_MARK": mark})
            found: list[int] = []
            argv = [PY, "-c", orphan]
            await wait_until(lambda: _child_running(host, argv, found), 30, "the orphan")
            await wait_until(lambda: _state(found[0]) == "X", 10, "PID 1 reaping the orphan")
            assert (await c.status(h.task_id))["status"] == "running"
            assert (await c.control(h.task_id, "CANCEL"))["status"] == "cancelled"
            # Many exits at once: each task keeps its own exit code (none reaped by mistake).
            handles = [
                await c.execute(
                    ["sh", "-c", f"(sleep 0.05 &); exit {n}"], env={"CC_STRESS_MARK": mark}
                )
                for n in range(1, 41)
            ]
            codes = [(await h.wait(30))["exit_code"] for h in handles]
            assert codes == list(range(1, 41)), codes
            # And escapees end with their task here too (their pid files hold the
            # namespace's pids: find them by their mark instead).
            d = tmp_path / "esc"
            os.mkdir(d)
            h = await c.execute(child("escape", d, "stay"), env={"CC_STRESS_MARK": mark}, timeout=1)
            await wait_until(lambda: all((d / k).exists() for k in KINDS), 30, "the escapees")
            assert len(marked_processes(mark)) >= 5  # the leader and its four escapees
            assert (await h.wait(30))["status"] == "timed_out"
            assert not marked_processes(mark), marked_processes(mark)
            await wait_until(lambda: not _zombie_children(host), 10, "no zombie left")
        row.tasks = 42
        row.note = "40 tasks each leaving an orphan: exit codes 1..40 kept, no zombie left"
    finally:
        svc.stop()
        row.wall_s = time.monotonic() - t0
    assert not svc.errors(), svc.errors()[:3]
    assert not await leftovers(mark, [])
