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
from cc_executor.claude.stream import ClaudeStreamState, LineSplitter
from cc_executor.engine import TaskSpec
from cc_executor.policy import program_allowed
from cc_executor.protocol import (
    ErrorCode,
    ExecuteClaudeParams,
    Notification,
    ProtocolError,
    Stream,
    TaskStatus,
)
from cc_executor.tasks import check_cwd

if TYPE_CHECKING:
    from cc_executor.config import Settings
    from cc_executor.engine.engine import RunningTask

_STDERR_TAIL = 16 * 1024

UUID_INSTRUCTION = (
    "\n\nWhen you have finished, end your answer with this verification UUID on a line "
    "of its own, exactly as written: UUID: {uuid}"
)


class ClaudeObserver:
    """Parses one Claude task's stream-json and finishes its record."""

    def __init__(self, expected_uuid: str | None = None, fail_on_missing: bool = True) -> None:
        self.splitter = LineSplitter()
        self.state = ClaudeStreamState()
        self.stderr_tail = b""
        self.expected_uuid = expected_uuid
        self.fail_on_missing = fail_on_missing

    def on_output(self, task: RunningTask, stream: Stream, data: bytes) -> None:
        if stream == Stream.STDERR:
            self.stderr_tail = (self.stderr_tail + data)[-_STDERR_TAIL:]
            return
        for line in self.splitter.feed(data):
            self._line(task, line)

    def _line(self, task: RunningTask, line: bytes) -> None:
        compact = self.state.feed_line(line)
        if compact is not None:
            task.emit(Notification.CLAUDE_EVENT, {"task_id": task.task_id, "event": compact})

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
    allowed = settings.allowed_commands
    if allowed is not None and not (
        program_allowed(settings.claude_bin, allowed)
        or program_allowed(os.path.basename(settings.claude_bin), allowed)
    ):
        raise ProtocolError(
            ErrorCode.COMMAND_NOT_ALLOWED,
            f"the claude binary {settings.claude_bin!r} is not in allowed_commands",
        )
    hook = settings.hooks.uuid_verification
    expected = str(uuid.uuid4()) if hook.enabled else None
    prompt = params.prompt + UUID_INSTRUCTION.format(uuid=expected) if expected else None
    argv = build_argv(params, settings.claude_bin, prompt)
    extra: dict[str, Any] = {"prompt": params.prompt}
    if params.model:
        extra["requested_model"] = params.model
    if expected:
        extra["expected_uuid"] = expected
    return TaskSpec(
        command=argv,
        argv=argv,
        env=build_env(os.environ, params.env, settings.strip_anthropic_api_key),
        cwd=check_cwd(params.cwd),
        timeout=params.timeout,
        idle_timeout=params.idle_timeout,
        name=params.name,
        kind="claude",
        observer=ClaudeObserver(expected, hook.fail_on_missing),
        extra=extra,
    )
