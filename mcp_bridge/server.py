"""The MCP server `cc_executor` (stdio): tools, resources and the `cc_execute` prompt.

Start it with `cc-executor-mcp` or `python -m mcp_bridge`; register it with Claude Code
under the key `cc_executor` (see .mcp.json.example and docs/mcp.md), so its tools are named
`mcp__cc_executor__<tool>`. Every tool is a thin typed function over `Bridge`; a failure
comes back as an `is_error` result with a message the agent can act on, never as a broken
connection. Nothing but the protocol is written to stdout: logs go to stderr.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, Literal

import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BeforeValidator, Discriminator, Field, Tag, WithJsonSchema

from cc_executor import __version__
from cc_executor.problems import problems
from cc_executor.protocol import (
    NODE_PIN_DOC,
    Action,
    ClaudeOptions,
    ErrorCode,
    ExecuteClaudeParams,
    ExecuteParams,
    ProtocolError,
    WorkspaceOptions,
)
from mcp_bridge.bridge import Bridge, failure
from mcp_bridge.connect import Connect
from mcp_bridge.params import params_of
from mcp_bridge.prompt import cc_execute_prompt
from mcp_bridge.results import JSON_OPTS as _JSON_OPTS
from mcp_bridge.results import error as _error
from mcp_bridge.results import guard as _guard
from mcp_bridge.results import ok as _ok
from mcp_bridge.results import peer_cancelled as _peer_cancelled
from mcp_bridge.results import reads, runs
from mcp_bridge.results import reporter as _reporter
from mcp_bridge.session_tools import register_sessions
from mcp_bridge.sessions import SessionTools
from mcp_bridge.settings import BridgeSettings, load
from mcp_bridge.tooling import ToolServer
from mcp_bridge.watch import OUTPUT_PAGE_MAX
from mcp_bridge.workspace_tools import register_workspaces

log = logging.getLogger(__name__)

INSTRUCTIONS = " ".join(
    """
