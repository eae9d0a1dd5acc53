"""Hooks: commands run around each task with the task record as JSON on stdin.

`pre_execute` commands run before a task starts; a failing one (non-zero exit, its own
timeout, or a shell that cannot start) refuses the task with HOOK_REJECTED. `post_execute`
commands run after it ends; their outcome is recorded on the task. A hook starts through
`engine/process.py` like a task: its own process group, tagged with
`CC_EXECUTOR_TASK_ID=<task_id>.<phase>-<n>`, written to the spawn journal, TERM then KILL
at its timeout, never blocking the event loop; after a crash the next start reaps it
(`HookRunner.recover`). The built-in `uuid_verification` hook is applied by the Claude
runner; its outcomes are counted here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

import orjson

from cc_executor.engine import process
from cc_executor.engine.journal import TASK_ENV, HelperSpawn, SpawnJournal, reap_helper
from cc_executor.protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from cc_executor.config import Settings
    from cc_executor.engine.engine import Engine
    from cc_executor.engine.records import TaskRecord

log = logging.getLogger(__name__)

_OUTPUT_TAIL = 2000  # characters of a hook's stdout/stderr kept on the record


def _tail(f: IO[bytes]) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _OUTPUT_TAIL))
    return f.read().decode("utf-8", "replace")[-_OUTPUT_TAIL:]


class HookRunner:
    def __init__(self, settings: Settings, journal: SpawnJournal) -> None:
        self.settings = settings
        self.journal = journal
        self.counters: dict[str, int] = {
            "pre_runs": 0,
            "pre_failures": 0,
            "post_runs": 0,
            "post_failures": 0,
            "uuid_passed": 0,
            "uuid_failed": 0,
            "uuid_skipped": 0,
        }

    async def run(self, record: TaskRecord, phase: str, n: int, command: str) -> dict[str, Any]:
        """Run hook `n` of a phase; returns {command, exit_code, timed_out, duration_s,
        stdout, stderr} (and `error` when the shell could not start).

        The hook reads its JSON from a file and writes its output to temporary files, not
        pipes: a process it leaves behind (even one that left the group) cannot hold a pipe
        open and stall the task past the timeout. `process.run_to_end` ends its group.
        """
        helper = HelperSpawn(f"{record.task_id}.{phase}-{n}", record.task_id, phase, command)
        payload = orjson.dumps({"phase": phase, "task": record.to_dict()}, default=str)
        started = time.monotonic()
        res: dict[str, Any] = {"command": command, "exit_code": None, "timed_out": False}
        with (
            tempfile.TemporaryFile() as in_f,
            tempfile.TemporaryFile() as out_f,
            tempfile.TemporaryFile() as err_f,
        ):
            in_f.write(payload)
            in_f.seek(0)
            self.journal.append_helper(helper)  # before the spawn too: see engine/journal.py
            try:
                proc = process.spawn(
                    [self.settings.shell, "-c", command],
                    None,
                    {**os.environ, TASK_ENV: helper.tag},
                    stdin=in_f,
                    stdout=out_f,
                    stderr=err_f,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                self.journal.helper_ended(helper)
                return {**res, "duration_s": 0.0, "stdout": "", "stderr": "", "error": str(exc)}
            helper.pid = proc.pid
            helper.start_ticks = process.leader_start_ticks(proc)
            self.journal.append_helper(helper)  # on disk now: a crash cannot orphan it
            try:
                res["timed_out"] = await process.run_to_end(
                    proc, self.settings.hooks.timeout, self.settings.kill_grace_seconds
                )
            finally:
                self.journal.helper_ended(helper)  # run_to_end returns once the group is gone
            res["exit_code"] = proc.returncode
            res["duration_s"] = round(time.monotonic() - started, 4)
            res["stdout"], res["stderr"] = _tail(out_f), _tail(err_f)
        return res

    async def recover(self, stale: Mapping[str, TaskRecord]) -> None:
        """After a crash: end every hook the last run left running (its whole group, start
        ticks checked) and add its outcome (`lost: true`) to its task's record in `stale`,
        the records recovery is about to save. A `pre_execute` hook's task was never
        created, so only the log tells of it."""
        for helper in self.journal.stale_helpers():
            killed = await reap_helper(helper)
            what = "its leftover processes were killed" if killed else "nothing of it was left"
            log.warning(
                "a %s hook of task %s was running when the service stopped: %s",
                helper.role,
                helper.task_id,
                what,
                extra={"task_id": helper.task_id},
            )
            rec = stale.get(helper.task_id)
            if rec is None:
                continue
            rec.extra.setdefault("hooks", {}).setdefault(helper.role, []).append(
                {
                    "command": helper.command,
                    "exit_code": None,
                    "timed_out": False,
                    "lost": True,
                    "error": f"the service stopped while this hook ran; {what}",
                }
            )

    async def pre(self, record: TaskRecord) -> None:
        cfg = self.settings.hooks
        results = []
        for n, command in enumerate(cfg.pre_execute):
            self.counters["pre_runs"] += 1
            res = await self.run(record, "pre_execute", n, command)
            results.append(res)
            if res["exit_code"] != 0 or res["timed_out"]:
                self.counters["pre_failures"] += 1
                if "error" in res:
                    why = f"could not start ({res['error']})"
                elif res["timed_out"]:
                    why = "timed out"
                else:
                    why = f"exited {res['exit_code']}"
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
        for n, command in enumerate(cfg.post_execute):
            self.counters["post_runs"] += 1
            res = await self.run(record, "post_execute", n, command)
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
