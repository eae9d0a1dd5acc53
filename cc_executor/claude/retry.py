"""Automatic retries of Claude runs that failed for a transient reason.

`retries: n` (with `retry_on`, default every `RetryKind`) on `execute_claude` or a session:
when an attempt ends `failed` with a retryable `error_kind`, the next one starts after a
jittered exponential back-off (tenacity's `wait_random_exponential`: a random wait up to
`retry_backoff_seconds * 2**k`, capped at `retry_backoff_max_seconds`). A `rate_limit` with
a known reset time waits until that time instead, if it is no more than
`rate_limit_max_wait_seconds` away (else it is not retried: the window is too far).

Each attempt is its own task record: `extra.attempt` (1, 2 ...) and `extra.retry_of` (the
first attempt's task id) on the later ones, `extra.retried_by` (the next one's id) on each
that was retried, and `extra.attempts` (how many it took) on the last. An attempt resumes
the Claude session the previous one started (`--resume <claude_session_id>`), so no work
is lost. Nothing here spawns: every attempt is an engine task built by `spec_for`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt
from tenacity.wait import wait_random_exponential

from cc_executor.claude.errors import reset_time
from cc_executor.config import Settings
from cc_executor.engine import Engine, Subscriber, TaskRecord
from cc_executor.protocol import RETRY_KINDS, ExecuteClaudeParams, TaskStatus
from cc_executor.tasks import spec_for

log = logging.getLogger(__name__)


class ClaudeRetries:
    """Runs the later attempts of Claude runs on the engine, and follows them."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._followers: set[asyncio.Task[TaskRecord]] = set()

    def follow(
        self, first: TaskRecord, params: ExecuteClaudeParams, subscriber: Subscriber | None
    ) -> None:
        """Retry `first` (just started) in the background as its params say."""
        t = asyncio.get_running_loop().create_task(self.run(first, params, subscriber))
        self._followers.add(t)
        t.add_done_callback(self._followers.discard)
        t.add_done_callback(lambda f: f.cancelled() or f.exception())  # logged in run

    async def run(
        self,
        first: TaskRecord,
        params: ExecuteClaudeParams,
        subscriber: Subscriber | None = None,
        extra: dict[str, Any] | None = None,
        on_attempt: Callable[[TaskRecord], None] | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> TaskRecord:
        """Wait for `first` and retry it while it fails retryably, attempts remain and
        `keep_going()`; return the last attempt's final record. `on_attempt(record)` is
        called as each later attempt starts; `extra` goes on each later attempt's record."""
        kinds = set(params.retry_on or RETRY_KINDS)
        numbers = itertools.count(1)
        last = first

        async def attempt() -> TaskRecord:
            nonlocal last, params
            n = next(numbers)
            if n > 1:
                resume = last.extra.get("claude_session_id") or params.resume
                params = params.model_copy(update={"resume": resume})
                spec = spec_for(params, self.settings)
                spec.extra.update(extra or {})
                spec.extra.update({"attempt": n, "retry_of": first.task_id})
                rec = await self.engine.execute(spec, _live(subscriber))
                if subscriber is not None:
                    subscriber.release_held([rec.task_id])  # no reply of ours carries its id
                last.extra["retried_by"] = rec.task_id
                self.engine.store.save(last)
                log.info(
                    "claude run retried",
                    extra={"task_id": rec.task_id, "retry_of": first.task_id, "attempt": n},
                )
                last = rec
                if on_attempt is not None:
                    on_attempt(rec)
            last = await self.engine.wait(last.task_id)
            return last

        retrying = AsyncRetrying(
            stop=stop_after_attempt(params.retries + 1),
            wait=self._wait,
            retry=retry_if_result(lambda rec: keep_going() and self.retryable(rec, kinds)),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else last,
            sleep=asyncio.sleep,
        )
        try:
            final: TaskRecord = await retrying(attempt)
        except Exception:
            log.exception("retrying task %s failed", first.task_id)
            final = last
        final.extra["attempts"] = final.extra.get("attempt", 1)
        self.engine.store.save(final)
        return final

    def retryable(self, rec: TaskRecord, kinds: set[str]) -> bool:
        if rec.status != TaskStatus.FAILED or rec.extra.get("error_kind") not in kinds:
            return False
        wait = self._reset_wait(rec)
        return wait is None or wait <= self.settings.rate_limit_max_wait_seconds

    def _reset_wait(self, rec: TaskRecord) -> float | None:
        """Seconds until a rate limit's reset, when the record says when."""
        reset_at = rec.extra.get("reset_at")
        if rec.extra.get("error_kind") != "rate_limit" or not reset_at:
            return None
        when = reset_time(str(reset_at), datetime.now(UTC))
        return None if when is None else max(0.0, when.timestamp() - time.time())

    def _wait(self, state: RetryCallState) -> float:
        s = self.settings
        jitter = wait_random_exponential(
            multiplier=s.retry_backoff_seconds, max=s.retry_backoff_max_seconds
        )(state)
        rec = state.outcome.result() if state.outcome is not None else None
        until_reset = self._reset_wait(rec) if isinstance(rec, TaskRecord) else None
        return max(jitter, until_reset) if until_reset is not None else jitter

    async def stop(self) -> None:
        """The service stops: stop following (the attempts' own tasks end with the engine)."""
        for t in list(self._followers):
            t.cancel()
        if self._followers:
            await asyncio.wait(self._followers)


def _live(subscriber: Subscriber | None) -> Subscriber | None:
    return subscriber if subscriber is not None and not subscriber.closed else None
