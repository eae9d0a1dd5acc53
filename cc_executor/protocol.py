"""The cc-executor wire contract, defined once.

Method names, their params (pydantic models: schema and validation; those of the
`session.*` and `workspace.*` families, and `PARAMS`, the map of every method to its
model, build on these in `protocol_families.py`), notification names, task statuses and
application error codes. The service, the Python client, the CLI and the
MCP bridge all import from here; the dashboard reads the names as `GET /protocol.json`
(`protocol_description()`); docs/protocol.md documents the same names (tests/test_protocol.py
checks both). `ClaudeOptions` declares each Claude option once for `execute_claude`,
`session.create`, the MCP tools and the CLI; `WorkspaceOptions` does the same for where a
task runs (its cwd, or a git worktree of its own).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cc_executor.gitnames import BRANCH_PREFIX, branch_name_problem, ref_problem

PROTOCOL_VERSION = "1"


class Method(StrEnum):
    EXECUTE = "execute"
    EXECUTE_CLAUDE = "execute_claude"
    CONTROL = "control"
    STATUS = "status"
    OUTPUT = "output"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    HOOK_STATUS = "hook_status"
    PING = "ping"
    LISTEN = "listen"
    SESSION_CREATE = "session.create"
    SESSION_SEND = "session.send"
    SESSION_STATUS = "session.status"
    SESSION_LIST = "session.list"
    SESSION_LOGS = "session.logs"
    SESSION_KILL = "session.kill"
    SESSION_SPAWN_TEMP = "session.spawn_temp"
    SESSION_COORDINATE = "session.coordinate"
    WORKSPACE_LIST = "workspace.list"
    WORKSPACE_DIFF = "workspace.diff"
    WORKSPACE_REMOVE = "workspace.remove"


READ_ONLY_METHODS = frozenset(
    {
        Method.STATUS,
        Method.OUTPUT,
        Method.SUBSCRIBE,
        Method.UNSUBSCRIBE,
        Method.HOOK_STATUS,
        Method.PING,
        Method.LISTEN,
        Method.SESSION_STATUS,
        Method.SESSION_LIST,
        Method.SESSION_LOGS,
    }
)
"""Methods that start and change nothing: sending one twice is harmless."""


class Notification(StrEnum):
    STARTED = "process.started"
    OUTPUT = "process.output"
    DROPPED = "process.dropped"
    PAUSED = "process.paused"
    RESUMED = "process.resumed"
    COMPLETED = "process.completed"
    ERROR = "process.error"
    CLAUDE_EVENT = "claude.event"
    SESSION_UPDATED = "session.updated"


# A connection opened with this query (`/ws?output=binary`) gets every `process.output` as
# one binary WebSocket frame: the notification's JSON without `data` and `encoding`, a
# newline (JSON text never holds a raw one), then the chunk's bytes as the process wrote
# them. Nothing else changes; the Python client asks for it by default.
BINARY_OUTPUT_QUERY = ("output", "binary")


def split_binary_output(frame: bytes) -> tuple[bytes, bytes]:
    """A binary `process.output` frame as (its notification's JSON, the output bytes)."""
    cut = frame.index(b"\n")
    return frame[:cut], frame[cut + 1 :]


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.LOST,
    }
)


ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.PAUSED})
"""Tasks that are not over yet: listings can put them first (`status` `active_first`)."""


class Action(StrEnum):
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    CANCEL = "CANCEL"


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class ErrorCode(IntEnum):
    """JSON-RPC 2.0 standard codes, then cc-executor's own in -32000..-32099."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    SERVICE_UNAVAILABLE = -32000  # the bridge: the service could not be reached
    TASK_NOT_FOUND = -32001
    COMMAND_NOT_ALLOWED = -32002
    INVALID_STATE = -32003
    CAPACITY_EXCEEDED = -32004
    SPAWN_FAILED = -32005
    HOOK_REJECTED = -32006
    RATE_LIMITED = -32007
    MESSAGE_TOO_LARGE = -32008
    OUTPUT_UNAVAILABLE = -32009
    SESSION_NOT_FOUND = -32010
    WORKSPACE_FAILED = -32011  # git could not create or remove a worktree (data: git's words)


class ProtocolError(Exception):
    """An error that becomes a JSON-RPC error object: raise it from any handler."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


# --------------------------------------------------------------------------- params

_Strict = ConfigDict(extra="forbid")
PositiveSeconds = Annotated[float, Field(gt=0)]


NODE_PIN_DOC = "Cluster mode: run it on this node only (a node id); default: any free node."


# --------------------------------------------------------------------------- workspaces
# A task (or a session, for all its turns) may run in a git worktree of its own, on a new
# branch `ccx/<name or id>` (docs/workspaces.md). The names reach git's argv, so they are
# checked where the request is parsed (`gitnames`): a clear error before anything runs.

WorkspaceMode = Literal["cwd", "worktree"]
WorkspaceKeep = Literal["always", "on_change", "never"]


