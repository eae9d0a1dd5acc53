"""SIGTERM to a process that runs tasks in-process ends their groups first, as Ctrl-C does.

The Python API and a bridge with a local engine run tasks in process groups of their own
(`engine/process.py`), so the default SIGTERM, which ends only this process, would leave
them running past their timeout with nobody to end them. Where SIGTERM still has its
default disposition (nobody in the program chose what it does), the first of these
processes to start an engine takes it: the engine is closed (every group TERM, KILL after
the grace), then the process ends by SIGTERM as it would have, exit status and all. A
program that handles SIGTERM itself keeps its handler (and its cleanup is its own).
"""

from __future__ import annotations

import os
import signal
import threading


def default_here() -> bool:
    """Whether SIGTERM may be taken here: on the main thread, with its default disposition."""
    if threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def die_of_sigterm() -> None:
    """End this process by SIGTERM, as the signal would have had nobody caught it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
