"""A task's lifecycle: which status may follow which, changed in one place.

    queued ──> running <──> paused
      │           │           │
      └───────────┴───────────┴──> completed | failed | cancelled | timed_out | lost

Every status change of a task record goes through `transition`, so an impossible one (a
final task made running again, a queued task "paused") is a bug that fails loudly instead
of a record that lies.
"""

from __future__ import annotations

from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import FINAL_STATUSES, TaskStatus

_NEXT: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, *FINAL_STATUSES}),
    TaskStatus.RUNNING: frozenset({TaskStatus.PAUSED, *FINAL_STATUSES}),
    TaskStatus.PAUSED: frozenset({TaskStatus.RUNNING, *FINAL_STATUSES}),
    **{s: frozenset() for s in FINAL_STATUSES},
}


class InvalidTransition(RuntimeError):
    """A status change the lifecycle does not allow."""


def can_transition(current: TaskStatus, to: TaskStatus) -> bool:
    return to in _NEXT[current]


def transition(record: TaskRecord, to: TaskStatus) -> None:
    """Move `record` to status `to`, or raise InvalidTransition."""
    if to not in _NEXT[record.status]:
        raise InvalidTransition(f"task {record.task_id}: {record.status} -> {to} is not allowed")
    record.status = to
