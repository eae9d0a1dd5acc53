"""The params of the `session.*` and `workspace.*` method families, and `PARAMS`: every
method of `protocol.Method` mapped to its params model.

The rest of the protocol (names, statuses, error codes, the task methods' params and the
option models these build on) is `cc_executor/protocol.py`; this module builds on it.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from cc_executor.protocol import (
    CLAUDE_OPTIONS,
    ClaudeOptions,
    ControlParams,
    EmptyParams,
    ExecuteClaudeParams,
    ExecuteParams,
    ListenParams,
    Method,
    OutputParams,
    PositiveSeconds,
    StatusParams,
    SubscribeParams,
    UnsubscribeParams,
    WorkspaceOptions,
    _Strict,
)

# --------------------------------------------------------------------------- session params
# A session is a named Claude conversation whose turns are `execute_claude` tasks resuming
# it (docs/sessions.md). `session_id` params also accept a session's unique active name.


class SessionCreateParams(ClaudeOptions, WorkspaceOptions):
    """`session.create`: a new session in an existing working directory.

    Its Claude options (`ClaudeOptions`) apply to every turn, but one name means something
    else here: `max_turns` is watch mode's limit (the design notes' name), so each turn's
    `claude --max-turns` is `turn_max_turns`. `claude_options()` gives a turn's options.
    """

    working_dir: str = Field(
        min_length=1, description="An existing directory the session works in; ~ works."
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A unique name among active sessions (e.g. 'backend'), usable wherever "
        "a session_id is.",
    )
    watch_mode: bool = Field(
        default=False,
        description="After each completed turn, send continuation_prompt as a new turn, up "
        "to max_turns times (default 10): the session keeps working alone.",
    )
    max_turns: int | None = Field(  # the same type as ClaudeOptions.max_turns, another meaning
        default=None,
        ge=1,
        description="Watch mode: at most this many continuation turns (default 10).",
    )
    turn_max_turns: int | None = Field(
        default=None,
        ge=1,
        description="Each turn stops after this many agentic turns (claude --max-turns).",
    )
    continuation_prompt: str = Field(
        default="continue",
        min_length=1,
        description="Watch mode: the prompt of each continuation.",
    )
    turn_timeout: PositiveSeconds | None = Field(
        default=None, description="Wall-clock limit in seconds of each turn (then timed_out)."
    )
    prompt: str | None = Field(
        default=None, min_length=1, description="Send this as the first turn right away."
    )
    hot: bool | None = Field(
        default=None,
        strict=True,  # "yes" is no answer: true, false or absent
        description="Keep one live claude process for the session's turns (no start-up "
        "cost per turn); default: the service's hot_sessions setting.",
    )

    def claude_options(self) -> ClaudeOptions:
        """The Claude options of each turn (`turn_max_turns` as its `max_turns`)."""
        given = self.model_dump(include=set(CLAUDE_OPTIONS - {"max_turns"}), exclude_unset=True)
        return ClaudeOptions(**given, max_turns=self.turn_max_turns)


class SessionRef(BaseModel):
    """Anything that names one session (`session.status`, `session.kill`)."""

    model_config = _Strict

    session_id: str = Field(min_length=1)


class SessionSendParams(BaseModel):
    """`session.send`: queue one turn. `wait_for_response` is the design notes' name of `wait`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    session_id: str = Field(min_length=1)
    message: str = Field(min_length=1)
    wait: bool = Field(default=False, validation_alias=AliasChoices("wait", "wait_for_response"))
    from_session: str | None = Field(default=None, min_length=1)
    timeout: PositiveSeconds | None = None


class SessionListParams(BaseModel):
    model_config = _Strict

    include_ended: bool = False


class SessionLogsParams(SessionRef):
    lines: int = Field(default=50, ge=1, le=10_000)


