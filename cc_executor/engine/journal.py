"""The spawn journal: every group an engine starts, on disk before the event loop moves on.

The task store is written by a thread, in batches; a crash (SIGKILL of the service) a few
milliseconds after a spawn could leave a running group the store never heard of, and the
next start could neither mark that task `lost` nor reap its group. So each spawn also
appends the record (one JSON line) to `<data_dir>/spawned.jsonl` with a single O_APPEND
write, once just before the spawn and again with the pid just after: a page-cache write
survives the death of the process, so the next start reads every group this one started.

A crash inside the spawn itself (`Popen` waits for the child's exec, a millisecond or
more) leaves a child whose pid nobody wrote down. Every child carries its task id in its
environment (`CC_EXECUTOR_TASK_ID`), so the next start finds such children in /proc.

Helper children (hook commands) are journaled the same way, as `HelperSpawn` lines: one
before the spawn, one with the pid after it, one once the group is gone. Their tag
(`<task_id>.<role>-<n>`) is their `CC_EXECUTOR_TASK_ID`, so a helper spawn cut short is
found in /proc like a task's; `reap_helper` ends what a crash left of one.

The journal is emptied once a start has reconciled it, and rewritten with only the live
tasks and helpers when it grows well past them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import orjson

from cc_executor.engine import process
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import record_to_row, row_to_record

log = logging.getLogger(__name__)

_COMPACT_MIN = 1024  # entries before a rewrite is considered
TASK_ENV = process.TASK_ENV
_HELPER = b'{"helper":'  # how a helper line starts; a task line starts with {"task_id":
_HELPER_ENDED = b'{"helper_ended":'


@dataclasses.dataclass(slots=True)
class HelperSpawn:
    """A child started for a task but not the task itself (a hook command)."""

    tag: str  # its CC_EXECUTOR_TASK_ID: "<task_id>.<role>-<n>"
    task_id: str
    role: str  # what it is for: "pre_execute", "post_execute"
    command: str
    pid: int | None = None  # also its process group id
    start_ticks: int | None = None


def kill_tagged(task_ids: Iterable[str]) -> int:
    """SIGKILL the group of every process whose environment names one of these tasks.

    For spawns cut short by a crash: the child's pid was never written down, but its
    environment says which task it belongs to. Returns how many processes matched.
    """
    needles = {f"{TASK_ENV}={t}".encode() for t in task_ids}
    if not needles or not os.path.isdir("/proc"):
        return 0
    found = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needles.isdisjoint(env):
            continue
        found += 1
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


async def reap_helper(helper: HelperSpawn) -> bool:
    """After a crash: end what is left of a helper's group. True when something was killed.

    Like a task's group: the leader's start ticks are checked so a reused pid is never hit,
    and a helper whose spawn was cut short is found by its tag.
    """
    if helper.pid is None:
        return kill_tagged([helper.tag]) > 0
    killed = process.reap_stale_group(helper.pid, helper.pid, helper.start_ticks)
    if killed:  # SIGKILL is not death: serve only once the group is gone
        await process.wait_group_gone(helper.pid, timeout=5.0)
    return killed


class SpawnJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.entries = 0
        self._helpers: dict[str, HelperSpawn] = {}  # live ones, by tag
        self._loaded: tuple[dict[str, TaskRecord], dict[str, HelperSpawn]] | None = None

    def read(self) -> dict[str, TaskRecord]:
        """The last record of every task spawned since the journal was last emptied.

        A record without a pid is a spawn the crash cut short (see `kill_tagged`).
        """
        return self._load()[0]

    def stale_helpers(self) -> list[HelperSpawn]:
        """Every helper the last run started and did not see end (see `reap_helper`)."""
        return list(self._load()[1].values())

    def _load(self) -> tuple[dict[str, TaskRecord], dict[str, HelperSpawn]]:
        if self._loaded is not None:
            return self._loaded
        tasks: dict[str, TaskRecord] = {}
        helpers: dict[str, HelperSpawn] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        for line in raw.splitlines():
            try:
                if line.startswith(_HELPER):
                    helper = HelperSpawn(**orjson.loads(line)["helper"])
                    helpers[helper.tag] = helper
                elif line.startswith(_HELPER_ENDED):
                    helpers.pop(orjson.loads(line)["helper_ended"], None)
                else:
                    rec = row_to_record(line)
                    tasks[rec.task_id] = rec
            except Exception:  # a line cut short by a crash mid-write
                log.warning("skipping an unreadable spawn journal line (%d bytes)", len(line))
        self._loaded = (tasks, helpers)
        return self._loaded

    def open(self) -> None:
        """Start empty (call once the previous run's entries are reconciled)."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.entries = 0
        self._loaded = None

    def append(self, rec: TaskRecord) -> None:
        self._write(record_to_row(rec)[3])

    def append_helper(self, helper: HelperSpawn) -> None:
        """Before the helper's spawn, and again once its pid is known."""
        self._helpers[helper.tag] = helper
        self._write(_helper_line(helper))

    def helper_ended(self, helper: HelperSpawn) -> None:
        """Once its group is gone (or its spawn failed): nothing of it is left to reap."""
        if self._helpers.pop(helper.tag, None) is not None:
            self._write(orjson.dumps({"helper_ended": helper.tag}))

    def _write(self, line: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, line + b"\n")
            self.entries += 1
        except OSError as exc:  # disk full: the store still has a task's record, a bit later
            log.error("cannot write the spawn journal: %s", exc)

    def maybe_compact(self, live: Iterable[TaskRecord]) -> None:
        """Rewrite the journal with the live tasks and helpers only, once it is mostly
        finished ones."""
        if self._fd is None or self.entries < _COMPACT_MIN:
            return
        keep = [record_to_row(r)[3] for r in live if r.pid is not None]
        keep += [_helper_line(h) for h in self._helpers.values()]
        if self.entries < 4 * len(keep):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(b"".join(line + b"\n" for line in keep))
            os.replace(tmp, self.path)  # atomic: a crash leaves the old or the new one
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            log.error("cannot compact the spawn journal: %s", exc)
            return
        os.close(self._fd)
        self._fd = fd
        self.entries = len(keep)

    def close(self, clean: bool) -> None:
        """Close; after a clean shutdown (every group ended, records saved) empty it too."""
        if self._fd is None:
            return
        if clean:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _helper_line(helper: HelperSpawn) -> bytes:
    return orjson.dumps({"helper": dataclasses.asdict(helper)})
