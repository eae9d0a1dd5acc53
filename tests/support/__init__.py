"""What the tests, the stress suite and the benchmarks share: the service as a separate
process, a free loopback port, polling with a deadline, and /proc readers.

Importable as `tests.support` (pytest's `pythonpath` holds the repository root; the
benchmarks put it on `sys.path` in benchmarks/_common.py).
"""

from .net import free_port
from .poll import eventually, happens_within, wait_until, wait_until_sync
from .procfs import (
    group_gone,
    group_running,
    group_states,
    group_stopped,
    live_members,
    pid_alive,
    proc_state,
    processes_with_env,
    vm_status,
)
from .service import FAKE_CLAUDE, ServiceProcess

__all__ = [
    "FAKE_CLAUDE",
    "ServiceProcess",
    "eventually",
    "free_port",
    "group_gone",
    "group_running",
    "group_states",
    "group_stopped",
    "happens_within",
    "live_members",
    "pid_alive",
    "proc_state",
    "processes_with_env",
    "vm_status",
    "wait_until",
    "wait_until_sync",
]
