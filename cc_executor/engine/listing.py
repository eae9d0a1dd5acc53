"""The task list as `status` serves it: filtered, sorted, active tasks first, one page of it.

A pure function over records (no I/O): `Engine.page` hands it every record it knows (the
store's, the recently finished and the live ones) and `status` replies with the page. The
dashboard and `cc-executor tasks` ask for `active_first`, so a running task is on the first
page whatever the size of the history; `total` and `counts` let them say "N of M".
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import ACTIVE_STATUSES, StatusParams, TaskStatus

SCAN_LIMIT = 100_000
"""At most this many stored records are looked at for one listing (the newest)."""

_ACTIVE_RANK = {TaskStatus.RUNNING: 0, TaskStatus.PAUSED: 1, TaskStatus.QUEUED: 2}


@dataclass
class TaskPage:
    """One page of the filtered list, and what it is a page of."""

    tasks: list[TaskRecord]
    total: int  # records that match the filters (the "M" of "N of M")
    offset: int
    counts: dict[str, int] = field(default_factory=dict)  # per status, text filter only


def command_text(rec: TaskRecord) -> str:
    """The command as a user would type it (a list is shell-quoted)."""
    if isinstance(rec.command, list):
        return shlex.join(str(c) for c in rec.command)
    return str(rec.command or "")


def matches_text(rec: TaskRecord, needle: str) -> bool:
    """Whether `needle` (lower case) is in the task's id, name, command or prompt."""
    prompt = rec.extra.get("prompt")
    for hay in (rec.task_id, rec.name, command_text(rec), prompt):
        if isinstance(hay, str) and needle in hay.lower():
            return True
    return False


def _cost(rec: TaskRecord) -> Any:
    return rec.extra.get("total_cost_usd")


SORT_KEYS: dict[str, Callable[[TaskRecord], Any]] = {
    "created": lambda r: r.created_at,
    "started": lambda r: r.started_at,
    "ended": lambda r: r.ended_at,
    "runtime": lambda r: r.duration_s,
    "status": lambda r: str(r.status),
    "name": lambda r: (r.name or command_text(r)).lower(),
    "cost": _cost,
    "exit": lambda r: r.exit_code if r.signal is None else 128 + r.signal,
    "bytes": lambda r: r.stdout_bytes + r.stderr_bytes,
}
"""The `sort` values of `status` and what each sorts by."""


def _ordered(records: list[TaskRecord], p: StatusParams) -> list[TaskRecord]:
    key = SORT_KEYS[p.sort]
    # Records without the value (a queued task's runtime, a command's cost) go last
    # whichever the direction; ties keep the newest first.
    have = [r for r in records if key(r) is not None]
    lack = [r for r in records if key(r) is None]
    lack.sort(key=lambda r: r.created_at, reverse=True)
    have.sort(key=lambda r: r.created_at, reverse=True)
    have.sort(key=key, reverse=p.descending)
    ordered = have + lack
    if p.active_first:
        # Stable: within each rank the chosen order stands.
        ordered.sort(key=lambda r: _ACTIVE_RANK.get(r.status, 3))
    return ordered


def select(records: Iterable[TaskRecord], p: StatusParams) -> TaskPage:
    """The page of `records` that the params of `status` ask for."""
    needle = p.text.strip().lower() if p.text else ""
    found = [r for r in records if not needle or matches_text(r, needle)]
    counts: dict[str, int] = {}
    for r in found:
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    if p.statuses:
        wanted = set(p.statuses)
        found = [r for r in found if r.status in wanted]
    ordered = _ordered(found, p)
    return TaskPage(ordered[p.offset : p.offset + p.limit], len(ordered), p.offset, counts)


__all__ = ["ACTIVE_STATUSES", "SCAN_LIMIT", "SORT_KEYS", "TaskPage", "select"]
