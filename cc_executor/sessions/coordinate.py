"""`session.coordinate`: one task split over several sessions, run in parallel.

Each session gets its subtask as a turn, with the shared description as context and the
other sessions named (by id and name only: their subtasks stay theirs). The call waits up
to the timeout and reports every session's status and result, and which timed out; those
turns keep running unless `cancel_on_timeout`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from cc_executor.protocol import ErrorCode, ProtocolError, SessionCoordinateParams, TaskStatus
from cc_executor.sessions.records import Session

if TYPE_CHECKING:
    from cc_executor.sessions.manager import SessionManager
    from cc_executor.sessions.turns import TurnHandle


def coordination_prompt(description: str, subtask: str, me: Session, others: list[Session]) -> str:
    """A coordinated subtask with the shared description as context."""
    team = ", ".join(o.label for o in others) or "none"
    return (
        f"You are cc-executor session {me.label}, one of {len(others) + 1} Claude sessions "
        f"working together on this task:\n\n{description}\n\nYour part:\n\n{subtask}\n\n"
        f"The other sessions: {team}. Message them with the cc_executor "
        "`send_message_to_session` tool if you need to agree on something."
    )


def _members(manager: SessionManager, p: SessionCoordinateParams) -> list[tuple[Session, str]]:
    """Resolve every assignment first: nothing is sent unless all sessions can take it."""
    members: list[tuple[Session, str]] = []
    missing: list[str] = []
    for ref, subtask in p.assignments.items():
        try:
            members.append((manager.resolve(ref), subtask))
        except ProtocolError as exc:
            if exc.code != ErrorCode.SESSION_NOT_FOUND:
                raise
            missing.append(ref)
    if missing:
        raise ProtocolError(
            ErrorCode.SESSION_NOT_FOUND,
            f"sessions not found: {', '.join(missing)}",
            {"missing": missing},
        )
    ended = [s.session_id for s, _ in members if not s.is_active]
    if ended:
        raise ProtocolError(
            ErrorCode.INVALID_STATE, f"sessions have ended: {', '.join(ended)}", {"ended": ended}
        )
    ids = [s.session_id for s, _ in members]
    if len(set(ids)) != len(ids):
        raise ProtocolError(
            ErrorCode.INVALID_PARAMS, "a session is named twice in assignments", {"ids": ids}
        )
    return members


async def coordinate(manager: SessionManager, p: SessionCoordinateParams) -> dict[str, Any]:
    manager.check_open()
    members = _members(manager, p)
    cid = "c-" + uuid.uuid4().hex[:12]
    began = time.time()
    sessions = [s for s, _ in members]
    handles: dict[str, tuple[Session, str, TurnHandle]] = {}
    for s, subtask in members:
        others = [o for o in sessions if o is not s]
        prompt = coordination_prompt(p.task_description, subtask, s, others)
        h = manager.turns.enqueue(s, prompt, subtask, "coordinate", coordination_id=cid)
        handles[s.session_id] = (s, subtask, h)
    await asyncio.wait([h.done for _, _, h in handles.values()], timeout=p.timeout)
    timed_out = [sid for sid, (_, _, h) in handles.items() if not h.done.done()]
    if p.cancel_on_timeout and timed_out:
        reason = f"coordination timed out after {p.timeout}s"
        await asyncio.gather(
            *(
                manager.turns.cancel_turn(handles[sid][0], handles[sid][2], reason)
                for sid in timed_out
            )
        )
    results: dict[str, dict[str, Any]] = {}
    for sid, (s, subtask, h) in handles.items():
        t = h.turn
        results[sid] = {
            "session_id": sid,
            "name": s.name,
            "subtask": subtask,
            "status": TaskStatus.TIMED_OUT if sid in timed_out else t.status,
            "turn_status": t.status,
            "turn": t.turn,
            "task_id": t.task_id,
            "result": t.result,
            "error": t.error,
            "error_kind": t.error_kind,
            "claude_session_id": t.claude_session_id,
        }
    counts = Counter(r["status"] for r in results.values())
    if timed_out:
        overall = TaskStatus.TIMED_OUT
    elif counts[TaskStatus.COMPLETED] == len(results):
        overall = TaskStatus.COMPLETED
    else:
        overall = TaskStatus.FAILED
    return {
        "coordination_id": cid,
        "task_description": p.task_description,
        "status": overall,
        "results": results,
        "timed_out": timed_out,
        "completed": counts[TaskStatus.COMPLETED],
        "failed": len(results) - counts[TaskStatus.COMPLETED] - len(timed_out),
        "timeout": p.timeout,
        "duration_s": round(time.time() - began, 6),
    }
