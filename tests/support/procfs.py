"""What /proc says about processes and process groups, read independently of the engine
(cc_executor/engine/process.py), so the tests check the engine against the kernel."""

from __future__ import annotations

import os
import signal

SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], pgrp [2])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()  # the name may hold spaces and parentheses


def proc_state(pid: int) -> str:
    """One-letter state of a process (R, S, D, T, Z...); "X" when it is gone."""
    fields = _stat(pid)
    return fields[0].decode() if fields else "X"


def group_states(pgid: int) -> dict[int, str]:
    """Every process of group `pgid` -> its one-letter state, zombies included."""
    members: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields and len(fields) > 2 and int(fields[2]) == pgid:
            members[int(entry.name)] = fields[0].decode()
    return members


def live_members(pgid: int) -> dict[int, str]:
    """Members of a process group that still exist and are not zombies."""
    return {pid: st for pid, st in group_states(pgid).items() if st not in "ZX"}


def group_gone(pgid: int) -> bool:
    """No live (non-zombie) process is left in the group."""
    return not live_members(pgid)


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return proc_state(pid) not in "ZX"


def _stop_pending(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            pend = [ln.split()[1] for ln in f if ln.startswith(("SigPnd:", "ShdPnd:"))]
    except OSError:
        return False
    return any(int(p, 16) & SIGSTOP_BIT for p in pend)


def group_stopped(pgid: int) -> bool:
    """Every live member is stopped (T), or blocked (D) with a SIGSTOP it cannot take yet:
    a parent in vfork() whose child stopped before its exec."""
    members = live_members(pgid)
    return bool(members) and all(
        st in "Tt" or (st == "D" and _stop_pending(p)) for p, st in members.items()
    )


def group_running(pgid: int) -> bool:
    """The group has live members and none of them is stopped."""
    members = live_members(pgid)
    return bool(members) and not any(st in "Tt" for st in members.values())


def vm_status(pid: int, *keys: str) -> dict[str, int]:
    """Memory figures of /proc/<pid>/status ("VmRSS", "VmHWM", ...) in bytes; {} if gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def processes_with_env(entry: str) -> dict[int, str]:
    """Every live process whose environment (or command line) holds `entry` ("K=V") ->
    its command line, cut to 200 characters."""
    needle = entry.encode()
    found: dict[int, str] = {}
    for d in os.scandir("/proc"):
        if not d.name.isdigit():
            continue
        try:
            with open(f"/proc/{d.name}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{d.name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if (needle in env.split(b"\0") or needle in cmd) and pid_alive(int(d.name)):
            found[int(d.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found
