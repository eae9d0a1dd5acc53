"""Process groups: spawn a child in its own session, signal the whole group, see its state.

Every child (a task, a hook) is started here with `start_new_session=True`, so its pid is
also its process group id and every descendant that does not call setsid itself stays in
that group: one `killpg` reaches the whole tree. `run_to_end` runs a helper child (a hook)
to its end under a time limit the way the engine ends a task: TERM, KILL after the grace
period, and back only once the group is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PROC = Path("/proc")
HAVE_PROC = _PROC.is_dir() and sys.platform.startswith("linux")


_Stdio = int | IO[bytes]


def spawn(
    argv: Sequence[str],
    cwd: str | None,
    env: Mapping[str, str],
    *,
    stdin: _Stdio = subprocess.DEVNULL,
    stdout: _Stdio = subprocess.PIPE,
    stderr: _Stdio = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start argv in a new session; by default stdin from /dev/null and both outputs piped.

    A helper child passes files instead (a hook reads its JSON from one and writes its
    output to others). Raises OSError (FileNotFoundError, PermissionError,
    NotADirectoryError ...) when the program or the working directory cannot be used.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        close_fds=True,
    )
    if _F_SETPIPE_SZ is not None and proc.stdout is not None:
        # A 1 MiB pipe lets each read take 256 KiB instead of the default 64 KiB:
        # a quarter of the wake-ups and notifications for a chatty child.
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    return proc


PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ: int | None = getattr(fcntl, "F_SETPIPE_SZ", 1031 if HAVE_PROC else None)


def _read_stat(pid: int | str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(raw: bytes) -> list[bytes]:
    # comm (field 2) may hold spaces and parens: split after the last ')'.
    return raw[raw.rfind(b")") + 2 :].split(b" ")


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (stat field 22), None if unknown."""
    raw = _read_stat(pid)
    if raw is None:
        return None
    fields = _stat_fields(raw)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> dict[int, str]:
    """Every live process of group `pgid` -> its one-letter state (Linux /proc scan)."""
    members: dict[int, str] = {}
    for entry in os.scandir(_PROC):
        name = entry.name
        if not name.isdigit():
            continue
        raw = _read_stat(name)
        if raw is None:
            continue
        fields = _stat_fields(raw)
        try:
            if int(fields[2]) == pgid:
                members[int(name)] = fields[0].decode()
        except (IndexError, ValueError):
            continue
    return members


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to the group. False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


_SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)


def _stop_pending(pid: int) -> bool:
    """SIGSTOP is pending for pid: it stops before it runs another instruction of its own."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"ShdPnd:", b"SigPnd:")) and (
                    int(line.split()[1], 16) & _SIGSTOP_BIT
                ):
                    return True
    except (OSError, ValueError, IndexError):
        pass
    return False


def _group_settled(pgid: int, stopped: bool) -> bool:
    # Zombies (Z) and dead (X) members count as settled: they will never run again.
    for pid, state in group_members(pgid).items():
        if state in "ZX":
            continue
        if (state in "Tt") != stopped:
            # A parent blocked in vfork() (state D) on a child that stopped before its exec
            # cannot take its own SIGSTOP until SIGCONT: pending, it counts as stopped.
            if stopped and state == "D" and _stop_pending(pid):
                continue
            return False
    return True


async def wait_group_state(pgid: int, stopped: bool, timeout: float = 5.0) -> bool:
    """Poll /proc until every member is stopped (T/t) or running (not T/t).

    A process may sit in D (uninterruptible) for a moment after SIGSTOP, so only the state
    seen in /proc says the group has really stopped. Without /proc, trust the signal.
    """
    if not HAVE_PROC:
        return True
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        if _group_settled(pgid, stopped):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)


async def wait_group_gone(pgid: int, timeout: float = 2.0) -> bool:
    """Poll until no member of the group is alive (zombies count as gone).

    After SIGKILL a process closes its pipes before it is fully dead, so EOF alone does
    not prove the group is gone.
    """
    if not HAVE_PROC:
        return not group_exists(pgid)
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while any(s not in "ZX" for s in group_members(pgid).values()):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def kill_group_now(pgid: int) -> None:
    """SIGKILL the group, also continuing it first (a stopped group still dies of SIGKILL)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_stale_group(pgid: int, leader_pid: int, leader_ticks: int | None) -> bool:
    """After a crash: kill what is left of a group we started, if it is still ours.

    A live leader with other start ticks is a reused pid: not ours. A group id cannot be
    reused while any member of the old group lives, so members without the leader are ours.
    Returns True when something was killed.
    """
    if not group_exists(pgid):
        return False
    if HAVE_PROC:
        ticks = start_ticks(leader_pid)
        if ticks is not None and leader_ticks is not None and ticks != leader_ticks:
            return False
    kill_group_now(pgid)
    return True


def exited(proc: subprocess.Popen[bytes]) -> asyncio.Future[None]:
    """A future set once proc has exited, before it is reaped (a pidfd, else a waiter thread).

    The caller reaps (`proc.wait()`) after acting on the group: until then the zombie leader
    holds its pid, so its group id cannot be given to a stranger.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not fut.done():
            fut.set_result(None)

    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):

        def waiter() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(done)

        threading.Thread(target=waiter, name=f"wait-{proc.pid}", daemon=True).start()
        return fut

    def on_readable() -> None:  # a pidfd is readable once its process has exited
        loop.remove_reader(pidfd)
        os.close(pidfd)
        done()

    loop.add_reader(pidfd, on_readable)
    return fut


async def run_to_end(proc: subprocess.Popen[bytes], timeout: float | None, grace: float) -> bool:
    """Wait for a helper child started by `spawn`; True when it ran past `timeout`.

    At the timeout its group gets SIGTERM, then SIGKILL after `grace` seconds, as a task's
    does. When the leader exits, whatever it left in its group is killed: no helper process
    outlives its run. Returns (or, when cancelled, re-raises) only once the leader is
    reaped and every member of the group is gone.
    """
    pgid = proc.pid
    leader_exited = exited(proc)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(leader_exited), timeout)
        except TimeoutError:
            timed_out = True
            signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(leader_exited), grace)
    finally:
        kill_group_now(pgid)  # the zombie (or live, when cancelled) leader pins the group id
        await leader_exited
        proc.wait()  # reaps at once: the leader has exited
        if not await wait_group_gone(pgid):
            kill_group_now(pgid)
            if not await wait_group_gone(pgid):
                log.warning("process group %d of pid %d outlived SIGKILL", pgid, proc.pid)
    return timed_out
