"""The turns of sessions: one FIFO queue per session, one worker per busy session.

Turns of one session run one at a time, in the order sent; different sessions run in
parallel. A turn is an ordinary `execute_claude` task on the Engine with the session's
Claude options, resuming its conversation (a temp session's turn may be a plain command);
its end is recorded on the turn and on the session, and in watch mode a completed turn
queues the continuation prompt. Nothing here spawns a process: every one is the Engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cc_executor.claude.retry import ClaudeRetries, RetryPlan, backoff, retry_kinds, retryable
from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskRecord, TaskSpec
from cc_executor.protocol import (
    Action,
    ErrorCode,
    ExecuteClaudeParams,
    ExecuteParams,
    ProtocolError,
    TaskStatus,
)
from cc_executor.sessions.hot import HotOutcome, HotSessions
from cc_executor.sessions.records import (
    RESULT_PREVIEW_CHARS,
    TURN_QUEUED,
    TURN_RUNNING,
    Session,
    Turn,
    TurnKind,
)
from cc_executor.sessions.store import SessionStore
from cc_executor.tasks import spec_for

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TurnHandle:
    """A queued turn, with futures that resolve when its task started and when it ended."""

    turn: Turn
    started: asyncio.Future[None]
    done: asyncio.Future[Turn]


@dataclass(eq=False)
class SessionQueue:
    """A busy session's queue, the turn running now and the worker running them."""

    session: Session
    queue: deque[TurnHandle] = field(default_factory=deque)
    current: TurnHandle | None = None
    worker: asyncio.Task[None] | None = None
    killed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when it must stop waiting


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def turn_params(s: Session, prompt: str, turn: int) -> ExecuteClaudeParams:
    """The `execute_claude` params of one turn: the session's Claude options, resuming its
    conversation, in its working directory, with its ids in the environment."""
    return ExecuteClaudeParams.model_validate(
        {
            **s.claude_options.model_dump(),
            "prompt": prompt,
            "resume": s.claude_session_id,
            "cwd": s.run_dir,
            "timeout": s.turn_timeout,
            "env": {
                "CC_EXECUTOR_SESSION_ID": s.session_id,
                "CC_EXECUTOR_SESSION_NAME": s.name or "",
            },
            "name": f"session {s.name or s.session_id} turn {turn}",
        }
    )


def apply_record(t: Turn, rec: TaskRecord) -> None:
    """Copy what a turn's task record says onto the turn."""
    t.status = str(rec.status)
    t.started_at = rec.started_at
    t.ended_at = rec.ended_at
    t.exit_code = rec.exit_code
    t.result = rec.extra.get("result")
    t.claude_session_id = rec.extra.get("claude_session_id") or t.claude_session_id
    t.error = rec.error
    t.error_kind = rec.extra.get("error_kind")
    t.cost_usd = rec.extra.get("total_cost_usd")


def apply_outcome(t: Turn, out: HotOutcome) -> None:
    """Copy how a hot turn ended onto the turn."""
    t.status = out.status
    t.ended_at = time.time()
    t.output_to = out.output_to
    t.result = out.fields.get("result")
    t.claude_session_id = out.fields.get("claude_session_id") or t.claude_session_id
    t.error, t.error_kind = out.error, out.error_kind
    t.cost_usd = out.fields.get("total_cost_usd")


