"""Process groups: spawn a child in its own session, signal the whole group, see its state.

Every child (a task, a hook) is started here with `start_new_session=True`, so its pid is
also its process group id and every descendant that does not call setsid itself stays in
that group: one `killpg` reaches the whole tree. `run_to_end` runs a helper child (a hook)
to its end under a time limit the way the engine ends a task: TERM, KILL after the grace
period, and back only once the group is gone.

A descendant can leave the group (`setsid`, `set -m`, `start_new_session=True`, a daemon's
double fork). It still carries its tag, `CC_EXECUTOR_TASK_ID=<task id>` (`<task id>.<hook>`
for a hook's children) in its environment: `end_tagged` ends every process that carries a
tag once its task or hook is over, TERM then KILL as for the group. In the service, a child
subreaper (engine/reaper.py), these escapees are found among the service's own orphans;
elsewhere, in the whole of /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from cc_executor.engine import reaper
from cc_executor.policy import SERVICE_SECRETS

log = logging.getLogger(__name__)

TASK_ENV = "CC_EXECUTOR_TASK_ID"
"""Every child's tag: the task (or `<task>.<hook>`) it belongs to, inherited by its descendants."""

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
    output to others). The service's secrets (its token) never reach a child, whichever
    caller built `env`: a task, a hook, git. Raises OSError (FileNotFoundError, PermissionError,
    NotADirectoryError ...) when the program or the working directory cannot be used.
    """
    child_env = dict(env)
    for name in SERVICE_SECRETS:
        child_env.pop(name, None)
    before = _boot_ticks()
    with reaper.spawning() as tracked:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
            close_fds=True,
        )
        tracked[proc.pid] = proc
    if before is not None and _boot_ticks() == before:
        _spawned_at[proc] = before
    tag = env.get(TASK_ENV)
    if tag:
        _tags[proc] = tag
    if _F_SETPIPE_SZ is not None and proc.stdout is not None:
        # A 1 MiB pipe lets each read take 256 KiB instead of the default 64 KiB:
        # a quarter of the wake-ups and notifications for a chatty child.
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    return proc


PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ: int | None = getattr(fcntl, "F_SETPIPE_SZ", 1031 if HAVE_PROC else None)
_tags: weakref.WeakKeyDictionary[subprocess.Popen[bytes], str] = weakref.WeakKeyDictionary()


_spawned_at: weakref.WeakKeyDictionary[subprocess.Popen[bytes], int] = weakref.WeakKeyDictionary()
_NS_PER_TICK = 10**9 // os.sysconf("SC_CLK_TCK") if HAVE_PROC else 0


def _boot_ticks() -> int | None:
    """Now, in the clock ticks since boot of /proc/<pid>/stat's start time (its clock)."""
    if not HAVE_PROC:
        return None
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _NS_PER_TICK


def leader_start_ticks(proc: subprocess.Popen[bytes]) -> int | None:
    """A child's start time in clock ticks since boot (what tells a reused pid apart).

    A child's start time is taken when it is forked, so inside `spawn`: when the clock
    showed the same tick before and after, that is it, with no /proc read (which right
    after a spawn waits for the child's exec, 0.1-0.3 ms). Else /proc says."""
    ticks = _spawned_at.get(proc)
    return ticks if ticks is not None else start_ticks(proc.pid)


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


