"""Hot sessions: one live `claude` per session, each turn a user message on its stdin.

A cold turn is a fresh `claude -p ... --resume <id>` and pays the CLI's start-up (2-3 s)
every time. A hot session keeps one `claude -p --input-format stream-json --output-format
stream-json --verbose` (resuming the session's conversation when it has one) as one
long-lived engine task owned by the session: the engine spawns, streams, pauses, resumes,
cancels and reaps it like any task. A turn writes one user message (a JSON line) to its
stdin and ends at the next `result` line; the turn's `task_id` is the hot task's, and its
output is the slice `[output_from, output_to)` of that task's stdout log.

The process is closed (stdin EOF, then CANCEL if it lingers) after `hot_idle_seconds`
without a turn, when its session is killed, or to make room under `max_hot_sessions`
(least recently used idle one first; when every slot is busy the turn runs cold). If it
dies (a crash, a CANCEL of the turn) the next turn starts a new one with `--resume`, so
the conversation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from cc_executor.claude.errors import classify
from cc_executor.claude.ratelimit import RateLimitGate
from cc_executor.claude.runner import note_rate_limit
from cc_executor.claude.stream import ClaudeStreamState, LineSplitter
from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskSpec
from cc_executor.engine.events import CallbackSubscriber, Event
from cc_executor.protocol import (
    Action,
    ExecuteClaudeParams,
    Notification,
    ProtocolError,
    Stream,
    TaskStatus,
)
from cc_executor.tasks import spec_for

if TYPE_CHECKING:
    from cc_executor.engine.engine import RunningTask

log = logging.getLogger(__name__)

_STDERR_TAIL = 16 * 1024


@dataclass
class HotOutcome:
    """How one hot turn ended: its final status and what the stream said."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)  # result, claude_session_id, cost...
    error: str | None = None
    error_kind: str | None = None
    output_to: int = 0


def user_message(prompt: str) -> bytes:
    """One stream-json input line: the CLI's user message shape."""
    content = [{"type": "text", "text": prompt}]
    msg = {"type": "user", "message": {"role": "user", "content": content}}
    return orjson.dumps(msg) + b"\n"


class HotObserver:
    """The hot task's stdout, cut into turns: each `begin()` is answered at the next result."""

    def __init__(self, gate: RateLimitGate | None = None) -> None:
        self.gate = gate  # its account's rate-limit window: a turn's limit holds the others
        self.splitter = LineSplitter()
        self.state: ClaudeStreamState | None = None  # the turn in flight
        self.waiter: asyncio.Future[HotOutcome] | None = None
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.consumed = 0  # stdout bytes of complete lines read so far
        self.stderr_tail = b""
        self.ended = False
        self.turns = 0

    def begin(self) -> asyncio.Future[HotOutcome]:
        self.state = ClaudeStreamState()
        self.waiter = asyncio.get_running_loop().create_future()
        self.turns += 1
        return self.waiter

    def on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None:
        if stream == Stream.STDERR:
            self.stderr_tail = (self.stderr_tail + data)[-_STDERR_TAIL:]
            return
        for line in self.splitter.feed(data):
            self._line(task, line)

    def _line(self, task: RunningTask, line: bytes) -> None:
        self.consumed += len(line) + 1
        state = self.state
        if state is None:
            return  # nothing asked: not part of any turn
        compact = state.feed_line(line)
        if compact is not None:
            task.emit_everywhere(
                Notification.CLAUDE_EVENT, {"task_id": task.task_id, "event": compact}
            )
        if state.result_seen:
            code = 1 if state.is_error else 0
            self._answer(self._outcome(state, exit_code=code, signal=None, timed_out=False))

    def _outcome(
        self, state: ClaudeStreamState, exit_code: int | None, signal: int | None, timed_out: bool
    ) -> HotOutcome:
        err = classify(
            state=state,
            stderr_tail=self.stderr_tail.decode("utf-8", "replace"),
            exit_code=exit_code,
            signal=signal,
            timed_out=timed_out,
            spawn_error=None,
        )
        out = HotOutcome(TaskStatus.COMPLETED, state.record_fields(), output_to=self.consumed)
        if err is not None:
            out.status, out.error, out.error_kind = TaskStatus.FAILED, err.message, str(err.kind)
            if err.reset_at:
                out.fields["reset_at"] = err.reset_at
        if self.gate is not None:
            seen = {"error_kind": out.error_kind, "reset_at": out.fields.get("reset_at")}
            note_rate_limit(self.gate, state.rate_limit_info, seen)
        return out

    def _answer(self, outcome: HotOutcome) -> None:
        self.state = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(outcome)
        self.waiter = None

    def on_finish(self, task: RunningTask) -> None:
        for line in self.splitter.flush():
            self._line(task, line)
        self.ended = True
        rec = task.record
        rec.extra["hot_turns"] = self.turns
        if not self.started.done():
            self.started.set_result(None)  # it never started: the turn learns it below
        if self.state is None:
            return
        if task.final_status in (TaskStatus.CANCELLED, TaskStatus.TIMED_OUT):
            outcome = HotOutcome(
                str(task.final_status),
                self.state.record_fields(),
                task.stop_reason or "cancelled",
                output_to=self.consumed,
            )
        else:
            outcome = self._outcome(self.state, rec.exit_code or 1, rec.signal, False)
            if rec.error and outcome.error is None:
                outcome.status, outcome.error = TaskStatus.FAILED, rec.error
        self._answer(outcome)