cc_executor runs shell commands and fresh Claude Code instances (each with a clean, full
context window) as supervised tasks in their own process groups, on the cc-executor
service or, when it is down, inside this server. Use execute_task for commands,
execute_claude to delegate a self-contained piece of work to a fresh Claude, and
execute_task_list for an ordered sequence whose later tasks use earlier results. Calls wait
for the task up to a limit, sending progress; a task still running then comes back as
status "running" with its task_id: poll get_execution_status, never start it again. Long
output is clipped in the middle: page it with get_execution_output. The prompt cc_execute
explains how to orchestrate larger work this way. Sessions (create_session,
send_message_to_session, coordinate_sessions, ...) are persistent Claude conversations on
the service that keep their context across turns, run in parallel and message each other.
""".split()
)

RESOURCE_MAX_BYTES = 32 * 1024 * 1024
"""The output resource serves at most this much; get_execution_output pages the rest."""

# ------------------------------------------------------------------------------ params

Command = Annotated[
    str | list[str],
    Field(
        description="A shell command line, run by /bin/sh -c (pipes, redirections and && "
        "work), or an argv list such as ['python', 'script.py'], exec'd without a shell "
        "(no quoting problems)."
    ),
]
Cwd = Annotated[
    str | None, Field(description="Working directory (default: the server's own); ~ works.")
]
Timeout = Annotated[
    float | None,
    Field(
        gt=0,
        description="Wall-clock limit in seconds: at the limit the task's whole process group "
        "is ended and its status is timed_out (default: CC_EXECUTOR_DEFAULT_TIMEOUT, else none).",
    ),
]
IdleTimeout = Annotated[
    float | None,
    Field(gt=0, description="End the task when it prints nothing for this many seconds."),
]
Env = Annotated[
    dict[str, str] | None, Field(description="Extra environment variables for the task.")
]
Name = Annotated[str | None, Field(max_length=256, description="A label shown in listings.")]
NodePin = Annotated[str | None, Field(min_length=1, description=NODE_PIN_DOC)]
Wait = Annotated[
    bool,
    Field(
        description="true (default): wait for the task to finish (up to the server's wait "
        "limit, about 50 s, with progress notifications) and return its output. false: "
        "return the task_id at once and poll get_execution_status."
    ),
]


def _task_kind(item: Any) -> str:
    """Which kind of task a list entry is: one with a prompt is a Claude task. Only that
    kind's errors are reported (a plain union reports each kind's)."""
    if isinstance(item, ExecuteClaudeParams) or (isinstance(item, dict) and "prompt" in item):
        return "ExecuteClaudeParams"
    return "ExecuteParams"


ListTask = Annotated[
    Annotated[ExecuteParams, Tag("ExecuteParams")]
    | Annotated[ExecuteClaudeParams, Tag("ExecuteClaudeParams")],
    Discriminator(_task_kind),
]
ActionArg = Annotated[
    Action,
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),  # as ControlParams
    WithJsonSchema(
        {
            "type": "string",
            # What the service accepts: any case. Both spellings listed, so a client
            # that checks arguments against the schema lets "cancel" through too.
            "enum": [a.value for a in Action] + [a.value.lower() for a in Action],
            "description": "PAUSE (SIGSTOP the whole group), RESUME (SIGCONT), or CANCEL "
            "(SIGTERM, then SIGKILL); any case.",
        }
    ),
]
TaskId = Annotated[
    str, Field(min_length=1, description="A task_id (or list_id) returned by an execute tool.")
]


def register(mcp: MCPServer, bridge: Bridge, sessions: SessionTools | None = None) -> None:
    """Add the tools, resources and prompt of cc_executor to `mcp`."""
    s = bridge.settings
    sessions = sessions or SessionTools(s, bridge.transport)

    @mcp.tool(title="Run a command", annotations=runs("Run a command"))
    @params_of(WorkspaceOptions)  # workspace, workspace_keep, base_ref: a worktree of its own
    async def execute_task(
        ctx: Context,
        command: Command,
        cwd: Cwd = None,
        timeout: Timeout = None,
        wait: Wait = True,
        idle_timeout: IdleTimeout = None,
        env: Env = None,
        name: Name = None,
        node: NodePin = None,
        **workspace: Any,
    ) -> CallToolResult:
        """Run a shell command or program as a supervised task and return its result.

        Use it for builds, tests, scripts, git, anything a terminal would do, especially
        long or noisy jobs: the task runs in its own process group (pause, resume and
        cancel reach every child), its complete output is kept, and it survives this call.

        Returns task_id, status (completed = exit 0, failed, timed_out, cancelled),
        exit_code, duration_s, backend ("websocket" = the cc-executor service, "local" =
        inside this server, with a note saying why), and output: stdout, clipped to its
        head and tail when long (output_truncated; output_omitted names the first
        get_execution_output page of the gap and where it ends), plus stderr if any.
        If the task outlasts the wait limit you get status "running" and a hint: it keeps
        running; poll get_execution_status(task_id). Cancelling this call cancels the task.
        """
        try:
            p = ExecuteParams(
                **workspace,
                command=command,
                cwd=cwd,
                timeout=timeout,
                idle_timeout=idle_timeout,
                env=env,
                name=name,
                node=node,
            )
            return _ok(await bridge.run_task(p, wait, _reporter(ctx), _peer_cancelled(ctx)))
        except Exception as exc:
            return _error(exc)

    @mcp.tool(title="Run a fresh Claude instance", annotations=runs("Run a fresh Claude instance"))
    @params_of(ClaudeOptions, WorkspaceOptions)  # as the protocol declares them
    async def execute_claude(
        ctx: Context,
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                description="The whole task for the fresh instance. It knows nothing of this "
                "conversation: name the goal, files, conventions and the exact deliverable.",
            ),
        ],
        resume: Annotated[
            str | None,
            Field(description="A claude_session_id from an earlier run: continue that talk."),
        ] = None,
        fork_session: Annotated[
            bool, Field(description="With resume: continue in a new session (a branch).")
        ] = False,
        cwd: Cwd = None,
        timeout: Timeout = None,
        idle_timeout: IdleTimeout = None,
        env: Env = None,
        name: Name = None,
        wait: Wait = True,
        node: NodePin = None,
        **claude: Any,
    ) -> CallToolResult:
        """Delegate a task to a fresh Claude Code instance (`claude -p`) with a clean context.

        Use it for self-contained work that benefits from a full, unpolluted context
        window: implement a module, review a diff, analyse a codebase, write tests. Each
        call is a new process; continue a conversation with resume=<claude_session_id>.

        Returns task_id, status, result (the final answer, clipped when long), is_error,
        claude_session_id, num_turns, total_cost_usd, model, verification (when the UUID
        hook is on), and on failure error_kind (auth, rate_limit, usage_limit,
        context_limit, max_turns, max_budget, network, timeout, crashed, ...) with error
        and error_hint saying what to do. A run outlasting the wait limit returns status
        "running": poll get_execution_status(task_id). Cancelling this call cancels it.
        """
        try:
            p = ExecuteClaudeParams(
                **claude,
                prompt=prompt,
                resume=resume,
                fork_session=fork_session,
                cwd=cwd,
                env=env,
                timeout=timeout,
                idle_timeout=idle_timeout,
                name=name,
                node=node,
            )
            return _ok(await bridge.run_task(p, wait, _reporter(ctx), _peer_cancelled(ctx)))
        except Exception as exc:
            return _error(exc)

    @mcp.tool(title="Run tasks in order", annotations=runs("Run tasks in order"))
    async def execute_task_list(
        ctx: Context,
        tasks: Annotated[
            list[ListTask],
            Field(
                min_length=1,
                description="The tasks, in order. Each is a command task {command, cwd?, "
                "timeout?, ...} or a Claude task {prompt, model?, allowed_tools?, ...}. "
                "Strings may hold placeholders filled from earlier tasks: "
                "{{previous.output}}, {{tasks[0].result}}, {{tasks[1].exit_code}}, "
                "{{previous.claude_session_id}}, {{tasks[0].task_id}}; add | shell to "
                "quote for a shell, | json for a JSON string; \\{{ is a literal {{.",
            ),
        ],
        stop_on_failure: Annotated[
            bool,
            Field(description="Stop at the first task that does not complete (default)."),
        ] = True,
        wait: Wait = True,
    ) -> CallToolResult:
        """Run several tasks one after another, each in a fresh process, and return one
        entry per task.

        Use it for a fixed pipeline you can write down in advance (generate, then test,
        then summarise), where a later task needs an earlier one's output: write
        {{previous.output}} or {{tasks[N].result}} in its command or prompt. Placeholders
        are checked before anything runs. Each entry has the task's task_id, status,
        exit_code and clipped output (or result); tasks after a failure are "skipped".
        The list belongs to this server: if it outlasts the wait limit the call returns
        status "running" with a list_id; poll get_execution_status(task_id=list_id).
        Cancelling this call cancels the running task and starts none of the rest.
        """
        try:
            run = bridge.start_list(tasks, stop_on_failure)
            if not wait:
                d = run.to_dict()
                d["hint"] = f'Poll get_execution_status(task_id="{run.list_id}").'
                return _ok(d)
            return _ok(await bridge.wait_list(run, _reporter(ctx), _peer_cancelled(ctx)))
        except Exception as exc:
            return _error(exc)

    @mcp.tool(title="Task status", annotations=reads("Task status"))
    async def get_execution_status(
        task_id: Annotated[
            str | None,
            Field(description="A task_id or list_id; omit it to list recent tasks."),
        ] = None,
        limit: Annotated[
            int, Field(ge=1, le=1000, description="How many recent tasks to list.")
        ] = 50,
    ) -> CallToolResult:
        """Status of one task (or task list), or a list of recent tasks with service stats.

        Use it to poll a task that came back as "running", or to find task ids. For one
        task: its full record (status, exit_code, timestamps, sizes, Claude fields) and
        output_tail, the end of its stdout. A status of completed, failed, cancelled,
        timed_out or lost is final.
        """
        return await _guard(bridge.status(task_id, limit))

    control_title = "Pause, resume or cancel a task"

    @mcp.tool(
        title=control_title,
        annotations=ToolAnnotations(
            title=control_title,
            read_only_hint=False,
            destructive_hint=True,  # CANCEL ends processes
            idempotent_hint=True,  # the same action twice leaves the same state
            open_world_hint=False,
        ),
    )
    async def control_execution(
        task_id: TaskId,
        action: ActionArg,
    ) -> CallToolResult:
        """Pause, resume or cancel a running task: the signal reaches its whole process group.

        PAUSE stops every process of the task (it uses no CPU, keeps its state) until
        RESUME. CANCEL sends SIGTERM, then SIGKILL after a grace period, and answers once
        nothing of the task runs. Repeating an action is harmless: CANCEL of a task that
        already ended, PAUSE of a paused one, RESUME of a running one answer its current
        status. For a list_id: CANCEL stops the list (its entries say what ran, what was
        cancelled and what was skipped); PAUSE and RESUME apply to its running task.
        Returns task_id, action, status and backend.
        """
        return await _guard(bridge.control(task_id, action))

    @mcp.tool(title="Read task output", annotations=reads("Read task output"))
    async def get_execution_output(
        task_id: TaskId,
        offset: Annotated[int, Field(ge=0, description="Byte offset to start at.")] = 0,
        limit: Annotated[
            int | None,
            Field(
                ge=1,
                le=OUTPUT_PAGE_MAX,
                description=f"Bytes to read, at most {OUTPUT_PAGE_MAX} (1 MiB) a call "
                "(default: max_output_chars).",
            ),
        ] = None,
        stream: Annotated[
            Literal["stdout", "stderr"], Field(description="Which stream.")
        ] = "stdout",
    ) -> CallToolResult:
        """Read any part of a task's complete output, byte-exact, also after it ended.

        Use it for output a result clipped (output_omitted names the offset and limit) or
        to page through a long log: one call returns at most 1 MiB; call again with
        offset=next_offset until eof is true. data is UTF-8 text (encoding "utf-8") or
        base64 for binary output; total is the stream's size so far.
        """
        return await _guard(bridge.output(task_id, stream, offset, limit or s.max_output_chars))

    # ---------------------------------------------------------------- resources

    def _json(data: Any) -> str:
        return orjson.dumps(data, option=_JSON_OPTS, default=str).decode()

    async def _read(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ProtocolError as exc:
            if exc.code == ErrorCode.TASK_NOT_FOUND:
                raise ResourceNotFoundError(exc.message) from exc
            raise ResourceError(exc.message) from exc
        except Exception as exc:
            raise ResourceError(failure(exc).message) from exc

    @mcp.resource(
        "cc-executor://status",
        name="status",
        title="Executor status",
        description="Bridge mode and backends, service reachability, engine stats, session counts.",
        mime_type="application/json",
    )
    async def status_resource() -> str:
        info = {
            "server": "cc_executor",
            "version": __version__,
            "bridge_mode": s.bridge_mode,
            "websocket_url": s.websocket_url,
            "wait_timeout": s.wait_timeout,
            "max_output_chars": s.max_output_chars,
            "backends": await _read(bridge.info()),
            "sessions": await sessions.counts(),
        }
        return _json(info)

    @mcp.resource(
        "cc-executor://tasks",
        name="tasks",
        title="Recent tasks",
        description="Recent tasks of both backends, newest first, with stats.",
        mime_type="application/json",
    )
    async def tasks_resource() -> str:
        return _json(await _read(bridge.status(None, 100)))

    @mcp.resource(
        "cc-executor://tasks/{task_id}",
        name="task",
        title="One task",
        description="The full record of one task (or task list).",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        return _json(await _read(bridge.status(task_id, 1)))

    @mcp.resource(
        "cc-executor://tasks/{task_id}/output",
        name="task_output",
        title="Task output",
        description="The complete stdout of a task (binary output comes as a blob).",
        mime_type="text/plain",
    )
    async def task_output_resource(task_id: str) -> str | bytes:
        data = await _read(bridge.read_stream(task_id, "stdout", RESOURCE_MAX_BYTES))
        try:
            text: str = data.decode("utf-8")
        except UnicodeDecodeError:
            return bytes(data)
        if len(data) >= RESOURCE_MAX_BYTES:
            text += (
                f"\n[... the output goes on past {RESOURCE_MAX_BYTES} bytes: page it with "
                f'get_execution_output(task_id="{task_id}", offset={len(data)})]\n'
            )
        return text

    register_sessions(mcp, sessions)
    register_workspaces(mcp, bridge)

    # ---------------------------------------------------------------- prompt

    @mcp.prompt(
        name="cc_execute",
        title="Orchestrate work as fresh-context tasks",
        description="Teaches the agent to split work into ordered tasks, run each with a "
        "fresh context through these tools, pass results forward and verify them.",
    )
    def cc_execute(
        goal: Annotated[str, Field(description="The work to orchestrate (optional).")] = "",
    ) -> str:
        return cc_execute_prompt(goal)


def build_server(
    settings: BridgeSettings | None = None, connect: Connect | None = None
) -> MCPServer:
    """The MCP server, ready to run; its transport connects on first use."""
    settings = settings or BridgeSettings()
    bridge = Bridge(settings, connect)
    sessions = SessionTools(settings, bridge.transport)

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await sessions.close()
            await bridge.close()

    mcp: MCPServer = ToolServer(
        "cc_executor",
        title="cc-executor",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level="WARNING",
    )
    register(mcp, bridge, sessions)
    return mcp


def main() -> int:
    """`cc-executor-mcp`: serve MCP on stdin/stdout until the client closes it."""
    import sys

    import anyio
    from pydantic import ValidationError

    from cc_executor.logs import setup_logging
    from mcp_bridge.stdio import serve_stdio

    try:
        settings = load(BridgeSettings)
        setup_logging(settings.bridge_log_level, "text", None)  # stderr: stdout is the protocol
        server = build_server(settings)
    except ValidationError as exc:  # a check across settings: no default helps
        for line in problems(exc.errors(include_url=False)):
            print(f"cc-executor-mcp: invalid settings: {line}", file=sys.stderr)
        return 2
    anyio.run(serve_stdio, server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
