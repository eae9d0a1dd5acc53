"""Orphans: the service as a child subreaper, and reaping what nobody waits for.

A process that leaves its task's group (`setsid cmd &`, a double-forked daemon) is, once
its parent dies, an orphan. By default the kernel hands orphans to init, where nothing
of ours can find them cheaply. The service asks to be a child subreaper
(`PR_SET_CHILD_SUBREAPER`, as systemd and tini do), so every orphan of its tasks becomes a
child of the service: `process.end_tagged` then finds a task's escapees among the few
children nobody spawned, instead of in the whole of /proc. As PID 1 (a container without
an init) every orphan comes to the service anyway.

Orphans that exit are zombies until their parent waits for them, so the service must reap
them, but without stealing the exit status of a child it spawned itself: the engine waits
for each task and hook through its own `Popen` (and holds a dead leader unreaped on
purpose, so that its group id stays its own). A SIGCHLD-driven `waitpid(-1)` would take
those too. So every spawn is registered here (`track`), and the reaper waits only for
zombie children that are not registered: orphans. Only the process that owns itself (the
service) may do this: in a program that embeds an engine (the Python API), other code may
have children of its own, and subreaping would change that program's process tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import weakref
from collections.abc import Iterator

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36

_tracked: weakref.WeakValueDictionary[int, subprocess.Popen[bytes]] = weakref.WeakValueDictionary()
_lock = threading.Lock()  # a spawn and its registration happen as one, for a reaper
_subreaper = False
# The threads whose children may be ours: the main thread (where orphans, and the children
# of threads that end, are handed), and every thread that spawned. Reading only their
# `children` files spares a listdir and a read per thread of this process per look.
_parent_threads: set[int] = set()


@contextlib.contextmanager
def spawning() -> Iterator[weakref.WeakValueDictionary[int, subprocess.Popen[bytes]]]:
    """Hold while spawning and registering a child: the reaper never sees it unregistered.

    (A child can exit before `Popen()` returns; unregistered, it would look like an orphan.)
    """
    with _lock:
        _parent_threads.add(threading.get_native_id())
        yield _tracked


def is_tracked(pid: int) -> bool:
    """A child that this process spawned and has not reaped yet (its Popen waits for it)."""
    proc = _tracked.get(pid)
    return proc is not None and proc.returncode is None


def become_subreaper() -> bool:
    """Ask Linux to make this process the reaper of its descendants' orphans."""
    global _subreaper
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper (%s): escapees are searched in /proc", exc)
        return False
    _subreaper = True
    return True


def collects_orphans() -> bool:
    """Orphans of this process's descendants become its children (subreaper, or PID 1)."""
    return _subreaper or os.getpid() == 1


def children(pid: int) -> list[int]:
    """The direct children of `pid` (of each of its threads)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def own_children() -> list[int]:
    """The direct children of this process (see `_parent_threads`)."""
    me = os.getpid()
    out: list[int] = []
    for tid in {me, *_parent_threads}:
        try:
            with open(f"/proc/{me}/task/{tid}/children", "rb") as f:
                out.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            _parent_threads.discard(tid)  # that thread ended: its children went to another
        except (OSError, ValueError):
            continue
    return out


def orphans() -> list[int]:
    """Children of this process that it did not spawn: orphans of its descendants."""
    with _lock:
        return [pid for pid in own_children() if not is_tracked(pid)]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return "X"
    return raw[raw.rfind(b")") + 2 :][:1].decode()


def reap() -> int:
    """Wait for every orphan that has exited; returns how many were reaped."""
    reaped = 0
    for pid in orphans():
        if _state(pid) != "Z":
            continue
        with _lock:
            if is_tracked(pid):  # spawned since the list was read: it has its own waiter
                continue
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
    return reaped


def kill_orphans() -> int:
    """SIGKILL every orphan and its descendants (at shutdown: every orphan of the service
    comes from a task or a hook, whatever its environment says now)."""
    victims: list[int] = []
    todo = orphans()
    while todo:
        pid = todo.pop()
        victims.append(pid)
        todo.extend(children(pid))
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(victims)


async def end_orphans(timeout: float = 2.0) -> int:
    """`kill_orphans`, then reap them; back once none is left (or at the timeout)."""
    killed = kill_orphans()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while orphans() and loop.time() < deadline:
        reap()
        await asyncio.sleep(0.01)
    return killed


class OrphanReaper:
    """Reaps orphans on SIGCHLD (and every `interval` seconds, in case one is missed)."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.reaped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # asyncio's handler runs in the loop, like every spawn: no reap between a fork and
        # its registration. (It also sets SA_RESTART: other threads see no EINTR.)
        self._loop.add_signal_handler(signal.SIGCHLD, self._run)
        self._run()

    def _run(self) -> None:
        self.reaped += reap()
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(self.interval, self._run)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGCHLD)
            self._loop = None
        self.reaped += reap()
