"""Automatic retries of Claude runs that failed for a transient reason.

`retries: n` (with `retry_on`, default every `RetryKind`) on `execute_claude` or a session:
when an attempt ends `failed` with a retryable `error_kind`, the next one waits out a
jittered exponential back-off (tenacity's `wait_random_exponential`: a random wait up to
`retry_backoff_seconds * 2**k`, capped at `retry_backoff_max_seconds`). A `rate_limit` with
a known reset time waits until that time instead, if it is no more than
`rate_limit_max_wait_seconds` away (else it is not retried: the window is too far).

Each attempt is its own task record: `extra.attempt` (2, 3 ...) and `extra.retry_of` (the
first attempt's task id) on the later ones, `extra.retried_by` (the next one's id) on each
that was retried, and `extra.attempts` (how many it took) on the last. The decision is
taken in a post-execute hook of the engine, before the attempt's record is final: the
next attempt already exists (`queued`, `waiting_for: "retry"`, `until` the back-off ends)
when `process.completed` of the failed one goes out carrying `retried_by`, so a follower
of the first task id goes on to the next without a race. An attempt resumes the Claude
session the previous one started (`--resume <claude_session_id>`), so no work is lost.
Nothing here spawns: every attempt is an engine task built by `spec_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tenacity import RetryCallState
from tenacity.wait import wait_random_exponential

from cc_executor.claude.errors import reset_time
from cc_executor.claude.ratelimit import iso_time
from cc_executor.config import Settings
from cc_executor.engine import Engine, Subscriber, TaskRecord, TaskSpec
from cc_executor.engine.task import TaskGate
from cc_executor.protocol import RETRY_KINDS, ExecuteClaudeParams, ProtocolError, TaskStatus
from cc_executor.tasks import spec_for

log = logging.getLogger(__name__)


def retry_kinds(params: ExecuteClaudeParams) -> frozenset[str]:
    return frozenset(params.retry_on or RETRY_KINDS)


def reset_wait(error_kind: str | None, reset_at: Any) -> float | None:
    """Seconds until a rate limit's reset, when the run said when."""
    if error_kind != "rate_limit" or not reset_at:
        return None
    when = reset_time(str(reset_at), datetime.now(UTC))
    return None if when is None else max(0.0, when.timestamp() - time.time())


def retryable(
    settings: Settings,
    status: str,
    error_kind: str | None,
    reset_at: Any,
    kinds: frozenset[str],
) -> bool:
    """A failed attempt of a kind retried, whose rate-limit reset (if any) is near enough."""
    if status != TaskStatus.FAILED or error_kind not in kinds:
        return False
    wait = reset_wait(error_kind, reset_at)
    return wait is None or wait <= settings.rate_limit_max_wait_seconds


def backoff(settings: Settings, attempt: int, error_kind: str | None, reset_at: Any) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2 ...): full jitter, or
    until a rate limit's reset when that is later."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    jitter = wait_random_exponential(
        multiplier=settings.retry_backoff_seconds, max=settings.retry_backoff_max_seconds
    )(state)
    until_reset = reset_wait(error_kind, reset_at)
    return max(jitter, until_reset) if until_reset is not None else jitter


class BackoffGate:
    """A later attempt's gate: held `waiting_for: "retry"` until its back-off ends, then
    by the gate it had (its account's rate-limit window)."""

    def __init__(self, until: float, then: TaskGate | None) -> None:
        self.until = until
        self.then = then

    def holds(self) -> dict[str, Any] | None:
        if self.until > time.time():
            return {"waiting_for": "retry", "until": iso_time(self.until)}
        return self.then.holds() if self.then is not None else None

    async def wait(self) -> None:
        await asyncio.sleep(max(0.0, self.until - time.time()))
        if self.then is not None:
            await self.then.wait()


@dataclass(eq=False)
class RetryPlan:
    """How one Claude run is retried: its params, who follows it, what goes on each
    later attempt's record."""

    params: ExecuteClaudeParams
    subscriber: Subscriber | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    on_attempt: Callable[[TaskRecord], None] | None = None  # a later attempt was created
    keep_going: Callable[[], bool] = lambda: True


class ClaudeRetries:
    """Creates the later attempts of Claude runs with `retries`, from an engine hook."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._plans: dict[int, tuple[TaskSpec, RetryPlan]] = {}  # by id(spec) of a live task
        engine.post_execute.append(self._after_attempt)  # last: the record is complete

    async def execute(self, spec: TaskSpec, plan: RetryPlan) -> TaskRecord:
        """Start the first attempt (`spec`, built from `plan.params`); its end may start
        the next. The caller's subscriber follows the first only (`retried_by` says the
        rest)."""
        self._plans[id(spec)] = (spec, plan)
        try:
            return await self.engine.execute(spec, plan.subscriber)
        except BaseException:
            self._plans.pop(id(spec), None)
            raise

    async def _after_attempt(self, rec: TaskRecord) -> None:
        task = self.engine.live_task(rec.task_id)
        if task is None:
            return
        spec, plan = self._plans.pop(id(task.spec), (None, None))
        if spec is not task.spec or plan is None:
            return
        n = int(rec.extra.get("attempt", 1))
        kind, reset_at = rec.extra.get("error_kind"), rec.extra.get("reset_at")
        again = (
            n <= plan.params.retries
            and plan.keep_going()
            and retryable(self.settings, str(rec.status), kind, reset_at, retry_kinds(plan.params))
        )
        if not again:
            rec.extra["attempts"] = n
            return
        first_id = rec.extra.get("retry_of") or rec.task_id
        resume = rec.extra.get("claude_session_id") or plan.params.resume
        params = plan.params.model_copy(update={"resume": resume})
        try:
            spec = spec_for(params, self.settings)
        except ProtocolError as exc:  # the allow-list changed, say
            self._no_retry(rec, n, exc)
            return
        spec.extra.update(plan.extra)
        spec.extra.update({"attempt": n + 1, "retry_of": first_id})
        spec.gate = BackoffGate(time.time() + backoff(self.settings, n, kind, reset_at), spec.gate)
        later = RetryPlan(params, None, plan.extra, plan.on_attempt, plan.keep_going)
        self._plans[id(spec)] = (spec, later)
        try:
            nxt = await self.engine.execute(spec)
        except ProtocolError as exc:  # refused now (a full disk, a hook)
            self._plans.pop(id(spec), None)
            self._no_retry(rec, n, exc)
            return
        rec.extra["retried_by"] = nxt.task_id
        log.info(
            "claude run retried",
            extra={"task_id": nxt.task_id, "retry_of": first_id, "attempt": n + 1},
        )
        if plan.on_attempt is not None:
            plan.on_attempt(nxt)

    @staticmethod
    def _no_retry(rec: TaskRecord, n: int, exc: ProtocolError) -> None:
        rec.extra["attempts"] = n
        rec.extra["retry_error"] = f"the retry could not start: {exc.message}"

    async def final(self, rec: TaskRecord) -> TaskRecord:
        """Wait for the last attempt of the run `rec` began (following `retried_by`)."""
        rec = await self.engine.wait(rec.task_id)
        while rec.extra.get("retried_by"):
            rec = await self.engine.wait(str(rec.extra["retried_by"]))
        return rec

    async def stop(self) -> None:
        """The service stops: later attempts still waiting are queued tasks; the engine
        ends them with the rest."""
        with contextlib.suppress(ValueError):
            self.engine.post_execute.remove(self._after_attempt)
        self._plans.clear()
