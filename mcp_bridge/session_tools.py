"""The session tools and the `cc-executor://sessions` resource (docs/mcp.md, docs/sessions.md).

Names and parameters are those of the original design notes (`list_sessions`,
`send_message_to_session` with `wait_for_response`, `coordinate_sessions` with
`session_assignments`, ...), each mapped onto one `session.*` method of the service; the
logic is in `mcp_bridge.sessions`.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from cc_executor.protocol import SessionCreateParams
from mcp_bridge.bridge import failure
from mcp_bridge.params import params_of
from mcp_bridge.results import JSON_OPTS, error, guard, ok, peer_cancelled, reads, reporter, runs
from mcp_bridge.sessions import SessionTools

SessionId = Annotated[
    str,
    Field(
        min_length=1,
        description='A session_id ("s-...", from create_session or list_sessions) or the '
        "name of an active session.",
    ),
]
WorkingDir = Annotated[
    str,
    Field(min_length=1, description="An existing directory the session works in; ~ works."),
]


def register_sessions(mcp: MCPServer, sessions: SessionTools) -> None:
    """Add the session tools and the sessions resource to `mcp`."""

    @mcp.tool(title="List sessions", annotations=reads("List sessions"))
    async def list_sessions(
        include_ended: Annotated[
            bool,
            Field(description="Also list sessions that ended (killed, or finished temp ones)."),
        ] = False,
    ) -> CallToolResult:
        """List the persistent Claude sessions of the cc-executor service, oldest first.

        A session is a named Claude conversation in a working directory, living in the
        service: every message to it is one more turn of the same conversation (it keeps
        its context), and sessions can message each other. Use this to find session ids
        and names, to see who is busy (status "running": a turn runs or waits in its
        queue; "idle": waiting for a message; "ended"), and what each answered last
        (last_result, clipped; get_session_status has the whole record).

        Returns sessions (session_id, name, status, working_dir, turns, queued,
        current_task_id, last_status, last_result, messages_in/out, ...), total (every
        recorded session) and active (not ended).
        """
        return await guard(sessions.list_sessions(include_ended))

    @mcp.tool(title="Session status", annotations=reads("Session status"))
    async def get_session_status(session_id: SessionId) -> CallToolResult:
        """The full record of one session: its state, queue, last turn and configuration.

        Use it to follow a session you sent work to: status "running" means a turn runs
        (current_turn, current_task_id: follow that task with get_execution_status) or
        waits in the queue (queued); "idle" means it is done and waiting, with the last
        turn's outcome in last_status and its answer in last_result (first 2000
        characters; get_session_logs shows every turn). Also: claude_session_id (the
        conversation), watch_mode, watch_turns and watch_stopped, messages_in and
        messages_out, claude_options (model, allowed_tools, ... of its turns), end_reason.
        """
        return await guard(sessions.status(session_id))

    @mcp.tool(title="Session logs", annotations=reads("Session logs"))
    async def get_session_logs(
        session_id: SessionId,
        lines: Annotated[
            int, Field(ge=1, le=10_000, description="How many of the newest entries to return.")
        ] = 50,
    ) -> CallToolResult:
        """A session's history: its turns and the messages it sent and received, newest last.

        Use it to read what a session was asked and what it answered, turn by turn, or
        to check that a message arrived. A turn entry (type "turn") has turn, kind
        (message, watch, coordinate, command), message as sent, prompt as given to
        Claude, from_session, status, task_id, result, error and cost_usd; a message
        entry (type "message") has direction ("in" or "out"), from_session, to_session,
        text and the turn that delivers it. Long texts are clipped; a turn's whole
        output is its task's (get_execution_output(task_id)).
        """
        return await guard(sessions.logs(session_id, lines))

    @mcp.tool(title="Message a session", annotations=runs("Message a session"))
    async def send_message_to_session(
        ctx: Context,
        session_id: SessionId,
        message: Annotated[
            str,
            Field(
                min_length=1,
                description="What to tell or ask the session: its next turn. It remembers "
                "its earlier turns, so refer to them freely.",
            ),
        ],
        wait_for_response: Annotated[
            bool,
            Field(
                description="true: wait for the turn to end and return its answer (at most "
                "the server's wait limit, about 50 s, or timeout). false (default): return "
                "once the turn is queued or started.",
            ),
        ] = False,
        from_session: Annotated[
            str | None,
            Field(
                min_length=1,
                description="The session sending this message (its id or name): recorded "
                "on both sides and named in the turn, so the target knows whom to answer. "
                "Default: the session this server runs in (CC_EXECUTOR_SESSION_ID), if any.",
            ),
        ] = None,
        timeout: Annotated[
            float | None,
            Field(gt=0, description="With wait_for_response: wait at most this long (s)."),
        ] = None,
    ) -> CallToolResult:
        """Send a message to a session: it becomes the session's next turn, in order.

        Use it to give a session work, ask it a follow-up (it keeps its conversation),
        or, from inside a session, talk to another agent: the message is recorded on
        both sides and delivered as a turn that says who it is from, and the other
        agent can answer with a message back. A session runs one turn at a time, in
        the order sent; different sessions run in parallel.

        Without wait_for_response: returns turn, status ("running", or "queued" with
        its position) and task_id once it started; poll get_session_status. With it:
        waits for the answer (result, claude_session_id, error, error_kind, cost_usd),
        but at most the wait limit: then wait_timed_out is true and the turn keeps
        going: poll get_session_status, never send it again. Two sessions waiting for
        each other's answers would block each other: between sessions, prefer
        messages without waiting.
        """
        return await guard(
            sessions.send(
                session_id, message, wait_for_response, from_session, timeout, reporter(ctx)
            )
        )

    @mcp.tool(title="Create a session", annotations=runs("Create a session"))
    @params_of(SessionCreateParams)  # as protocol.SessionCreateParams declares them
    async def create_session(
        **params: Any,
    ) -> CallToolResult:
        """Create a persistent Claude session (a named conversation) on the executor service.

        Use it when work needs an agent that keeps its context across several requests,
        runs in parallel with others (frontend, backend, tests), or talks to other
        agents. Each turn is a headless `claude -p --resume` run in working_dir; the
        session, its turns and messages survive a service restart. For one
        self-contained job use execute_claude instead; for one command,
        spawn_temp_session or execute_task.

        Its Claude options (model, allowed_tools, ...) apply to every turn. Give it this
        cc_executor server in mcp_config (see docs/sessions.md) and allow
        mcp__cc_executor so it can message the other sessions.

        Returns the session record: session_id (use it, or the name, in the other
        session tools), status "idle" (or "running" with first_turn when prompt was
        given), and its configuration. The working directory must exist.
        """
        return await guard(sessions.create(params))

    kill_title = "Kill a session"

    @mcp.tool(
        title=kill_title,
        annotations=ToolAnnotations(
            title=kill_title,
            read_only_hint=False,
            destructive_hint=True,  # ends the running turn's processes and the session
            idempotent_hint=True,  # killing an ended session changes nothing
            open_world_hint=False,
        ),
    )
    async def kill_session(session_id: SessionId) -> CallToolResult:
        """End a session: cancel its running turn, drop its queued turns, stop watch mode.

        Use it when a session's work is done or going wrong. The running turn's whole
        process group is ended (SIGTERM, then SIGKILL) before this returns, so nothing of
        it keeps running; the session is then "ended" and takes no more messages (its
        record and logs stay). Returns killed, cancelled_task_id, dropped_turns.
        """
        return await guard(sessions.kill(session_id))

    @mcp.tool(title="Run in a temporary session", annotations=runs("Run in a temporary session"))
    async def spawn_temp_session(
        ctx: Context,
        working_dir: WorkingDir,
        command: Annotated[
            str | list[str] | None,
            Field(
                description="A shell command line (or an argv list) to run, e.g. 'npm test'. "
                "Give command or prompt, not both."
            ),
        ] = None,
        prompt: Annotated[
            str | None,
            Field(min_length=1, description="Or: a prompt for a one-turn Claude session."),
        ] = None,
        timeout: Annotated[
            float,
            Field(gt=0, description="Wall-clock limit (s): then it ends as timed_out."),
        ] = 300.0,
        name: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=128,
                description="A label to find it by (default: a unique temp-... name).",
            ),
        ] = None,
        model: Annotated[str | None, Field(description="With prompt: the model.")] = None,
    ) -> CallToolResult:
        """Run one command or one Claude prompt in a throw-away session, then clean it up.

        Use it for a one-off job you want recorded alongside the sessions (run the test
        suite, a build, a quick question) without creating and killing a session
        yourself. Returns status (completed, failed, timed_out, ...), exit_code, output
        and stderr (the newest part, clipped), result (the Claude answer), task_id,
        duration_s, logs and cleaned_up. It waits at most the server's wait limit: a
        longer run returns status "running" with its name and task_id, keeps running
        (up to timeout) and is cleaned up after; follow it with get_session_logs.
        Cancelling the call ends the run.
        """
        params = {
            "working_dir": working_dir,
            "command": command,
            "prompt": prompt,
            "timeout": timeout,
            "name": name,
            "model": model,
        }
        try:
            return ok(await sessions.spawn_temp(params, reporter(ctx), peer_cancelled(ctx)))
        except Exception as exc:
            return error(exc)

    @mcp.tool(title="Coordinate sessions", annotations=runs("Coordinate sessions"))
    async def coordinate_sessions(
        ctx: Context,
        task_description: Annotated[
            str,
            Field(
                min_length=1,
                description="The shared goal, given to every session as context for its part.",
            ),
        ],
        session_assignments: Annotated[
            dict[str, str],
            Field(
                min_length=1,
                description="Each session's subtask: {session_id or name: subtask}, e.g. "
                "{'frontend': 'the login form', 'backend': 'POST /api/login'}.",
            ),
        ],
        timeout: Annotated[
            float,
            Field(gt=0, description="How long (s) the sessions get before timed_out."),
        ] = 600.0,
        cancel_on_timeout: Annotated[
            bool,
            Field(description="Cancel the turns still running at the timeout."),
        ] = False,
    ) -> CallToolResult:
        """Split one task over several sessions: each gets its subtask, all in parallel.

        Use it to fan out work to existing sessions (create them first) and collect
        their answers: each session gets one turn with the shared description, its own
        subtask and the names of the others (so they can message each other). Every
        session is checked first; nothing is sent if one is unknown or ended.

        Returns status (completed, failed, timed_out), results per session (status,
        result, task_id, error) and timed_out. It waits at most the server's wait limit:
        if the sessions are still working then, it returns status "running" with each
        session's current state; they keep working: poll get_session_status until each
        is "idle" (its answer is last_result). Never coordinate the same work twice.
        """
        return await guard(
            sessions.coordinate(
                task_description, session_assignments, timeout, cancel_on_timeout, reporter(ctx)
            )
        )

    # ---------------------------------------------------------------- resource

    @mcp.resource(
        "cc-executor://sessions",
        name="sessions",
        title="Sessions",
        description="Every session of the service (ended ones too), with total and active.",
        mime_type="application/json",
    )
    async def sessions_resource() -> str:
        try:
            data = await sessions.list_sessions(include_ended=True)
        except Exception as exc:
            raise ResourceError(failure(exc).message) from exc
        return orjson.dumps(data, option=JSON_OPTS, default=str).decode()
