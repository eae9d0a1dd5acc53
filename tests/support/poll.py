"""Polling the outside world (the process table, files, a service's answers) with a deadline.

Every helper fails the test with an AssertionError at its deadline, naming what it waited
for; none of them sleeps longer than one short interval past the moment the condition holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

INTERVAL = 0.01


def _describe(pred: Callable[..., Any], what: str | None) -> str:
    if what:
        return what
    with contextlib.suppress(OSError, TypeError):
        return inspect.getsource(pred).strip()  # the line holding the lambda
    return repr(pred)


async def wait_until(
    pred: Callable[[], object], timeout: float = 10.0, what: str | None = None
) -> bool:
    """Poll `pred` until it is true and return True; at the deadline raise AssertionError.

    Returning True keeps `assert await wait_until(...)` readable at the call site.
    """
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_describe(pred, what)}")
        await asyncio.sleep(INTERVAL)
    return True


def wait_until_sync(
    pred: Callable[[], object], timeout: float = 10.0, what: str | None = None
) -> bool:
    """`wait_until` for code that has no event loop (sync tests, a hypothesis body)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_describe(pred, what)}")
        time.sleep(INTERVAL)
    return True


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], object], timeout: float = 20.0
) -> T:
    """Ask again (e.g. the service's status) until `check(await probe())` holds, and return
    that answer; fail with the last answer when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s; last value {value}")
        await asyncio.sleep(2 * INTERVAL)


async def happens_within(pred: Callable[[], object], seconds: float) -> bool:
    """Watch `pred` for `seconds`: True as soon as it holds, False if it never did.

    For asserting that something does *not* happen (`assert not await happens_within(...)`);
    to wait for something that must happen, use `wait_until`.
    """
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(INTERVAL)
    return True
