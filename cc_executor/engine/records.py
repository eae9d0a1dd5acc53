"""The task record: what the engine knows of one task, persisted and sent to clients."""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from cc_executor.protocol import TaskStatus

TaskKind = Literal["command", "claude"]

COMPLETED_RESULT_CHARS = 2000


def new_task_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    command: str | list[str]
    argv: list[str]
    kind: TaskKind = "command"
    name: str | None = None
    cwd: str | None = None
    status: TaskStatus = TaskStatus.QUEUED
    pid: int | None = None
    pgid: int | None = None
    start_ticks: int | None = None  # /proc/<pid>/stat starttime: tells a reused pid apart
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    timeout: float | None = None
    idle_timeout: float | None = None
    error: str | None = None
    node: str | None = None  # the engine that runs or ran it (None while queued)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.time()
        return round(end - self.started_at, 6)

    def to_dict(self) -> dict[str, Any]:
        """The public shape of a task (the `status` result and bridge results).

        Every field but `start_ticks`, then `duration_s`, then the `extra` keys that do not
        shadow a field. The record's own lists and dicts are copied (the caller may keep
        or change what it gets; the engine keeps changing a live record); `status` of 1000
        records is built from this, so nothing else is.
        """
        command = self.command
        d: dict[str, Any] = {
            "task_id": self.task_id,
            "command": command if isinstance(command, str) else list(command),
            "argv": list(self.argv),
            "kind": self.kind,
            "name": self.name,
            "cwd": self.cwd,
            "status": str(self.status),
            "pid": self.pid,
            "pgid": self.pgid,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "error": self.error,
            "node": self.node,
            "duration_s": self.duration_s,
        }
        for k, v in self.extra.items():
            if k not in d:
                d[k] = v if isinstance(v, _SCALARS) else _copy(v)
        return d

    def completed_params(self) -> dict[str, Any]:
        """Params of the `process.completed` notification."""
        d: dict[str, Any] = {
            "task_id": self.task_id,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "duration_s": self.duration_s,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
        }
        if self.error:
            d["error"] = self.error
        # retried_by / attempts (issue 16): a follower goes on to the next attempt, or stops
        for key in (
            "error_kind",
            "result",
            "claude_session_id",
            "is_error",
            "verification",
            "retried_by",
            "attempts",
        ):
            if key in self.extra:
                d[key] = self.extra[key]
        result = d.get("result")
        if isinstance(result, str) and len(result) > COMPLETED_RESULT_CHARS:
            # Completion events are never dropped: keep them small; `status` has it all.
            d["result"] = result[:COMPLETED_RESULT_CHARS]
            d["result_truncated"] = True
        return d


_SCALARS = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    """A deep copy of a JSON-like value (what `dataclasses.asdict` gave, for less)."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, _SCALARS) else _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(v if isinstance(v, _SCALARS) else _copy(v) for v in value)
    return copy.deepcopy(value)