class SessionSpawnTempParams(BaseModel):
    """`session.spawn_temp`: run one command or one Claude prompt, return its result, clean up."""

    model_config = _Strict

    command: str | list[str] | None = None
    prompt: str | None = Field(default=None, min_length=1)
    working_dir: str = Field(min_length=1)
    timeout: PositiveSeconds = 300.0
    name: str | None = Field(default=None, max_length=128)
    model: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SessionSpawnTempParams:
        if (self.command is None) == (self.prompt is None):
            raise ValueError("give exactly one of command or prompt")
        if self.command is not None:
            ExecuteParams(command=self.command)  # the same checks as `execute`
        return self


class SessionCoordinateParams(BaseModel):
    """`session.coordinate`. `session_assignments` is the design notes' name of `assignments`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task_description: str = Field(min_length=1)
    assignments: dict[str, str] = Field(
        min_length=1, validation_alias=AliasChoices("assignments", "session_assignments")
    )
    timeout: PositiveSeconds = 600.0
    cancel_on_timeout: bool = False


# --------------------------------------------------------------------------- workspace params


class WorkspaceListParams(BaseModel):
    """`workspace.list`: the worktrees of tasks and sessions, newest first."""

    model_config = _Strict

    include_removed: bool = Field(
        default=False, description="Also list workspaces whose worktree was removed."
    )


class WorkspaceRef(BaseModel):
    """One workspace, by its owner: a task (or a session turn's task) or a session."""

    model_config = _Strict

    task_id: str | None = Field(
        default=None,
        min_length=1,
        description="A task that ran in a worktree (a session turn's task names its session's).",
    )
    session_id: str | None = Field(
        default=None,
        min_length=1,
        description="A session created with workspace worktree (its id or active name).",
    )

    @model_validator(mode="after")
    def _one_owner(self) -> WorkspaceRef:
        if (self.task_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of task_id or session_id")
        return self


class WorkspaceDiffParams(WorkspaceRef):
    """`workspace.diff`: a byte range of the unified diff of everything the workspace changed
    against its base commit (commits and uncommitted files), paged like `output`."""

    offset: int = Field(default=0, ge=0, description="Byte offset into the diff.")
    limit: int = Field(
        default=1024 * 1024, ge=0, le=16 * 1024 * 1024, description="Bytes to return at most."
    )


class WorkspaceRemoveParams(WorkspaceRef):
    """`workspace.remove`: remove a worktree whose task or session has ended."""

    delete_branch: bool = Field(
        default=False,
        description="Also delete its branch when it holds commits (without this, a branch "
        "with commits is kept; one without is deleted with its worktree).",
    )


PARAMS: dict[str, type[BaseModel]] = {
    Method.EXECUTE: ExecuteParams,
    Method.EXECUTE_CLAUDE: ExecuteClaudeParams,
    Method.CONTROL: ControlParams,
    Method.STATUS: StatusParams,
    Method.OUTPUT: OutputParams,
    Method.SUBSCRIBE: SubscribeParams,
    Method.UNSUBSCRIBE: UnsubscribeParams,
    Method.HOOK_STATUS: EmptyParams,
    Method.PING: EmptyParams,
    Method.LISTEN: ListenParams,
    Method.SESSION_CREATE: SessionCreateParams,
    Method.SESSION_SEND: SessionSendParams,
    Method.SESSION_STATUS: SessionRef,
    Method.SESSION_LIST: SessionListParams,
    Method.SESSION_LOGS: SessionLogsParams,
    Method.SESSION_KILL: SessionRef,
    Method.SESSION_SPAWN_TEMP: SessionSpawnTempParams,
    Method.SESSION_COORDINATE: SessionCoordinateParams,
    Method.WORKSPACE_LIST: WorkspaceListParams,
    Method.WORKSPACE_DIFF: WorkspaceDiffParams,
    Method.WORKSPACE_REMOVE: WorkspaceRemoveParams,
}
"""Every method and its params model. A method's handler lives in `cc_executor.handlers`."""
