"""Hooks: commands run around each task with the task record as JSON on stdin.

`pre_execute` commands run before a task starts; a failing one (non-zero exit or its own
timeout) refuses the task with HOOK_REJECTED. `post_execute` commands run after it ends;
their outcome is recorded on the task. Hook processes get their own process group, which
is killed when the hook ends or times out, and never block the event loop.
The built-in `uuid_verification` hook is applied by the Claude runner; its outcomes are
counted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

from cc_executor.protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from cc_executor.config import Settings
    from cc_executor.engine.engine import Engine
    from cc_executor.engine.records import TaskRecord


_OUTPUT_TAIL = 2000  # characters of a hook's stdout/stderr kept on the record


async def run_hook_command(
    command: str, payload: bytes, timeout: float, shell: str
) -> dict[str, Any]:
    """Run one hook command; returns {command, exit_code, timed_out, duration_s, stdout, stderr}.

    The hook gets its own process group and writes its output to temporary files, not pipes:
    a process it leaves behind (even one that left the group) cannot hold a pipe open and
    stall the task past the timeout. When the hook ends, or at its timeout, whatever is left
    of its group is killed: no hook process outlives its run.
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        proc = await asyncio.create_subprocess_exec(
            shell,
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=out_f,
            stderr=err_f,
            start_new_session=True,
        )
        timed_out = False
        try:
            await asyncio.wait_for(_feed_and_wait(proc, payload), timeout)
        except TimeoutError:
            timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.stdin is not None:
                proc.stdin.close()
        await proc.wait()
        out, err = _tail(out_f), _tail(err_f)
    return {
        "command": command,
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 4),
        "stdout": out,
        "stderr": err,
    }


async def _feed_and_wait(proc: asyncio.subprocess.Process, payload: bytes) -> None:
    """Write the payload to the hook's stdin (it may not read it), then wait for its exit."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(payload)
        await proc.stdin.drain()
    proc.stdin.close()
    await proc.wait()


def _tail(f: IO[bytes]) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _OUTPUT_TAIL))
    return f.read().decode("utf-8", "replace")[-_OUTPUT_TAIL:]


class HookRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters: dict[str, int] = {
            "pre_runs": 0,
            "pre_failures": 0,
            "post_runs": 0,
            "post_failures": 0,
            "uuid_passed": 0,
            "uuid_failed": 0,
            "uuid_skipped": 0,
        }

    def _payload(self, record: TaskRecord, phase: str) -> bytes:
        return orjson.dumps({"phase": phase, "task": record.to_dict()}, default=str)

    async def pre(self, record: TaskRecord) -> None:
        cfg = self.settings.hooks
        results = []
        for command in cfg.pre_execute:
            self.counters["pre_runs"] += 1
            res = await run_hook_command(
                command, self._payload(record, "pre_execute"), cfg.timeout, self.settings.shell
            )
            results.append(res)
            if res["exit_code"] != 0 or res["timed_out"]:
                self.counters["pre_failures"] += 1
                why = "timed out" if res["timed_out"] else f"exited {res['exit_code']}"
                raise ProtocolError(
                    ErrorCode.HOOK_REJECTED,
                    f"pre_execute hook {command!r} {why}: task refused",
                    res,
                )
        if results:
            record.extra["hooks"] = {"pre_execute": results}

    async def post(self, record: TaskRecord) -> None:
        verification = record.extra.get("verification")
        if verification in ("passed", "failed", "skipped"):
            self.counters[f"uuid_{verification}"] += 1
        cfg = self.settings.hooks
        results = []
        for command in cfg.post_execute:
            self.counters["post_runs"] += 1
            res = await run_hook_command(
                command, self._payload(record, "post_execute"), cfg.timeout, self.settings.shell
            )
            if res["exit_code"] != 0 or res["timed_out"]:
                self.counters["post_failures"] += 1
            results.append(res)
        if results:
            record.extra.setdefault("hooks", {})["post_execute"] = results


def hook_status(engine: Engine, settings: Settings) -> dict[str, Any]:
    cfg = settings.hooks
    return {
        "pre_execute": cfg.pre_execute,
        "post_execute": cfg.post_execute,
        "timeout": cfg.timeout,
        "uuid_verification": cfg.uuid_verification.model_dump(),
        "counters": dict(engine.hooks.counters),
    }