class WorkspaceOptions(BaseModel):
    """Where a task runs: in `cwd` itself, or in a git worktree of the repository holding
    it, on a branch of its own. Shared by `execute`, `execute_claude` and `session.create`
    (a session keeps one worktree for all its turns)."""

    model_config = _Strict

    workspace: WorkspaceMode = Field(
        default="cwd",
        description='"cwd" (default): run in cwd. "worktree": run in a new git worktree of the '
        "repository holding cwd, on a new branch ccx/<name or id> from HEAD (or base_ref), so "
        "parallel agents never edit the same files; the record gains what changed.",
    )
    workspace_keep: WorkspaceKeep = Field(
        default="on_change",
        description='With workspace "worktree", when it ends: "on_change" (default) removes a '
        'worktree that changed nothing, "always" keeps it, "never" removes it (a branch '
        "holding commits is never deleted).",
    )
    base_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description='With workspace "worktree": the commit to branch from (a branch, tag or '
        "commit id; default HEAD).",
    )

    # Field validators, not one model validator, so that each error names its field (the
    # CLI says `--name: ...`). Fields are validated in order and `workspace` comes first:
    # `info.data` holds it (unless it was itself invalid: then that is the error).

    @field_validator("workspace_keep")
    @classmethod
    def _keep_needs_worktree(cls, v: WorkspaceKeep, info: ValidationInfo) -> WorkspaceKeep:
        # Given at its default, it says nothing: allowed.
        if v != "on_change" and info.data.get("workspace") == "cwd":
            raise ValueError('workspace_keep needs workspace "worktree"')
        return v

    @field_validator("base_ref")
    @classmethod
    def _one_commit(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("workspace") == "cwd":
            raise ValueError('base_ref needs workspace "worktree"')
        problem = ref_problem(v)
        if problem:
            raise ValueError(f"base_ref {v!r} cannot be used: {problem}")
        return v

    @field_validator("name", check_fields=False)  # each request model declares its name
    @classmethod
    def _branch_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        problem = None if v is None else branch_name_problem(v)
        if problem and info.data.get("workspace") == "worktree":
            raise ValueError(f"name {v!r} cannot name the branch {BRANCH_PREFIX}{v}: {problem}")
        return v


class ExecuteParams(WorkspaceOptions):
    """`execute`: run a command. A string goes through the configured shell; a list is exec'd."""

    model_config = _Strict

    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout: PositiveSeconds | None = None
    idle_timeout: PositiveSeconds | None = None
    name: str | None = Field(default=None, max_length=256)
    node: str | None = Field(default=None, min_length=1, description=NODE_PIN_DOC)

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("command must not be empty")
        elif not v or not v[0]:
            raise ValueError("command list must name a program first")
        if "\x00" in (v if isinstance(v, str) else "".join(v)):
            raise ValueError("command must not contain NUL bytes")
        return v


PermissionMode = Literal["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk", "auto"]
"""The `claude --permission-mode` values."""


RetryKind = Literal["rate_limit", "overloaded", "api_error", "network"]
"""The error kinds (`claude/errors.py`) a Claude run may be retried on: transient ones."""

RETRY_KINDS: tuple[str, ...] = get_args(RetryKind)


class ClaudeOptions(BaseModel):
    """How a `claude -p` run behaves: shared by `execute_claude`, `session.create` (for every
    turn), the MCP tools and the CLI, so each option is declared and described once. The
    descriptions are what agents (MCP schemas) and people (`--help`) read."""

    model_config = _Strict

    model: str | None = Field(default=None, description="Model alias (e.g. sonnet) or full name.")
    allowed_tools: list[str] | None = Field(
        default=None,
        description="Tools it may use without asking, e.g. Read, Edit, Bash(git log:*), "
        "mcp__cc_executor. In a headless run a tool that needs a permission prompt is denied.",
    )
    disallowed_tools: list[str] | None = Field(default=None, description="Tools it must not use.")
    permission_mode: PermissionMode | None = Field(
        default=None, description="Permission mode (claude --permission-mode)."
    )
    skip_permissions: bool = Field(
        default=False, description="--dangerously-skip-permissions: no permission checks at all."
    )
    max_turns: int | None = Field(
        default=None, ge=1, description="Stop after this many agentic turns (claude --max-turns)."
    )
    max_budget_usd: float | None = Field(
        default=None, gt=0, description="Stop once a run has cost this much (USD)."
    )
    mcp_config: str | dict[str, Any] | None = Field(
        default=None,
        description="MCP servers for the run: a JSON string, a file path, or an object.",
    )
    append_system_prompt: str | None = Field(
        default=None, description="Text appended to its system prompt (e.g. its role)."
    )
    add_dirs: list[str] | None = Field(
        default=None, description="More directories it may access besides its working directory."
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Retry a run that failed for a transient reason (retry_on) up to this many "
        "times, with jittered exponential back-off, resuming its Claude session.",
    )
    retry_on: list[RetryKind] | None = Field(
        default=None,
        description="The error kinds retried (default: rate_limit, overloaded, api_error, "
        "network).",
    )


CLAUDE_OPTIONS = frozenset(ClaudeOptions.model_fields)
"""The names of the Claude options."""


class ExecuteClaudeParams(ClaudeOptions, WorkspaceOptions):
    """`execute_claude`: run a fresh `claude -p` with argv built by the service."""

    prompt: str = Field(
        min_length=1, description="The whole task for the fresh instance (its last argument)."
    )
    resume: str | None = Field(
        default=None,
        description="A claude_session_id from an earlier run: continue that conversation.",
    )
    fork_session: bool = Field(
        default=False, description="With resume: continue in a new session (a branch)."
    )
    cwd: str | None = Field(default=None, description="Working directory (must exist).")
    env: dict[str, str] | None = Field(default=None, description="Extra environment variables.")
    timeout: PositiveSeconds | None = Field(
        default=None, description="Wall-clock limit in seconds (then timed_out)."
    )
    idle_timeout: PositiveSeconds | None = Field(
        default=None, description="End it after this many seconds without output."
    )
    name: str | None = Field(default=None, max_length=256, description="A label shown in listings.")
    node: str | None = Field(default=None, min_length=1, description=NODE_PIN_DOC)

    @model_validator(mode="after")
    def _fork_needs_resume(self) -> ExecuteClaudeParams:
        if self.fork_session and not self.resume:
            raise ValueError("fork_session requires resume")
        return self


class TaskRef(BaseModel):
    """Anything that names one task. `session_id` is accepted as an alias (design notes)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task_id: str = Field(min_length=1, validation_alias="task_id")

    @model_validator(mode="before")
    @classmethod
    def _alias_session_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task_id" not in data and "session_id" in data:
            data = dict(data)
            data["task_id"] = data.pop("session_id")
        return data


class ControlParams(TaskRef):
    action: Action

    @field_validator("action", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


TaskSort = Literal[
    "created", "started", "ended", "runtime", "status", "name", "cost", "exit", "bytes"
]
"""What `status` can sort its list by (engine/listing.py `SORT_KEYS`)."""


class StatusParams(BaseModel):
    """`status`: one task (`task_id`), or one page of the filtered, sorted list."""

    model_config = ConfigDict(extra="forbid")

    task_id: str | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)
    # The list's filters and paging (engine/listing.py), for the dashboard and the CLI.
    statuses: list[TaskStatus] | None = Field(
        default=None, description="Only tasks in these statuses."
    )
    text: str | None = Field(
        default=None,
        max_length=256,
        description="Only tasks whose id, name, command or "
        "prompt holds this text (case-insensitive).",
    )
    offset: int = Field(default=0, ge=0, le=1_000_000, description="Skip this many matches.")
    active_first: bool = Field(
        default=False, description="Running, paused and queued tasks before all others."
    )
    sort: TaskSort = Field(default="created", description="What to sort by.")
    descending: bool = Field(default=True, description="Largest (newest) first.")

    @field_validator("statuses", mode="before")
    @classmethod
    def _comma_separated(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _alias_session_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task_id" not in data and "session_id" in data:
            data = dict(data)
            data["task_id"] = data.pop("session_id")
        return data


class OutputParams(TaskRef):
    stream: Stream = Stream.STDOUT
    offset: int = Field(default=0, ge=0, le=2**53 - 1)  # JSON's largest exact integer
    limit: int = Field(default=1024 * 1024, ge=0, le=16 * 1024 * 1024)


class SubscribeParams(TaskRef):
    from_offset: int | None = Field(default=None, ge=0)
    stderr_from_offset: int | None = Field(default=None, ge=0)


class UnsubscribeParams(TaskRef):
    pass


class EmptyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenParams(BaseModel):
    """`listen`: receive every task's control events (not output) and `session.updated`."""

    model_config = _Strict

    enabled: bool = True


def protocol_description() -> dict[str, Any]:
    """The contract's names as data, served as `GET /protocol.json`: a client that cannot
    import this module (the dashboard's JavaScript) reads every method, notification,
    error code, status and action from it instead of spelling them itself."""
    return {
        "version": PROTOCOL_VERSION,
        "methods": {m.name: m.value for m in Method},
        "notifications": {n.name: n.value for n in Notification},
        "error_codes": {e.name: e.value for e in ErrorCode},
        "task_statuses": {s.name: s.value for s in TaskStatus},
        "final_statuses": [s.value for s in TaskStatus if s.is_final],
        "active_statuses": [s.value for s in TaskStatus if s in ACTIVE_STATUSES],
        "task_sorts": list(get_args(TaskSort)),
        "actions": {a.name: a.value for a in Action},
        "streams": {s.name: s.value for s in Stream},
        "binary_output_query": "=".join(BINARY_OUTPUT_QUERY),
    }
