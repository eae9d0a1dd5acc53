"""Session, turn and message records: what the session manager knows, persisted and sent.

A session is a named Claude conversation; each turn is one `execute_claude` task that
resumes it; a message is a turn one session sent another. Records are plain dataclasses:
the store keeps them as JSON, the handlers send their `to_dict()`. A session keeps the
Claude options of its turns as one `ClaudeOptions` (`claude_options` in its dict).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from cc_executor.protocol import ClaudeOptions

SessionStatus = Literal["idle", "running", "ended"]
"""`idle`: waiting for a message; `running`: a turn runs or waits in its queue; `ended`."""

TurnKind = Literal["message", "watch", "coordinate", "command"]
"""Why a turn ran: a sent message, a watch-mode continuation, a coordinated subtask, or (temp
sessions only) a plain command."""

TURN_QUEUED = "queued"
TURN_RUNNING = "running"
TURN_OPEN = frozenset({TURN_QUEUED, TURN_RUNNING})
"""Turn statuses that are not final; final ones are the task statuses (`completed`, ...)."""

RESULT_PREVIEW_CHARS = 2000


def new_session_id() -> str:
    return "s-" + uuid.uuid4().hex[:12]


def new_message_id() -> str:
    return "m-" + uuid.uuid4().hex[:12]


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


LEGACY_CLAUDE_FIELDS = (
    "model",
    "allowed_tools",
    "disallowed_tools",
    "permission_mode",
    "skip_permissions",
    "append_system_prompt",
    "mcp_config",
)
"""The Claude options that session records stored before `claude_options`, as top-level
fields (their `max_turns` was watch mode's, as it still is)."""


@dataclass(slots=True)
class Session:
    session_id: str
    working_dir: str
    name: str | None = None
    claude_options: ClaudeOptions = field(default_factory=ClaudeOptions)  # of every turn
    watch_mode: bool = False
    max_turns: int | None = None  # watch mode: at most this many continuations
    continuation_prompt: str = "continue"
    turn_timeout: float | None = None
    temp: bool = False
    hot: bool = False  # its turns go to one live claude process (sessions/hot.py)
    status: SessionStatus = "idle"
    claude_session_id: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: str | None = None
    turns: int = 0  # turns ever queued; the next turn is number turns + 1
    watch_turns: int = 0  # continuation turns sent by watch mode
    watch_stopped: str | None = None  # why watch mode stopped sending continuations
    last_turn: int | None = None
    last_task_id: str | None = None
    last_status: str | None = None
    last_result: str | None = None
    messages_in: int = 0
    messages_out: int = 0
    workspace: dict[str, Any] | None = None  # its git worktree (workspace "worktree")

    @property
    def is_active(self) -> bool:
        return self.status != "ended"

    @property
    def run_dir(self) -> str:
        """Where its turns run: its worktree's copy of working_dir, or working_dir."""
        return str(self.workspace["cwd"]) if self.workspace else self.working_dir

    @property
    def label(self) -> str:
        return f"{self.session_id} ({self.name})" if self.name else self.session_id

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["claude_options"] = self.claude_options.model_dump()
        d["is_active"] = self.is_active
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """A session from its dict, also one stored before `claude_options` existed."""
        data = dict(data)
        options = data.get("claude_options")
        if options is None:
            options = {k: data.pop(k) for k in LEGACY_CLAUDE_FIELDS if k in data}
        data["claude_options"] = ClaudeOptions.model_validate(options)
        s: Session = _from_dict(cls, data)
        return s


@dataclass(slots=True)
class Turn:
    session_id: str
    turn: int
    prompt: str  # what Claude was given
    message: str  # what the sender wrote (the prompt without the "from" header)
    kind: TurnKind = "message"
    from_session: str | None = None
    coordination_id: str | None = None
    command: str | list[str] | None = None  # temp sessions: a plain command, not Claude
    status: str = TURN_QUEUED
    task_id: str | None = None
    resumed: str | None = None  # the Claude session id passed to --resume
    claude_session_id: str | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    result: str | None = None
    error: str | None = None
    error_kind: str | None = None
    cost_usd: float | None = None
    exit_code: int | None = None
    attempts: int | None = None  # with retries: how many attempts it took (task_id the last)
    hot: bool = False  # ran in the session's hot process: task_id is that process's task
    output_from: int | None = None  # hot: the turn's slice of that task's stdout log
    output_to: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status in TURN_OPEN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        t: Turn = _from_dict(cls, data)
        return t


@dataclass(slots=True)
class Message:
    """A message one session sent another; listed in the logs of both."""

    message_id: str
    from_session: str
    to_session: str
    text: str
    turn: int  # the target's turn that delivers it
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        m: Message = _from_dict(cls, data)
        return m
