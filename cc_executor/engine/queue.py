"""The task queue and its capacity accounting: which tasks wait, how many slots are taken.

`TaskQueue` is the seam a shared queue (several hosts) plugs into; `LocalTaskQueue` is the
in-memory FIFO of one engine, bounded by `max_concurrent_tasks` running and
`max_queued_tasks` waiting. The cluster's queue (cc_executor/cluster/queue.py) adds a third
answer to `admit`: the task waits in the cluster-wide queue, for whichever node has a slot.
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from typing import Generic, Protocol, TypeVar

from cc_executor.protocol import ErrorCode, ProtocolError

T = TypeVar("T")


class Admission(enum.Enum):
    START = "start"  # a slot is taken for it here: start it now
    WAIT = "wait"  # it waits in this engine's queue (next_startable gives it back)
    SHARED = "shared"  # it waits in a queue shared by several engines: not this one's now


class TaskQueue(Protocol[T]):
    """Capacity accounting and the FIFO of tasks waiting for a slot."""

    running: int
    shared: bool  # other engines take work from this queue too (a cluster)

    async def check_capacity(self) -> None:
        """Raise CAPACITY_EXCEEDED if a new task could neither start nor wait."""

    async def admit(self, task: T) -> Admission:
        """A slot for `task` now, or put it at the back of the queue."""

    def release(self) -> None:
        """A running task ended: its slot is free."""

    def next_startable(self) -> T | None:
        """The next waiting task, taking a slot for it, if a slot is free."""

    def remove(self, task: T) -> bool:
        """Take a waiting task out (cancelled before it started)."""

    def __len__(self) -> int: ...


class LocalTaskQueue(Generic[T]):
    """One engine's FIFO, in memory."""

    shared = False

    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self._waiting: deque[T] = deque()

    async def check_capacity(self) -> None:
        if self.running >= self.max_running and len(self._waiting) >= self.max_waiting:
            raise ProtocolError(
                ErrorCode.CAPACITY_EXCEEDED,
                f"{self.running} tasks running and {len(self._waiting)} queued: at capacity",
                {"max_concurrent_tasks": self.max_running, "max_queued": self.max_waiting},
            )

    async def admit(self, task: T) -> Admission:
        if self.running < self.max_running and not self._waiting:
            self.running += 1
            return Admission.START
        self._waiting.append(task)
        return Admission.WAIT

    def release(self) -> None:
        self.running -= 1

    def next_startable(self) -> T | None:
        if self._waiting and self.running < self.max_running:
            self.running += 1
            return self._waiting.popleft()
        return None

    def remove(self, task: T) -> bool:
        with contextlib.suppress(ValueError):
            self._waiting.remove(task)
            return True
        return False

    def __len__(self) -> int:
        return len(self._waiting)
