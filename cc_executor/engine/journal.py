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

The journal is emptied once a start has reconciled it, and rewritten with only the live
tasks when it grows well past them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import record_to_row, row_to_record

log = logging.getLogger(__name__)

_COMPACT_MIN = 1024  # entries before a rewrite is considered
TASK_ENV = "CC_EXECUTOR_TASK_ID"


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


class SpawnJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.entries = 0

    def read(self) -> dict[str, TaskRecord]:
        """The last record of every task spawned since the journal was last emptied.

        A record without a pid is a spawn the crash cut short (see `kill_tagged`).
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        out: dict[str, TaskRecord] = {}
        for line in raw.splitlines():
            try:
                rec = row_to_record(line)
            except Exception:  # a line cut short by a crash mid-write
                log.warning("skipping an unreadable spawn journal line (%d bytes)", len(line))
                continue
            out[rec.task_id] = rec
        return out

    def open(self) -> None:
        """Start empty (call once the previous run's entries are reconciled)."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.entries = 0

    def append(self, rec: TaskRecord) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, record_to_row(rec)[3] + b"\n")
            self.entries += 1
        except OSError as exc:  # disk full: the store still has the record, a bit later
            log.error("cannot write the spawn journal: %s", exc)

    def maybe_compact(self, live: Iterable[TaskRecord]) -> None:
        """Rewrite the journal with the live tasks only, once it is mostly finished ones."""
        if self._fd is None or self.entries < _COMPACT_MIN:
            return
        keep = [r for r in live if r.pid is not None]
        if self.entries < 4 * len(keep):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(b"".join(record_to_row(r)[3] + b"\n" for r in keep))
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
