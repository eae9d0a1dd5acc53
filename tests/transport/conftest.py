"""A notification sink that records what a transport delivers, and when."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from cc_executor.protocol import Notification


class Recorder:
    """A sink: every notification by task, and those that came before the caller had
    registered the task (`follow`), which a transport must never deliver."""

    def __init__(self) -> None:
        self.events: defaultdict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.followed: set[str] = set()
        self.early: list[tuple[str, str]] = []  # (method, task_id)
        self._waiters: list[asyncio.Future[None]] = []

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        task_id = params.get("task_id") or ""
        if task_id and task_id not in self.followed:
            self.early.append((method, task_id))
        self.events[task_id].append((method, params))
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def follow(self, task_id: str) -> None:
        self.followed.add(task_id)

    def methods(self, task_id: str) -> list[str]:
        return [m for m, _ in self.events[task_id]]

    async def until(
        self, task_id: str, pred: Callable[[str, dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """The first notification of the task matching `pred`, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                events = self.events[task_id]
                for method, params in events[seen:]:
                    if pred(method, params):
                        return params
                seen = len(events)
                w = asyncio.get_running_loop().create_future()
                self._waiters.append(w)
                await w

    async def completed(self, task_id: str, timeout: float = 30) -> dict[str, Any]:
        return await self.until(task_id, lambda m, p: m == Notification.COMPLETED, timeout)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