@dataclass(eq=False)
class HotProcess:
    """One session's live claude task."""

    session_id: str
    task_id: str
    observer: HotObserver
    busy: bool = False
    idle_timer: asyncio.TimerHandle | None = None


def hot_spec(params: ExecuteClaudeParams, settings: Settings, session_id: str) -> TaskSpec:
    """The TaskSpec of a hot process: a turn's spec (allow-list, env, options, --resume)
    with the prompt operand replaced by stream-json input."""
    spec = spec_for(params, settings)
    assert spec.argv[-2] == "--", spec.argv  # build_argv puts the prompt last, after --
    argv = [*spec.argv[:-2], "--input-format", "stream-json"]
    spec.command = spec.argv = argv
    gate = spec.gate if isinstance(spec.gate, RateLimitGate) else None
    spec.observer = HotObserver(gate)
    spec.stdin_pipe = True
    spec.timeout = spec.idle_timeout = None  # it idles between turns; a turn has its own limit
    spec.extra = {"hot_session": session_id}
    spec.name = f"hot session {session_id}"
    return spec


def _write(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(data)
    pipe.flush()


class HotSessions:
    """Every session's hot process: start, reuse, bound (LRU), close when idle."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._procs: OrderedDict[str, HotProcess] = OrderedDict()  # least recently used first
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._procs)

    def task_id(self, session_id: str) -> str | None:
        hp = self._procs.get(session_id)
        return hp.task_id if hp is not None and self._alive(hp) else None

    def _alive(self, hp: HotProcess) -> bool:
        return not hp.observer.ended and self.engine.live_task(hp.task_id) is not None

    async def run_turn(
        self,
        session_id: str,
        params: ExecuteClaudeParams,
        on_started: Callable[[str, int], None],
        timeout: float | None,
    ) -> HotOutcome | None:
        """Run one turn in the session's hot process (started if needed); None when no
        process can be had now (every hot slot busy): the caller runs the turn cold.
        `on_started(task_id, output_from)` is called once the message is about to go."""
        hp = await self._acquire(session_id, params)
        if hp is None:
            return None
        hp.busy = True
        if hp.idle_timer is not None:
            hp.idle_timer.cancel()
        self._procs.move_to_end(session_id)
        try:
            await asyncio.shield(hp.observer.started)
            task = self.engine.live_task(hp.task_id)
            if task is None or task.proc is None or task.proc.stdin is None:
                rec = await self.engine.get(hp.task_id)
                on_started(hp.task_id, 0)
                return HotOutcome(
                    TaskStatus.FAILED,
                    error=f"the hot claude process could not start: {rec.error}",
                    error_kind=rec.extra.get("error_kind"),
                )
            waiter = hp.observer.begin()
            on_started(hp.task_id, hp.observer.consumed)
            try:
                await asyncio.to_thread(_write, task.proc.stdin, user_message(params.prompt))
            except (OSError, ValueError):
                pass  # it died meanwhile: its end answers the waiter
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                await self._cancel(hp.task_id)
                outcome = await waiter
                outcome.status = TaskStatus.TIMED_OUT
                outcome.error = f"the turn ran longer than its turn_timeout ({timeout:g} s)"
                outcome.error_kind = "timeout"
                return outcome
        finally:
            hp.busy = False
            if self._alive(hp):
                loop = asyncio.get_running_loop()
                hp.idle_timer = loop.call_later(
                    self.settings.hot_idle_seconds, self._close_soon, session_id, hp
                )
            elif self._procs.get(session_id) is hp:
                del self._procs[session_id]

    async def _acquire(self, session_id: str, params: ExecuteClaudeParams) -> HotProcess | None:
        hp = self._procs.get(session_id)
        if hp is not None and self._alive(hp):
            return hp
        self._procs.pop(session_id, None)
        while len(self._procs) >= self.settings.max_hot_sessions:
            idle = next((x for x in self._procs.values() if not x.busy), None)
            if idle is None:
                return None
            await self.close(idle.session_id, "max_hot_sessions: least recently used")
        spec = hot_spec(params, self.settings, session_id)
        observer = spec.observer
        assert isinstance(observer, HotObserver)

        def on_event(ev: Event) -> None:
            if ev.method == Notification.STARTED and not observer.started.done():
                observer.started.set_result(None)

        sub = CallbackSubscriber(on_event, name=f"hot-{session_id}")
        rec = await self.engine.execute(spec, sub)
        if str(rec.status) != TaskStatus.QUEUED and not observer.started.done():
            observer.started.set_result(None)
        observer.started.add_done_callback(lambda _: self.engine.unsubscribe(rec.task_id, sub))
        hp = HotProcess(session_id, rec.task_id, observer)
        self._procs[session_id] = hp
        log.info("hot process started", extra={"session_id": session_id, "task_id": rec.task_id})
        return hp

    def _close_soon(self, session_id: str, hp: HotProcess) -> None:
        if self._procs.get(session_id) is not hp or hp.busy:
            return
        t = asyncio.get_running_loop().create_task(self.close(session_id, "idle"))
        self._closing.add(t)
        t.add_done_callback(self._closing.discard)

    async def close(self, session_id: str, why: str) -> None:
        """End a session's hot process: stdin EOF (the CLI exits), CANCEL if it lingers."""
        hp = self._procs.pop(session_id, None)
        if hp is None:
            return
        if hp.idle_timer is not None:
            hp.idle_timer.cancel()
        log.info("hot process closing", extra={"session_id": session_id, "why": why})
        task = self.engine.live_task(hp.task_id)
        if task is not None and task.proc is not None and task.proc.stdin is not None:
            with contextlib.suppress(OSError):
                task.proc.stdin.close()
        await self.engine.wait(hp.task_id, self.settings.kill_grace_seconds)
        if self.engine.live_task(hp.task_id) is not None:
            await self._cancel(hp.task_id)

    async def _cancel(self, task_id: str) -> None:
        with contextlib.suppress(ProtocolError):  # it ended on its own meanwhile
            await self.engine.control(task_id, Action.CANCEL)

    async def stop(self) -> None:
        """The service stops: close every hot process."""
        await asyncio.gather(*(self.close(sid, "service stopping") for sid in list(self._procs)))
        if self._closing:
            await asyncio.wait(self._closing)