class TurnQueues:
    """Queues and runs the turns of every session on the Engine and records their ends.

    `on_change(session)` is called whenever a session's state changed (to announce it).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        store: SessionStore,
        on_change: Callable[[Session], None],
        retries: ClaudeRetries,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.store = store
        self._on_change = on_change
        self._queues: dict[str, SessionQueue] = {}
        self.hot = HotSessions(engine, settings)
        self.retries = retries
        self.closing = False

    # ------------------------------------------------------------------ what is queued

    def current(self, session_id: str) -> TurnHandle | None:
        q = self._queues.get(session_id)
        return q.current if q else None

    def queued(self, session_id: str) -> int:
        q = self._queues.get(session_id)
        return len(q.queue) if q else 0

    def is_next(self, session_id: str, p: TurnHandle) -> bool:
        """True if `p` starts as soon as its worker runs (no turn ahead of it)."""
        q = self._queues.get(session_id)
        return q is not None and q.current is None and bool(q.queue) and q.queue[0] is p

    def position(self, session_id: str, p: TurnHandle) -> int | None:
        """`p`'s place in its queue (1 = next after the running turn), None if not queued."""
        q = self._queues.get(session_id)
        if q is None or p not in q.queue:
            return None
        return list(q.queue).index(p) + 1

    def forget(self, session_id: str) -> None:
        """Drop an ended session's (empty) queue."""
        self._queues.pop(session_id, None)

    # ------------------------------------------------------------------ queueing

    def enqueue(
        self,
        s: Session,
        prompt: str,
        message: str,
        kind: TurnKind,
        from_session: str | None = None,
        coordination_id: str | None = None,
        command: str | list[str] | None = None,
    ) -> TurnHandle:
        """Queue one turn of `s` (its worker starts if idle); the handle tells when it ends."""
        q = self._queues.setdefault(s.session_id, SessionQueue(s))
        if q.killed or self.closing or not s.is_active:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"session {s.label} is ending: it takes no more turns",
                {"session_id": s.session_id},
            )
        s.turns += 1
        t = Turn(
            session_id=s.session_id,
            turn=s.turns,
            prompt=prompt,
            message=message,
            kind=kind,
            from_session=from_session,
            coordination_id=coordination_id,
            command=command,
        )
        loop = asyncio.get_running_loop()
        p = TurnHandle(t, loop.create_future(), loop.create_future())
        q.queue.append(p)
        s.status = "running"
        s.updated_at = time.time()
        self.store.save_turn(t)
        self.store.save_session(s)
        if q.worker is None:
            q.worker = loop.create_task(self._drain(q), name=f"session-{s.session_id}")
        self._on_change(s)
        return p

    async def _drain(self, q: SessionQueue) -> None:
        """The session's worker: run queued turns one at a time, in order, then exit."""
        s = q.session
        try:
            while q.queue and not q.killed and not self.closing:
                p = q.queue.popleft()
                q.current = p
                try:
                    await self._run_turn(q, p)
                except Exception as exc:
                    log.exception("session %s turn %d failed", s.session_id, p.turn.turn)
                    self._close_turn(q, p, TaskStatus.FAILED, f"internal error: {exc!r}")
                finally:
                    q.current = None
        finally:
            q.worker = None

    async def _run_turn(self, q: SessionQueue, p: TurnHandle) -> None:
        s, t = q.session, p.turn
        if q.killed or self.closing:
            self._close_turn(q, p, TaskStatus.CANCELLED, "the session stopped before this turn ran")
            return
        t.resumed = s.claude_session_id if t.command is None else None
        if s.hot and t.command is None:
            if self._account_held(s, t):
                # Its account's rate-limit window is closed: the turn waits cold, `queued`
                # with `waiting_for` like any Claude task of the account (CANCEL works);
                # the next turn after the reset starts a new hot process (--resume).
                await self.hot.close(s.session_id, "its account is held by a rate limit")
            elif await self._run_hot_turn(q, p):
                return
        params = turn_params(s, t.prompt, t.turn) if t.command is None else None
        try:
            if t.command is not None:  # a temp session's plain command
                command = ExecuteParams(command=t.command, cwd=s.run_dir, timeout=s.turn_timeout)
                spec = spec_for(command, self.settings)
                spec.name = f"temp session {s.session_id}"
            else:
                assert params is not None
                spec = spec_for(params, self.settings)
            spec.extra.update({"session_id": s.session_id, "session_turn": t.turn})
            if s.workspace:  # the turn's record gains what the session's worktree changed
                spec.extra["workspace"] = dict(s.workspace)
            if params is not None and params.retries:
                rec = await self.retries.execute(spec, self._retry_plan(q, t, params, spec))
            else:
                rec = await self.engine.execute(spec)
        except ProtocolError as exc:
            self._close_turn(q, p, TaskStatus.FAILED, f"the turn could not start: {exc.message}")
            return
        t.task_id = rec.task_id
        t.status = TURN_QUEUED if str(rec.status) == TURN_QUEUED else TURN_RUNNING
        t.started_at = rec.started_at
        s.last_turn, s.last_task_id = t.turn, t.task_id
        self.store.save_turn(t)
        self.store.save_session(s)
        self._on_change(s)
        _resolve(p.started, None)
        if q.killed or self.closing:
            await self._cancel_task(rec.task_id)
        final = await self.retries.final(rec)  # the last attempt (`retried_by`), if retried
        apply_record(t, final)
        t.task_id = final.task_id
        t.attempts = final.extra.get("attempts")
        if t.claude_session_id:
            s.claude_session_id = t.claude_session_id
        self._maybe_continue(q, t)
        self._close_turn(q, p)

    def _retry_plan(
        self, q: SessionQueue, t: Turn, params: ExecuteClaudeParams, spec: TaskSpec
    ) -> RetryPlan:
        """How a cold turn's failed attempts are retried: each later attempt becomes the
        turn's task (CANCEL and kill reach it), until the session stops."""
        s = q.session

        def on_attempt(attempt: TaskRecord) -> None:
            t.task_id = s.last_task_id = attempt.task_id
            self.store.save_turn(t)
            self._on_change(s)

        return RetryPlan(
            params,
            extra={
                k: spec.extra[k]
                for k in ("session_id", "session_turn", "workspace")
                if k in spec.extra
            },
            on_attempt=on_attempt,
            keep_going=lambda: not (q.killed or self.closing),
        )

    async def _run_hot_turn(self, q: SessionQueue, p: TurnHandle) -> bool:
        """Run the turn in the session's hot process; False if it must run cold (no free
        hot slot)."""
        s, t = q.session, p.turn

        def on_started(task_id: str, output_from: int) -> None:
            t.task_id, t.hot, t.output_from = task_id, True, output_from
            t.status, t.started_at = TURN_RUNNING, time.time()
            s.last_turn, s.last_task_id = t.turn, t.task_id
            self.store.save_turn(t)
            self.store.save_session(s)
            self._on_change(s)
            _resolve(p.started, None)

        params = turn_params(s, t.prompt, t.turn)
        kinds = retry_kinds(params)
        for attempt in itertools.count(1):
            try:
                outcome = await self.hot.run_turn(s.session_id, params, on_started, s.turn_timeout)
            except ProtocolError as exc:
                why = f"the turn could not start: {exc.message}"
                self._close_turn(q, p, TaskStatus.FAILED, why)
                return True
            if outcome is None:
                return False  # no hot slot: it runs cold (with its own retries)
            reset_at = outcome.fields.get("reset_at")
            if (
                attempt > params.retries
                or q.killed
                or self.closing
                or not retryable(self.settings, outcome.status, outcome.error_kind, reset_at, kinds)
            ):
                break
            # `retries`: the same message again, in the same process if it lives (else a new
            # one resumes the conversation), after the back-off; a kill ends the wait
            delay = backoff(self.settings, attempt, outcome.error_kind, reset_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(q.wake.wait(), delay)
            if q.killed or self.closing:
                break
        assert outcome is not None
        if params.retries:
            t.attempts = attempt
        apply_outcome(t, outcome)
        if t.claude_session_id:
            s.claude_session_id = t.claude_session_id
        self._maybe_continue(q, t)
        self._close_turn(q, p)
        return True

    def _account_held(self, s: Session, t: Turn) -> bool:
        """Is the account of this turn's claude held by a rate-limit window now?"""
        try:
            gate = spec_for(turn_params(s, t.prompt, t.turn), self.settings).gate
        except ProtocolError:
            return False  # the cold path says why it cannot start
        return gate is not None and gate.holds() is not None

    def _maybe_continue(self, q: SessionQueue, t: Turn) -> None:
        """Watch mode: after a completed turn, queue the continuation prompt."""
        s = q.session
        if not s.watch_mode or q.killed or self.closing or not s.is_active:
            return
        if t.status != TaskStatus.COMPLETED:
            s.watch_stopped = f"turn {t.turn} ended {t.status}"
            return
        if q.queue:
            return  # queued messages first; the last of them continues
        if s.max_turns is not None and s.watch_turns >= s.max_turns:
            s.watch_stopped = f"max_turns ({s.max_turns}) reached"
            return
        s.watch_turns += 1
        s.watch_stopped = None
        self.enqueue(s, s.continuation_prompt, s.continuation_prompt, "watch")

    def _close_turn(
        self,
        q: SessionQueue,
        p: TurnHandle,
        status: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record a turn's end, update its session, wake whoever waits for it."""
        s, t = q.session, p.turn
        if status is not None:
            t.status = status
        if error is not None:
            t.error = error
        t.ended_at = t.ended_at or time.time()
        s.last_turn = t.turn
        s.last_task_id = t.task_id or s.last_task_id
        s.last_status = t.status
        s.last_result = t.result[:RESULT_PREVIEW_CHARS] if t.result else None
        if s.is_active:
            s.status = "running" if q.queue else "idle"
        s.updated_at = time.time()
        self.store.save_turn(t)
        self.store.save_session(s)
        self._on_change(s)
        _resolve(p.started, None)
        _resolve(p.done, t)

    # ------------------------------------------------------------------ stopping turns

    def _drop_queue(self, q: SessionQueue, reason: str) -> list[int]:
        dropped = list(q.queue)
        q.queue.clear()
        for p in dropped:
            self._close_turn(q, p, TaskStatus.CANCELLED, reason)
        return [p.turn.turn for p in dropped]

    async def _cancel_task(self, task_id: str) -> None:
        """CANCEL a turn's task; returns once its process group is gone."""
        with contextlib.suppress(ProtocolError):  # it ended on its own meanwhile
            await self.engine.control(task_id, Action.CANCEL)

    async def cancel_turn(self, s: Session, p: TurnHandle, reason: str) -> None:
        """Cancel one turn: dropped if still queued, else its task is cancelled."""
        q = self._queues.get(s.session_id)
        if q is not None and p in q.queue:
            q.queue.remove(p)
            self._close_turn(q, p, TaskStatus.CANCELLED, reason)
            return
        await asyncio.shield(p.started)
        if p.turn.task_id is not None:
            await self._cancel_task(p.turn.task_id)
        await asyncio.shield(p.done)

    async def kill(self, s: Session) -> tuple[str | None, list[int]]:
        """Take no more turns of `s`: drop its queue, cancel the running turn (its group
        ends) and wait for its worker. Returns the cancelled task id and the dropped turns."""
        q = self._queues.setdefault(s.session_id, SessionQueue(s))
        q.killed = True
        q.wake.set()
        dropped = self._drop_queue(q, "the session was killed before this turn ran")
        cancelled = q.current.turn.task_id if q.current else None
        if cancelled is not None:
            await self._cancel_task(cancelled)
        if q.worker is not None:
            await asyncio.shield(q.worker)
        await self.hot.close(s.session_id, "session killed")
        return cancelled, dropped

    async def stop(self) -> None:
        """The service stops: drop every queued turn, cancel the running ones (their groups
        end) and wait for the workers."""
        self.closing = True
        cancels = []
        for q in self._queues.values():
            q.wake.set()
            self._drop_queue(q, "the service stopped before this turn ran")
            task_id = q.current.turn.task_id if q.current else None
            if task_id is not None:
                cancels.append(self._cancel_task(task_id))
        if cancels:
            await asyncio.gather(*cancels)
        workers = [q.worker for q in self._queues.values() if q.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=self.settings.kill_grace_seconds + 5)
        await self.hot.stop()
