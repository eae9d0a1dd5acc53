"""The data dir: private to its user, and owned by one engine at a time.

Task output, commands and records are the user's secrets: the data dir and its `logs/`
are 0700 (an existing one that is open to others is tightened, with a warning), and every
file the engine creates is 0600. An engine holds an exclusive lock on its data dir
(`engine.lock`): recovery marks every task it finds running as lost, which is only true
when no other engine runs there.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


class DataDirLocked(RuntimeError):
    """Another engine (the service, a bridge fallback, an API caller) owns this data dir."""


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) 0700, or tighten it to 0700 if others may read it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700 | 0o700)
        log.warning("data dir %s was open to other users (mode %o): tightened to 0700", path, mode)


def prepare(data_dir: Path, log_dir: Path) -> None:
    private_dir(data_dir)
    private_dir(log_dir)


def lock(data_dir: Path) -> int:
    """Take the data dir's lock; raises DataDirLocked if another engine holds it."""
    path = data_dir / "engine.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirLocked(
            f"data dir {data_dir} is in use by another cc-executor engine (lock {path}); "
            "use another data_dir or stop the other one"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