def watch_exit(proc: subprocess.Popen[bytes], on_exit: Callable[[], None]) -> None:
    """Call `on_exit` on the loop once the child has exited: without a thread through a
    pidfd on Linux, else from a waiter thread."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:

        def on_readable() -> None:
            if proc.poll() is None:
                return  # spurious wake-up
            loop.remove_reader(pidfd)
            os.close(pidfd)
            on_exit()

        loop.add_reader(pidfd, on_readable)
        return

    def waiter() -> None:
        proc.wait()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(on_exit)

    threading.Thread(target=waiter, name=f"wait-{proc.pid}", daemon=True).start()


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
    spawned = (proc.pid, time.time())
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
        tag = _tags.get(proc)
        if tag is not None:
            await end_tagged(tag, grace, exact=True, after=spawned)  # what left the group
    return timed_out


# ------------------------------------------------------------------ escapees


def tag_of(pid: int) -> str | None:
    """The `CC_EXECUTOR_TASK_ID` a process was started with (None: none, or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    prefix = TASK_ENV.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _matches(tag: str | None, wanted: frozenset[str], exact: bool) -> bool:
    if tag is None:
        return False
    return tag in wanted or (not exact and tag.split(".", 1)[0] in wanted)


def tagged_processes(
    tags: str | Iterable[str],
    *,
    exact: bool = False,
    everywhere: bool = False,
    after: tuple[int, float] | None = None,
) -> set[int]:
    """Live processes that carry one of these tags and are not a group leader we wait for.

    Not `exact`: a task id also matches its hooks' tags (`<task id>.<hook>`). A subreaper
    looks among its orphans and their descendants (an orphan that carries the tag takes
    its whole subtree along, whatever their environments say now); `everywhere` (and any
    process that is not a subreaper) scans /proc: with `after` (the leader's pid and
    spawn time), only the pids given out since, if that can be told (`_pids_since`).
    """
    wanted = frozenset([tags] if isinstance(tags, str) else tags)
    if not wanted or not HAVE_PROC:
        return set()
    found: set[int] = set()
    if reaper.collects_orphans() and not everywhere:
        todo = [(pid, False) for pid in reaper.orphans()]
        while todo:
            pid, inherited = todo.pop()
            hit = inherited or _matches(tag_of(pid), wanted, exact)
            if hit and _alive(pid):
                found.add(pid)
            todo.extend((child, hit) for child in reaper.children(pid))
        return found
    me = os.getpid()
    since = _pids_since(after)
    candidates: Iterable[int]
    if since is not None and since[1] - since[0] <= _PROBE_PIDS_MAX:
        # A few pids given out since the spawn: probing each is far cheaper than a scan.
        candidates = range(since[0] + 1, since[1] + 1)
    else:
        candidates = (int(e.name) for e in os.scandir(_PROC) if e.name.isdigit())
        if since is not None:
            candidates = (pid for pid in candidates if since[0] < pid <= since[1])
    for pid in candidates:
        # A leader we spawn and wait for is never an escapee: skip it before any read
        # (500 tasks at once put 500 of them in each other's ranges).
        if pid == me or reaper.is_tracked(pid):
            continue
        if _matches(_recent_tag_of(pid), wanted, exact) and _alive(pid):
            found.add(pid)
    return found


_TAG_CACHE_S = 1.0
_tag_cache: dict[int, str | None] = {}
_tag_cache_since = 0.0


def _recent_tag_of(pid: int) -> str | None:
    """`tag_of`, remembered for a second: tasks that end together (500 `sleep 1`) look at
    the same pids. A process's tag never changes, and a pid that is gone (or not yet
    given out) cannot come back within a second unless the pid counter wraps."""
    global _tag_cache_since
    now = time.monotonic()
    if now - _tag_cache_since > _TAG_CACHE_S:
        _tag_cache.clear()
        _tag_cache_since = now
    try:
        return _tag_cache[pid]
    except KeyError:
        tag = _tag_cache[pid] = tag_of(pid)
        return tag


_PROBE_PIDS_MAX = 512  # past this many pids since the spawn, one scandir of /proc is cheaper


_RECENT_SPAWN_S = 1.0


def _pids_since(after: tuple[int, float] | None) -> tuple[int, int] | None:
    """The pids given out since a spawn, as (leader, last], when that is certain: pids are
    handed out in increasing order until they wrap at pid_max, so a process started
    later has a higher pid, unless the counter wrapped (the last pid given out is lower
    than the leader's) or may have wrapped all the way round (more than a second ago).
    None: every pid is a candidate. Spares most of the /proc reads when tasks are short."""
    if after is None or time.time() - after[1] > _RECENT_SPAWN_S:
        return None
    try:
        with open("/proc/sys/kernel/ns_last_pid", "rb") as f:
            last = int(f.read())
    except (OSError, ValueError):
        return None
    return (after[0], last) if last >= after[0] else None


def _alive(pid: int) -> bool:
    raw = _read_stat(pid)
    return raw is not None and _stat_fields(raw)[0] not in (b"Z", b"X")


async def end_tagged(
    tags: str | Iterable[str],
    grace: float,
    *,
    exact: bool = False,
    everywhere: bool = False,
    after: tuple[int, float] | None = None,
) -> int:
    """End every process that carries one of these tags (see `tagged_processes`): SIGTERM
    (and SIGCONT, so a stopped one gets it), SIGKILL to what is left after `grace`, and
    return, with how many there were, once they are all gone. What they fork meanwhile is
    found by the next scan."""
    ended = 0
    deadline = time.monotonic() + grace
    for _ in range(8):
        pids = tagged_processes(tags, exact=exact, everywhere=everywhere, after=after)
        if not pids:
            break
        ended += len(pids)
        kill = time.monotonic() >= deadline
        fds = _signal_each(pids, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            if not kill and not await _wait_exited(fds, deadline):
                _signal_fds(fds, signal.SIGKILL)
            if not await _wait_exited(fds, time.monotonic() + 2.0):
                log.warning("tagged processes outlived SIGKILL: %s", sorted(fds))
        finally:
            for fd in fds.values():
                os.close(fd)
    return ended


def _signal_each(pids: Iterable[int], sig: int) -> dict[int, int]:
    """A pidfd for each pid (so a pid reused meanwhile is never hit), signalled."""
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        fds[pid] = fd
    _signal_fds(fds, sig)
    return fds


def _signal_fds(fds: Mapping[int, int], sig: int) -> None:
    for fd in fds.values():
        for s in (sig, signal.SIGCONT) if sig != signal.SIGKILL else (sig,):
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, s)


async def _wait_exited(fds: Mapping[int, int], deadline: float) -> bool:
    """Until every pidfd is readable (its process has exited), or the deadline."""
    delay = 0.0005
    while True:
        poll = select.poll()
        for fd in fds.values():
            poll.register(fd, select.POLLIN)
        if len(poll.poll(0)) == len(fds):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


_env_cache: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def command_env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment plus `extra`, for a child.

    Decoding os.environ costs ~1 us a variable, on every spawn: the decoded copy is kept
    while the raw environment (os.environ._data, a plain dict) compares equal.
    """
    global _env_cache
    raw: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
    if raw is None:
        env = dict(os.environ)
    else:
        if _env_cache is None or _env_cache[0] != raw:
            _env_cache = (dict(raw), dict(os.environ))
        env = dict(_env_cache[1])
    if extra:
        env.update(extra)
    return env
