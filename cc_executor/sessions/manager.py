"""The session manager: persistent Claude conversations driven through the Engine.

A session is a named conversation in a working directory. Each turn is an ordinary
`execute_claude` task (same task ids, control, output and records as any other): the first
turn starts the conversation and records its Claude session id, later turns pass
`--resume <it>`. `TurnQueues` (sessions/turns.py) runs each session's turns in order; the
manager keeps the sessions: create, look up, send, kill, reconcile after a restart, and
announce changes (`session.updated`). It never spawns anything itself.

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
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from cc_executor.claude.retry import ClaudeRetries
from cc_executor.config import Settings
from cc_executor.engine import Engine
from cc_executor.protocol import ErrorCode, Notification, ProtocolError, TaskStatus
from cc_executor.protocol_families import (
    SessionCoordinateParams,
    SessionCreateParams,
    SessionSpawnTempParams,
)
from cc_executor.sessions.coordinate import coordinate
from cc_executor.sessions.records import (
    TURN_QUEUED,
    TURN_RUNNING,
    Message,
    Session,
    Turn,
    new_message_id,
    new_session_id,
)
from cc_executor.sessions.store import SessionStore, SqliteSessionStore
from cc_executor.sessions.temp import spawn_temp
from cc_executor.sessions.turns import TurnHandle, TurnQueues, apply_record, turn_params
from cc_executor.tasks import check_cwd, spec_for

log = logging.getLogger(__name__)

WATCH_DEFAULT_MAX_TURNS = 10
"""Continuations watch mode sends when `max_turns` is not given: never unbounded."""


def message_prompt(sender_id: str, sender_label: str, message: str) -> str:
    """The turn a message from another session becomes: it says who it is from."""
    return (
        f"[Message from cc-executor session {sender_label}]\n\n{message}\n\n"
        f"(To answer, send a message to session {sender_id}.)"
    )


# A session of another node, found by reference: (session id, label) or None (cluster mode).
FindElsewhere = Callable[[str], Awaitable[tuple[str, str] | None]]


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
        # Later attempts of Claude runs with `retries`: session turns and execute_claude
        self.retries = ClaudeRetries(engine, settings)
        self.turns = TurnQueues(engine, settings, self.store, self._notify, self.retries)
        self._closing = False
        self.find_elsewhere: FindElsewhere | None = None  # set by a cluster node
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
                t.status = TaskStatus.CANCELLED
                t.error = "the service stopped before this turn ran"
            else:
                with contextlib.suppress(ProtocolError):  # TASK_NOT_FOUND: a lost record
                    apply_record(t, await self.engine.get(t.task_id))
                if t.status in (TURN_QUEUED, TURN_RUNNING):
                    t.status = TaskStatus.LOST
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
        await self.turns.stop()
        await self.retries.stop()
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
        self.turns.forget(s.session_id)
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
        cur = self.turns.current(s.session_id)
        d["queued"] = self.turns.queued(s.session_id)
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
            claude_options=p.claude_options(),
            watch_mode=p.watch_mode,
            max_turns=max_turns,
            continuation_prompt=p.continuation_prompt,
            turn_timeout=p.turn_timeout,
            hot=self.settings.hot_sessions if p.hot is None else p.hot,
        )
        spec_for(turn_params(s, "check", 1), self.settings)  # allow-list and argv, now
        if p.workspace == "worktree":  # one worktree for all its turns (docs/workspaces.md)
            ws = await self.engine.workspaces.create(
                "session",
                s.session_id,
                name=p.name,
                cwd=cwd,
                base_ref=p.base_ref,
                keep=p.workspace_keep,
            )
            s.workspace = ws.public()
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
            p = self.turns.enqueue(s, message, message, "message")
        else:
            sender = await self._sender(from_session)
            sender_id, label = (
                (sender.session_id, sender.label) if isinstance(sender, Session) else sender
            )
            msg = Message(new_message_id(), sender_id, s.session_id, message, s.turns + 1)
            prompt = message_prompt(sender_id, label, message)
            p = self.turns.enqueue(s, prompt, message, "message", sender_id)
            if isinstance(sender, Session):  # (one of another node counts on its own node)
                sender.messages_out += 1
                self.store.save_session(sender)
            s.messages_in += 1
            self.store.save_message(msg)
            self.store.save_session(s)
            extra["message_id"] = msg.message_id
        reply = {**await self._reply(s, p, wait, timeout), **extra}
        # An acknowledged turn is on disk before the reply: a crash right after it finds
        # the turn (and settles it) instead of losing it.
        await self.store.flush()
        return reply

    async def _sender(self, ref: str) -> Session | tuple[str, str]:
        """The session a message is from: one of ours, or (id, label) of another node's."""
        try:
            return self.resolve(ref, "from_session")
        except ProtocolError as exc:
            if exc.code != ErrorCode.SESSION_NOT_FOUND or self.find_elsewhere is None:
                raise
            found = await self.find_elsewhere(ref)
            if found is None:
                raise
            return found

    async def _reply(
        self, s: Session, p: TurnHandle, wait: bool, timeout: float | None
    ) -> dict[str, Any]:
        first_in_line = self.turns.is_next(s.session_id, p)
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
        position = self.turns.position(s.session_id, p)
        if p.turn.status == TURN_QUEUED and position is not None:
            reply["position"] = position
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

    def _notify(self, s: Session) -> None:
        """`session.updated` to listeners (dashboards): on the bus, so in a cluster the
        listeners of every node get it."""
        cur = self.turns.current(s.session_id)
        self.engine.bus.publish(
            Notification.SESSION_UPDATED,
            {
                "task_id": "",  # not a task event: clients route it by session_id
                "session_id": s.session_id,
                "name": s.name,
                "status": s.status,
                "turns": s.turns,
                "current_task_id": cur.turn.task_id if cur else None,
                "queued": self.turns.queued(s.session_id),
            },
        )

    # ------------------------------------------------------------------ kill

    async def kill(self, ref: str) -> dict[str, Any]:
        """Cancel the running turn (its group ends), drop the queue, mark the session ended."""
        s = self.resolve(ref)
        reply: dict[str, Any] = {"session_id": s.session_id, "status": "ended"}
        if not s.is_active:
            return {**reply, "killed": False, "message": f"session {s.label} had already ended"}
        cancelled, dropped = await self.turns.kill(s)
        if s.workspace:  # no turn runs any more: keep or remove its worktree
            ws = await self.engine.workspaces.finish_session(s.session_id)
            if ws is not None:
                s.workspace = ws.public()
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
