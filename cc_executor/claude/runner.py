"""A Claude task: params -> TaskSpec (argv, env, UUID hook) and an observer on its stream.

The engine runs it like any other task (same ids, control, timeouts, logs, records); the
`ClaudeObserver` parses stdout as stream-json as it arrives, sends subscribers compact
`claude.event` notifications, and at the end writes the parsed result, the error class
and the UUID verification onto the record.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from cc_executor.claude.argv import build_argv, build_env
from cc_executor.claude.errors import classify
from cc_executor.claude.ratelimit import RateLimitGate, RateLimits, account_of
from cc_executor.claude.stream import RESULT_MAX_CHARS, ClaudeStreamState, LineSplitter
from cc_executor.engine import TaskSpec
from cc_executor.policy import claude_run, without_service_secrets
from cc_executor.protocol import (
    ErrorCode,
    ExecuteClaudeParams,
    Notification,
    ProtocolError,
    Stream,
    TaskStatus,
)
from cc_executor.tasks import check_cwd
from cc_executor.workspaces import request_of

if TYPE_CHECKING:
    from cc_executor.config import Settings
    from cc_executor.engine.engine import RunningTask

_STDERR_TAIL = 16 * 1024

EVENT_TEXT_MAX_CHARS = RESULT_MAX_CHARS
"""Assistant text longer than this is cut in `claude.event` (the full text stays in the log).

Events are control messages that a slow subscriber's queue never drops, so each must be
small: a 5 MB assistant line would otherwise be queued whole for every stalled client.
"""

MAX_ARG_BYTES = 128 * 1024
"""Linux refuses to exec an argv holding one string of 128 KiB or more (MAX_ARG_STRLEN,
counting its NUL terminator): E2BIG, "Argument list too long"."""

UUID_INSTRUCTION = (
    "\n\nWhen you have finished, end your answer with this verification UUID on a line "
    "of its own, exactly as written: UUID: {uuid}"
)


class ClaudeObserver:
    """Parses one Claude task's stream-json and finishes its record."""

    def __init__(
        self,
        expected_uuid: str | None = None,
        fail_on_missing: bool = True,
        gate: RateLimitGate | None = None,
    ) -> None:
        self.gate = gate  # its account's rate-limit window (claude/ratelimit.py)
        self.splitter = LineSplitter()
        self.state = ClaudeStreamState()
        self.stderr_tail = b""
        self.expected_uuid = expected_uuid
        self.fail_on_missing = fail_on_missing
        self.assistant_turns = 0

    def on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None:
        if stream == Stream.STDERR:
            self.stderr_tail = (self.stderr_tail + data)[-_STDERR_TAIL:]
            return
        for line in self.splitter.feed(data):
            self._line(task, line)

    def _line(self, task: RunningTask, line: bytes) -> None:
        compact = self.state.feed_line(line)
        if compact is not None:
            self._live_fields(task, compact)
            text = compact.get("text")
            if isinstance(text, str) and len(text) > EVENT_TEXT_MAX_CHARS:
                compact["text"] = text[:EVENT_TEXT_MAX_CHARS]
                compact["text_truncated"] = True
                compact["text_chars"] = len(text)
            task.emit_everywhere(
                Notification.CLAUDE_EVENT, {"task_id": task.task_id, "event": compact}
            )

    def _live_fields(self, task: RunningTask, compact: dict[str, Any]) -> None:
        """While it runs, its record shows the model and the turns so far (the dashboard's
        live cost column); `on_finish` replaces them with the result's."""
        extra = task.record.extra
        if compact.get("type") == "assistant":
            self.assistant_turns += 1
            extra["num_turns"] = self.assistant_turns
        if self.state.model:
            extra["model"] = self.state.model

    def on_finish(self, task: RunningTask) -> None:
        for line in self.splitter.flush():
            self._line(task, line)
        rec = task.record
        rec.extra.update(self.state.record_fields())
        cancelled = task.final_status == TaskStatus.CANCELLED
        err = None
        if not cancelled:
            err = classify(
                state=self.state,
                stderr_tail=self.stderr_tail.decode("utf-8", "replace"),
                exit_code=rec.exit_code,
                signal=rec.signal,
                timed_out=task.final_status == TaskStatus.TIMED_OUT,
                spawn_error=rec.extra.get("spawn_error"),
            )
        rec.extra["error_kind"] = None
        if err is not None:
            rec.extra["error_kind"] = str(err.kind)
            rec.extra["error_hint"] = err.hint
            if err.reset_at:
                rec.extra["reset_at"] = err.reset_at
            rec.error = err.message
            if rec.status == TaskStatus.COMPLETED:
                rec.status = TaskStatus.FAILED  # exit 0 but the CLI reported an error
        if self.gate is not None:
            note_rate_limit(self.gate, self.state.rate_limit_info, rec.extra)
        self._verify(rec, failed_already=err is not None or cancelled)

    def _verify(self, rec: Any, failed_already: bool) -> None:
        if self.expected_uuid is None:
            return
        result = rec.extra.get("result") or ""
        if self.expected_uuid in result:
            rec.extra["verification"] = "passed"
        elif failed_already or rec.status != TaskStatus.COMPLETED:
            rec.extra["verification"] = "skipped"
        else:
            rec.extra["verification"] = "failed"
            if self.fail_on_missing:
                rec.status = TaskStatus.FAILED
                rec.error = (
                    "UUID verification failed: the result does not end with this task's "
                    "verification UUID, so it cannot be shown to come from this run"
                )


