"""Whether an engine can keep its promises: its data dir is still its own, records write.

Two faults used to pass silently. A full disk: record writes failed and were only
logged, so a task acknowledged then was unknown after a restart and a completed one read
`lost`. A data dir deleted (or replaced) under a running engine: records, logs and the
journal went to deleted files, and the lock no longer locked anything, so another engine
could start there. `StorageHealth` names each such problem; `/health` reports them
(`degraded`) and `execute` refuses new tasks with them, until they are gone (writes
succeed again: the store retries them, `sqlite_thread.py`) or, for a deleted data dir,
until the service is restarted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cc_executor.protocol import ErrorCode, ProtocolError


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class StorageHealth:
    """The problems of an engine's storage now; empty when there are none."""

    def __init__(self, data_dir: Path, store: Any) -> None:
        self.data_dir = data_dir
        self.store = store
        # Checked before every new task: plain strings, two stat calls, no pathlib.
        self._dir_path = str(data_dir)
        self._lock_path = str(data_dir / "engine.lock")
        self._dir: tuple[int, int] | None = None
        self._lock: tuple[int, int] | None = None

    def watch(self, lock_fd: int) -> None:
        """Remember the data dir and the lock file the engine holds (at start)."""
        self._dir = _identity(os.stat(self.data_dir))
        self._lock = _identity(os.fstat(lock_fd))

    def problems(self) -> list[str]:
        found: list[str] = []
        if self._dir is not None:
            found += self._data_dir_problems()
        store_problem = getattr(self.store, "write_problem", None)
        if store_problem is not None and (why := store_problem()) is not None:
            found.append(why)
        return found

    def _data_dir_problems(self) -> list[str]:
        try:
            now = _identity(os.stat(self._dir_path))
        except FileNotFoundError:
            now = None
        if now != self._dir:
            what = "deleted" if now is None else "replaced"
            return [
                f"the data dir {self.data_dir} was {what} while the engine runs: records and "
                "logs go to deleted files and its lock holds nothing; restart the service"
            ]
        lock = self._lock_path
        try:
            held = _identity(os.stat(lock)) == self._lock
        except FileNotFoundError:
            held = False
        if not held:
            return [
                f"the lock file {lock} was removed or replaced: another engine could take "
                "the data dir; restart the service"
            ]
        return []

    def refuse_new_tasks(self) -> None:
        """ProtocolError(SERVICE_UNAVAILABLE) naming the problems, if there are any."""
        found = self.problems()
        if found:
            raise ProtocolError(
                ErrorCode.SERVICE_UNAVAILABLE,
                f"refusing new tasks: {found[0]}",
                {"problems": found},
            )
