"""The session manager: persistent Claude conversations driven through the Engine.

A session is a named conversation in a working directory. Each turn is an ordinary
`execute_claude` task (same task ids, control, output and records as any other): the first
turn starts the conversation and records its Claude session id, later turns pass
`--resume <it>`. Turns of one session run one at a time in the order sent (a FIFO queue with
one worker task per busy session); different sessions run in parallel. The manager never
spawns anything itself: every process belongs to the Engine.

Watch mode sends the continuation prompt after each completed turn until `max_turns`
continuations were sent or the session is killed. A message sent `from_session` is
recorded on both sides and delivered as a turn that names its sender. Sessions, turns and
messages persist in the `SessionStore`, so after a restart sessions are listed and resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from cc_executor.config import Settings
from cc_executor.engine import Engine, Event, TaskRecord
from cc_executor.protocol import (
    Action,
    ErrorCode,
    ExecuteClaudeParams,
    ExecuteParams,
    Notification,
    ProtocolError,
    SessionCoordinateParams,
    SessionCreateParams,
    SessionSpawnTempParams,
)
from cc_executor.sessions.coordinate import coordinate
from cc_executor.sessions.records import (
    RESULT_PREVIEW_CHARS,
    TURN_QUEUED,
    TURN_RUNNING,
    Message,
    Session,
    Turn,
    TurnKind,
    new_message_id,
    new_session_id,
)
from cc_executor.sessions.store import SessionStore, SqliteSessionStore
from cc_executor.sessions.temp import spawn_temp
from cc_executor.tasks import check_cwd, spec_for

log = logging.getLogger(__name__)

WATCH_DEFAULT_MAX_TURNS = 10
"""Continuations watch mode sends when `max_turns` is not given: never unbounded."""


def message_prompt(sender: Session, message: str) -> str:
    """The turn a message from another session becomes: it says who it is from."""
    return (
        f"[Message from cc-executor session {sender.label}]\n\n{message}\n\n"
        f"(To answer, send a message to session {sender.session_id}.)"
    )


@dataclass(eq=False)
class TurnHandle:
    """A queued turn, with futures that resolve when its task started and when it ended."""

    turn: Turn
    started: asyncio.Future[None]
    done: asyncio.Future[Turn]


@dataclass(eq=False)
class _Live:
    """Runtime state of a session: its queue and the worker running it (none when idle)."""

    queue: deque[TurnHandle] = field(default_factory=deque)
    current: TurnHandle | None = None
    worker: asyncio.Task[None] | None = None
    killed: bool = False


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


class SessionManager:
    """Creates sessions, queues and runs their turns on the Engine, persists everything."""

    def __init__(
        self, engine: Engine, settings: Settings, store: SessionStore | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.store: SessionStore = store or SqliteSessionStore(
            settings.data_dir / "sessions.sqlite3"
        )
        self._sessions: dict[str, Session] = {}
        self._live: dict[str, _Live] = {}
        self._closing = False
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store, load every session, settle turns a stopped service left open."""
        await self.store.open()
        for s in await self.store.sessions():
            self._sessions[s.session_id] = s
        now = time.time()
        for t in await self.store.open_turns():
            if t.task_id is None:
                t.status = "cancelled"
                t.error = "the service stopped before this turn ran"
            else:
                with contextlib.suppress(ProtocolError):  # TASK_NOT_FOUND: a lost record
                    self.apply_record(t, await self.engine.get(t.task_id))
                if t.status in (TURN_QUEUED, TURN_RUNNING):
                    t.status = "lost"
                    t.error = "the service stopped while this turn was running"
            t.ended_at = t.ended_at or now
            self.store.save_turn(t)
        for s in self._sessions.values():
            if s.temp and s.is_active:
                s.status, s.ended_at = "ended", now
                s.end_reason = "the service stopped before the temporary session finished"
                self.store.save_session(s)
            elif s.status == "running":
                s.status = "idle"
                self.store.save_session(s)
        self._started = True

    async def stop(self) -> None:
        """Cancel running turns (their groups end), drop queued ones, close the store."""
        if self._closing:
            return
        self._closing = True
        cancels = []
        for sid, live in self._live.items():
            s = self._sessions[sid]
            self._drop_queue(s, live, "the service stopped before this turn ran")
            task_id = live.current.turn.task_id if live.current else None
            if task_id is not None:
                cancels.append(self._cancel_task(task_id))
        if cancels:
            await asyncio.gather(*cancels)
        workers = [live.worker for live in self._live.values() if live.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=self.settings.kill_grace_seconds + 5)
        if self._started:
            await self.store.flush()
            await self.store.close()

    def check_open(self) -> None:
        if self._closing or not self._started:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the session manager is not running")

    def add(self, s: Session) -> None:
        """Record a new session (create and temp sessions)."""
        self._sessions[s.session_id] = s
        self.store.save_session(s)
        self._notify(s)

    def end(self, s: Session, reason: str) -> None:
        """Mark a session ended. Its queue must be empty and no turn running."""
        s.status = "ended"
        s.ended_at = s.updated_at = time.time()
        s.end_reason = reason
        self.store.save_session(s)
        self._live.pop(s.session_id, None)
        self._notify(s)

    # ------------------------------------------------------------------ lookups

    def resolve(self, ref: str, param: str = "session_id") -> Session:
        """A session by id, or by name (the active one; else the newest ended one)."""
        s = self._sessions.get(ref)
        if s is not None:
            return s
        named = [x for x in self._sessions.values() if x.name == ref]
        active = [x for x in named if x.is_active]
        if len(active) == 1:
            return active[0]
        if len(active) > 1:  # only possible for temp sessions, whose names may repeat
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"{len(active)} active sessions are named {ref!r}: use a session id",
                {param: ref, "session_ids": [x.session_id for x in active]},
            )
        if named:
            return max(named, key=lambda x: x.created_at)
        raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"session {ref!r} not found", {param: ref})

    def describe(self, s: Session) -> dict[str, Any]:
        """A session's public record, with its queue and current turn."""
        d = s.to_dict()
        live = self._live.get(s.session_id)
        cur = live.current if live else None
        d["queued"] = len(live.queue) if live else 0
        d["current_turn"] = cur.turn.turn if cur else None
        d["current_task_id"] = cur.turn.task_id if cur else None
        return d

    def list_sessions(self, include_ended: bool = False) -> dict[str, Any]:
        every = sorted(self._sessions.values(), key=lambda s: s.created_at)
        shown = [s for s in every if include_ended or s.is_active]
        return {
            "sessions": [self.describe(s) for s in shown],
            "total": len(every),
            "active": sum(1 for s in every if s.is_active),
        }

    def counts(self) -> dict[str, int]:
        """Session counts for status pages: total, active, running, idle, ended."""
        c = Counter(s.status for s in self._sessions.values())
        return {
            "total": len(self._sessions),
            "active": c["idle"] + c["running"],
            "running": c["running"],
            "idle": c["idle"],
            "ended": c["ended"],
        }

    async def logs(self, ref: str, lines: int = 50) -> dict[str, Any]:
        """The session's turns and messages (both directions), newest last."""
        s = self.resolve(ref)
        sid = s.session_id
        entries: list[tuple[float, int, dict[str, Any]]] = []
        for t in await self.store.turns(sid, lines):
            entries.append((t.queued_at, 1, {"type": "turn", "at": t.queued_at, **t.to_dict()}))
        for m in await self.store.messages(sid, lines):
            d = {
                "type": "message",
                "at": m.created_at,
                "direction": "out" if m.from_session == sid else "in",
                **m.to_dict(),
            }
            entries.append((m.created_at, 0, d))
        entries.sort(key=lambda e: (e[0], e[1]))
        shown = [e[2] for e in entries[-lines:]]
        return {"session_id": sid, "name": s.name, "status": s.status, "entries": shown}

    # ------------------------------------------------------------------ create / send

    async def create(self, p: SessionCreateParams) -> dict[str, Any]:
        self.check_open()
        cwd = check_cwd(p.working_dir)
        assert cwd is not None
        if p.name is not None:
            if p.name in self._sessions:
                raise ProtocolError(ErrorCode.INVALID_PARAMS, "a session name may not be an id")
            taken = [x for x in self._sessions.values() if x.is_active and x.name == p.name]
            if taken:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS,
                    f"an active session is already named {p.name!r}",
                    {"name": p.name, "session_id": taken[0].session_id},
                )
        max_turns = p.max_turns
        if p.watch_mode and max_turns is None:
            max_turns = WATCH_DEFAULT_MAX_TURNS
        s = Session(
            session_id=new_session_id(),
            working_dir=cwd,
            name=p.name,
            model=p.model,
            allowed_tools=p.allowed_tools,
            disallowed_tools=p.disallowed_tools,
            permission_mode=p.permission_mode,
            skip_permissions=p.skip_permissions,
            append_system_prompt=p.append_system_prompt,
            mcp_config=p.mcp_config,
            watch_mode=p.watch_mode,
            max_turns=max_turns,
            continuation_prompt=p.continuation_prompt,
            turn_timeout=p.turn_timeout,
        )
        spec_for(self._claude_params(s, "check", 1), self.settings)  # allow-list, now
        self.add(s)
        log.info("session created", extra={"session_id": s.session_id, "cwd": cwd})
        d = self.describe(s)
        if p.prompt is not None:
            d["first_turn"] = await self.send(s.session_id, p.prompt)
            d.update({k: v for k, v in self.describe(s).items() if k != "first_turn"})
        return d

    async def send(
        self,
        ref: str,
        message: str,
        *,
        wait: bool = False,
        from_session: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Queue one turn; reply with its task id once it starts (now, if the session is
        idle), or with its result when `wait` (waiting at most `timeout` seconds)."""
        self.check_open()
        s = self.resolve(ref)
        if not s.is_active:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"session {s.label} has ended: create a new session",
                {"session_id": s.session_id, "status": s.status},
            )
        extra: dict[str, Any] = {}
        if from_session is None:
            p = self.enqueue(s, message, message, "message")
        else:
            sender = self.resolve(from_session, "from_session")
            msg = Message(new_message_id(), sender.session_id, s.session_id, message, s.turns + 1)
            p = self.enqueue(
                s, message_prompt(sender, message), message, "message", sender.session_id
            )
            sender.messages_out += 1
            s.messages_in += 1
            self.store.save_message(msg)
            self.store.save_session(sender)
            self.store.save_session(s)
            extra["message_id"] = msg.message_id
        return {**await self._reply(s, p, wait, timeout), **extra}

    async def _reply(
        self, s: Session, p: TurnHandle, wait: bool, timeout: float | None
    ) -> dict[str, Any]:
        live = self._live.get(s.session_id)
        first_in_line = live is not None and live.current is None and live.queue[0] is p
        timed_out = False
        if wait:
            try:
                await asyncio.wait_for(asyncio.shield(p.done), timeout)
            except TimeoutError:
                timed_out = True
        elif first_in_line:
            await asyncio.shield(p.started)
        reply = self._turn_reply(p.turn, with_result=wait)
        if timed_out:
            reply["wait_timed_out"] = True
        if p.turn.status == TURN_QUEUED and live is not None:
            with contextlib.suppress(ValueError):
                reply["position"] = list(live.queue).index(p) + 1
        return reply

    @staticmethod
    def _turn_reply(t: Turn, with_result: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "session_id": t.session_id,
            "turn": t.turn,
            "task_id": t.task_id,
            "status": t.status,
        }
        if t.error and not t.task_id:
            d["error"] = t.error  # it could not start: say why even without wait
        if with_result:
            for key in ("result", "claude_session_id", "error", "error_kind", "cost_usd"):
                d[key] = getattr(t, key)
        return d

    # ------------------------------------------------------------------ the turn queue

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
        live = self._live.setdefault(s.session_id, _Live())
        if live.killed or self._closing or not s.is_active:
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
        live.queue.append(p)
        s.status = "running"
        s.updated_at = time.time()
        self.store.save_turn(t)
        self.store.save_session(s)
        if live.worker is None:
            live.worker = loop.create_task(self._drain(s, live), name=f"session-{s.session_id}")
        self._notify(s)
        return p

    async def _drain(self, s: Session, live: _Live) -> None:
        """The session's worker: run queued turns one at a time, in order, then exit."""
        try:
            while live.queue and not live.killed and not self._closing:
                p = live.queue.popleft()
                live.current = p
                try:
                    await self._run_turn(s, live, p)
                except Exception as exc:
                    log.exception("session %s turn %d failed", s.session_id, p.turn.turn)
                    self._close_turn(s, live, p, "failed", f"internal error: {exc!r}")
                finally:
                    live.current = None
        finally:
            live.worker = None

    def _claude_params(self, s: Session, prompt: str, turn: int) -> ExecuteClaudeParams:
        return ExecuteClaudeParams.model_validate(
            {
                "prompt": prompt,
                "model": s.model,
                "allowed_tools": s.allowed_tools,
                "disallowed_tools": s.disallowed_tools,
                "permission_mode": s.permission_mode,
                "skip_permissions": s.skip_permissions,
                "append_system_prompt": s.append_system_prompt,
                "mcp_config": s.mcp_config,
                "resume": s.claude_session_id,
                "cwd": s.working_dir,
                "timeout": s.turn_timeout,
                "env": {
                    "CC_EXECUTOR_SESSION_ID": s.session_id,
                    "CC_EXECUTOR_SESSION_NAME": s.name or "",
                },
                "name": f"session {s.name or s.session_id} turn {turn}",
            }
        )

    async def _run_turn(self, s: Session, live: _Live, p: TurnHandle) -> None:
        t = p.turn
        if live.killed or self._closing:
            self._close_turn(s, live, p, "cancelled", "the session stopped before this turn ran")
            return
        t.resumed = s.claude_session_id if t.command is None else None
        try:
            if t.command is not None:  # a temp session's plain command
                params = ExecuteParams(command=t.command, cwd=s.working_dir, timeout=s.turn_timeout)
                spec = spec_for(params, self.settings)
                spec.name = f"temp session {s.session_id}"
            else:
                spec = spec_for(self._claude_params(s, t.prompt, t.turn), self.settings)
            spec.extra.update({"session_id": s.session_id, "session_turn": t.turn})
            rec = await self.engine.execute(spec)
        except ProtocolError as exc:
            self._close_turn(s, live, p, "failed", f"the turn could not start: {exc.message}")
            return
        t.task_id = rec.task_id
        t.status = TURN_QUEUED if str(rec.status) == TURN_QUEUED else TURN_RUNNING
        t.started_at = rec.started_at
        s.last_turn, s.last_task_id = t.turn, t.task_id
        self.store.save_turn(t)
        self.store.save_session(s)
        self._notify(s)
        _resolve(p.started, None)
        if live.killed or self._closing:
            await self._cancel_task(rec.task_id)
        final = await self.engine.wait(rec.task_id)
        self.apply_record(t, final)
        if t.claude_session_id:
            s.claude_session_id = t.claude_session_id
        self._maybe_continue(s, live, t)
        self._close_turn(s, live, p)

    @staticmethod
    def apply_record(t: Turn, rec: TaskRecord) -> None:
        t.status = str(rec.status)
        t.started_at = rec.started_at
        t.ended_at = rec.ended_at
        t.exit_code = rec.exit_code
        t.result = rec.extra.get("result")
        t.claude_session_id = rec.extra.get("claude_session_id") or t.claude_session_id
        t.error = rec.error
        t.error_kind = rec.extra.get("error_kind")
        t.cost_usd = rec.extra.get("total_cost_usd")

    def _maybe_continue(self, s: Session, live: _Live, t: Turn) -> None:
        """Watch mode: after a completed turn, queue the continuation prompt."""
        if not s.watch_mode or live.killed or self._closing or not s.is_active:
            return
        if t.status != "completed":
            s.watch_stopped = f"turn {t.turn} ended {t.status}"
            return
        if live.queue:
            return  # queued messages first; the last of them continues
        if s.max_turns is not None and s.watch_turns >= s.max_turns:
            s.watch_stopped = f"max_turns ({s.max_turns}) reached"
            return
        s.watch_turns += 1
        s.watch_stopped = None
        self.enqueue(s, s.continuation_prompt, s.continuation_prompt, "watch")

    def _close_turn(
        self,
        s: Session,
        live: _Live,
        p: TurnHandle,
        status: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record a turn's end, update its session, wake whoever waits for it."""
        t = p.turn
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
            s.status = "running" if live.queue else "idle"
        s.updated_at = time.time()
        self.store.save_turn(t)
        self.store.save_session(s)
        self._notify(s)
        _resolve(p.started, None)
        _resolve(p.done, t)

    def _drop_queue(self, s: Session, live: _Live, reason: str) -> list[int]:
        dropped = list(live.queue)
        live.queue.clear()
        for p in dropped:
            self._close_turn(s, live, p, "cancelled", reason)
        return [p.turn.turn for p in dropped]

    async def _cancel_task(self, task_id: str) -> None:
        """CANCEL a turn's task; returns once its process group is gone."""
        with contextlib.suppress(ProtocolError):  # it ended on its own meanwhile
            await self.engine.control(task_id, Action.CANCEL)

    async def cancel_turn(self, s: Session, p: TurnHandle, reason: str) -> None:
        live = self._live.get(s.session_id)
        if live is not None and p in live.queue:
            live.queue.remove(p)
            self._close_turn(s, live, p, "cancelled", reason)
            return
        await asyncio.shield(p.started)
        if p.turn.task_id is not None:
            await self._cancel_task(p.turn.task_id)
        await asyncio.shield(p.done)

    def _notify(self, s: Session) -> None:
        """`session.updated` to the engine's listeners (dashboards)."""
        if not self.engine.listeners:
            return
        live = self._live.get(s.session_id)
        cur = live.current if live else None
        ev = Event(
            Notification.SESSION_UPDATED,
            {
                "task_id": "",  # not a task event: clients route it by session_id
                "session_id": s.session_id,
                "name": s.name,
                "status": s.status,
                "turns": s.turns,
                "current_task_id": cur.turn.task_id if cur else None,
                "queued": len(live.queue) if live else 0,
            },
        )
        for sub in tuple(self.engine.listeners):
            sub.push(ev)

    # ------------------------------------------------------------------ kill

    async def kill(self, ref: str) -> dict[str, Any]:
        """Cancel the running turn (its group ends), drop the queue, mark the session ended."""
        s = self.resolve(ref)
        reply: dict[str, Any] = {"session_id": s.session_id, "status": "ended"}
        if not s.is_active:
            return {**reply, "killed": False, "message": f"session {s.label} had already ended"}
        live = self._live.setdefault(s.session_id, _Live())
        live.killed = True
        dropped = self._drop_queue(s, live, "the session was killed before this turn ran")
        cancelled = live.current.turn.task_id if live.current else None
        if cancelled is not None:
            await self._cancel_task(cancelled)
        if live.worker is not None:
            await asyncio.shield(live.worker)
        self.end(s, "killed")
        log.info("session killed", extra={"session_id": s.session_id})
        return {
            **reply,
            "killed": True,
            "cancelled_task_id": cancelled,
            "dropped_turns": dropped,
            "message": f"session {s.label} ended",
        }

    # ------------------------------------------------------------------ more than one turn

    async def spawn_temp(self, p: SessionSpawnTempParams) -> dict[str, Any]:
        """Run one command or prompt in a throw-away session (see `sessions.temp`)."""
        return await spawn_temp(self, p)

    async def coordinate(self, p: SessionCoordinateParams) -> dict[str, Any]:
        """Subtasks to several sessions in parallel (see `sessions.coordinate`)."""
        return await coordinate(self, p)