def claude_spec(params: ExecuteClaudeParams, settings: Settings) -> TaskSpec:
    """The TaskSpec of one fresh `claude -p` run."""
    cwd = check_cwd(params.cwd)
    run = claude_run(params, settings, cwd)  # the allow-list: policy.py
    hook = settings.hooks.uuid_verification
    expected = str(uuid.uuid4()) if hook.enabled else None
    prompt = params.prompt + UUID_INSTRUCTION.format(uuid=expected) if expected else None
    checked = params.model_copy(update={"mcp_config": run.mcp_config})
    argv = build_argv(checked, run.claude_bin, prompt, run.flags)
    env = without_service_secrets(
        build_env(os.environ, params.env, settings.strip_anthropic_api_key)
    )
    _check_exec_limits(argv, env)
    gate = RateLimitGate(RateLimits.of(settings), account_of(env))
    extra: dict[str, Any] = {"prompt": params.prompt, **request_of(params)}
    if params.model:
        extra["requested_model"] = params.model
    if expected:
        extra["expected_uuid"] = expected
    return TaskSpec(
        command=argv,
        argv=argv,
        env=env,
        cwd=cwd,
        timeout=params.timeout,
        idle_timeout=params.idle_timeout,
        name=params.name,
        kind="claude",
        observer=ClaudeObserver(expected, hook.fail_on_missing, gate),
        extra=extra,
        gate=gate,
    )


def note_rate_limit(
    gate: RateLimitGate, info: dict[str, Any] | None, extra: dict[str, Any]
) -> None:
    """Tell the account's table what a finished run said of its rate limit."""
    if info is not None:
        gate.limits.observe(gate.account, info)
    if extra.get("error_kind") == "rate_limit":
        gate.limits.rate_limited(gate.account, extra.get("reset_at"))


def _check_exec_limits(argv: list[str], env: dict[str, str]) -> None:
    """Refuse what exec would reject, with a clear INVALID_PARAMS instead of a spawn failure.

    Without this, a NUL byte or an oversized prompt failed at spawn time and was reported
    as `cli_not_found`, whose hint (install the CLI) is wrong.
    """
    for i, arg in enumerate(argv):
        what = "prompt" if i == len(argv) - 1 else f"argument {arg[:40]!r}"
        if "\x00" in arg:
            raise ProtocolError(ErrorCode.INVALID_PARAMS, f"the {what} contains a NUL byte")
        try:
            size = len(os.fsencode(arg))  # what exec gets
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.INVALID_PARAMS, f"the {what} is not valid text") from None
        if size + 1 > MAX_ARG_BYTES:
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"the {what} is {size} bytes: the OS limits one command-line argument "
                f"to {MAX_ARG_BYTES - 1} bytes; put the material in a file and refer to it",
                {"bytes": size, "max_bytes": MAX_ARG_BYTES - 1},
            )
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS, f"environment variable {key[:40]!r} is not valid"
            )
