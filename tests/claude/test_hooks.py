"""Hooks through the real service: UUID verification, pre/post commands, timeouts, hook_status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from cc_executor.claude.runner import UUID_INSTRUCTION
from cc_executor.client import ExecutorClient
from cc_executor.config import HooksConfig, UuidVerificationHook
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from tests.claude.conftest import StartService, run_claude
from tests.support import live_members, pid_alive, wait_until

pytestmark = pytest.mark.usefixtures("fake_claude_state")


def uuid_hooks(fail_on_missing: bool = True, **kw: Any) -> HooksConfig:
    return HooksConfig(
        uuid_verification=UuidVerificationHook(enabled=True, fail_on_missing=fail_on_missing),
        **kw,
    )


async def hook_status(client: ExecutorClient) -> dict[str, Any]:
    result: dict[str, Any] = await client.call(Method.HOOK_STATUS)
    return result


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


# ------------------------------------------------------------------------ UUID verification


async def test_uuid_verification_passed_failed_skipped_and_counters(
    start_service: StartService,
) -> None:
    _, client = await start_service(hooks=uuid_hooks())

    ok = await run_claude(client, "hello")
    rec = ok.record
    expected = rec["expected_uuid"]
    assert rec["verification"] == "passed" and ok.done["verification"] == "passed"
    assert rec["status"] == "completed"
    assert rec["result"].endswith("\n" + expected)
    assert rec["prompt"] == "hello"  # the caller's prompt; the CLI got the instruction too
    assert rec["argv"][-1] == "hello" + UUID_INSTRUCTION.format(uuid=expected)

    missing = await run_claude(client, "hello FAKE_OMIT_UUID")
    rec = missing.record
    assert rec["expected_uuid"] != expected  # fresh per task
    assert rec["verification"] == "failed" and rec["status"] == "failed"
    assert rec["error_kind"] is None and "UUID verification failed" in rec["error"]
    assert missing.done["status"] == "failed"

    errored = await run_claude(client, "hello FAKE_ERROR=auth")
    assert errored.record["verification"] == "skipped"
    assert errored.record["error_kind"] == "auth"

    status = await hook_status(client)
    assert status["uuid_verification"] == {"enabled": True, "fail_on_missing": True}
    assert status["pre_execute"] == [] and status["post_execute"] == []
    counters = status["counters"]
    assert (counters["uuid_passed"], counters["uuid_failed"], counters["uuid_skipped"]) == (1, 1, 1)


async def test_uuid_missing_without_fail_on_missing_completes(
    start_service: StartService,
) -> None:
    _, client = await start_service(hooks=uuid_hooks(fail_on_missing=False))
    run = await run_claude(client, "hello FAKE_OMIT_UUID")
    assert run.record["verification"] == "failed"
    assert run.record["status"] == "completed" and run.record["error"] is None


async def test_uuid_skipped_on_cancel(start_service: StartService) -> None:
    _, client = await start_service(hooks=uuid_hooks())
    handle = await client.execute_claude("FAKE_HANG")
    await handle.cancel()
    rec = await client.status(handle.task_id)
    assert rec["status"] == "cancelled" and rec["verification"] == "skipped"


# ------------------------------------------------------------------------ pre/post commands


async def test_pre_hook_refuses_the_task(
    start_service: StartService, fake_claude_state: Path
) -> None:
    refuse = "cat >/dev/null; echo 'prompt mentions a secret' >&2; exit 3"
    _, client = await start_service(hooks=HooksConfig(pre_execute=[refuse]))
    with pytest.raises(ProtocolError) as info:
        await client.execute_claude("my secret")
    err = info.value
    assert err.code == ErrorCode.HOOK_REJECTED == -32006
    assert "task refused" in err.message
    assert err.data["exit_code"] == 3 and err.data["timed_out"] is False
    assert err.data["stderr"] == "prompt mentions a secret\n"
    assert (await client.status())["tasks"] == []  # no task, and the CLI never ran:
    assert _files(fake_claude_state) == []
    counters = (await hook_status(client))["counters"]
    assert (counters["pre_runs"], counters["pre_failures"]) == (1, 1)


async def test_pre_and_post_hooks_get_the_record_and_are_recorded(
    start_service: StartService, tmp_path: Path
) -> None:
    pre_file, post_file = tmp_path / "pre.json", tmp_path / "post.json"
    hooks = HooksConfig(
        pre_execute=[f"cat > '{pre_file}'; echo accepted"],
        post_execute=[f"cat > '{post_file}'; echo logged", "echo broken >&2; exit 5"],
    )
    _, client = await start_service(hooks=hooks)
    run = await run_claude(client, "hello", name="hooked")
    rec = run.record
    assert rec["status"] == "completed"  # a failing post hook does not change the outcome

    pre = json.loads(pre_file.read_text())
    assert pre["phase"] == "pre_execute"
    assert pre["task"]["task_id"] == run.task_id and pre["task"]["status"] == "queued"
    assert pre["task"]["kind"] == "claude" and pre["task"]["prompt"] == "hello"
    assert pre["task"]["name"] == "hooked" and pre["task"]["argv"][-1] == "hello"

    post = json.loads(post_file.read_text())
    assert post["phase"] == "post_execute"
    assert post["task"]["status"] == "completed" and post["task"]["exit_code"] == 0
    assert post["task"]["result"] == rec["result"]
    assert post["task"]["claude_session_id"] == rec["claude_session_id"]

    (pre_res,) = rec["hooks"]["pre_execute"]
    assert pre_res["exit_code"] == 0 and pre_res["stdout"] == "accepted\n"
    logged, broken = rec["hooks"]["post_execute"]
    assert logged["exit_code"] == 0 and logged["stdout"] == "logged\n"
    assert broken["exit_code"] == 5 and broken["stderr"] == "broken\n"
    assert broken["timed_out"] is False

    status = await hook_status(client)
    assert status["pre_execute"] == hooks.pre_execute
    assert status["post_execute"] == hooks.post_execute
    assert status["timeout"] == hooks.timeout
    assert status["counters"] == {
        "pre_runs": 1,
        "pre_failures": 0,
        "post_runs": 2,
        "post_failures": 1,
        "uuid_passed": 0,
        "uuid_failed": 0,
        "uuid_skipped": 0,
    }


async def test_hanging_pre_hook_is_killed_at_its_timeout_while_the_loop_serves(
    start_service: StartService, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hook.pid"
    hang = f"echo $$ > '{pid_file}'; exec sleep 60"
    _, client = await start_service(hooks=HooksConfig(pre_execute=[hang], timeout=2.0))
    call = asyncio.create_task(client.execute_claude("hello"))
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    hook_pid = int(pid_file.read_text())
    # The hook runs; the service keeps answering other requests on the same connection.
    assert (await client.ping())["pong"] is True
    assert (await client.status())["tasks"] == []
    assert not call.done()
    with pytest.raises(ProtocolError) as info:
        await asyncio.wait_for(call, 30)
    assert info.value.code == ErrorCode.HOOK_REJECTED
    assert info.value.data["timed_out"] is True and "timed out" in info.value.message
    assert not live_members(hook_pid)  # its whole group was killed


async def test_hanging_post_hook_is_killed_and_recorded(
    start_service: StartService, tmp_path: Path
) -> None:
    _, client = await start_service(hooks=HooksConfig(post_execute=["exec sleep 60"], timeout=0.5))
    run = await run_claude(client, "hello")
    assert run.record["status"] == "completed"
    (res,) = run.record["hooks"]["post_execute"]
    # Ended as a task is: SIGTERM first, and sleep dies of it (SIGKILL only after the grace).
    assert res["timed_out"] is True and res["exit_code"] == -signal.SIGTERM
    assert (await hook_status(client))["counters"]["post_failures"] == 1


async def test_hook_children_do_not_outlive_the_hook(
    start_service: StartService, tmp_path: Path
) -> None:
    """A background child left in the hook's group is killed when the hook ends; one that
    left the group (setsid) keeping the hook's stdout open cannot stall the task, and it
    is ended too: it carries the hook's tag (process.end_tagged)."""
    child, escaped, fifo = tmp_path / "child.pid", tmp_path / "escaped.pid", tmp_path / "fifo"
    os.mkfifo(fifo)
    hook = (
        f"sleep 60 & echo $! > '{child}'; "
        # The escaped process reports its pid through the fifo once it has left the group.
        f"setsid sh -c 'echo $$ > \"{fifo}\"; exec sleep 60' & "
        f"read pid < '{fifo}'; echo $pid > '{escaped}'; echo started"
    )
    _, client = await start_service(hooks=HooksConfig(pre_execute=[hook], timeout=20.0))
    try:
        run = await run_claude(client, "hello")
        (res,) = run.record["hooks"]["pre_execute"]
        assert res["exit_code"] == 0 and res["timed_out"] is False
        assert res["stdout"] == "started\n"
        assert run.record["status"] == "completed"
        assert await wait_until(lambda: not pid_alive(int(child.read_text())))
        assert await wait_until(lambda: not pid_alive(int(escaped.read_text())))
    finally:
        if escaped.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(escaped.read_text()), signal.SIGKILL)


async def test_a_hook_past_its_timeout_gets_term_then_kill_with_its_whole_group(
    start_service: StartService, tmp_path: Path
) -> None:
    """The hook logs the TERM and goes on; its child ignores TERM: both die of the SIGKILL
    that follows after kill_grace_seconds, before the task's completion is sent."""
    hook = (
        f"trap 'echo TERM >> \"{tmp_path}/marks\"' TERM; "
        f'sh -c \'trap "" TERM; echo $$ > "{tmp_path}/child.pid"; exec sleep 60\' & '
        "while :; do wait; done"
    )
    svc, client = await start_service(hooks=HooksConfig(post_execute=[hook], timeout=2.0))
    run = await run_claude(client, "hello")
    (res,) = run.record["hooks"]["post_execute"]
    assert res["timed_out"] is True and res["exit_code"] == -signal.SIGKILL
    assert (tmp_path / "marks").read_text() == "TERM\n"  # TERM first, and it was survived
    assert res["duration_s"] >= 2.0 + svc.settings.kill_grace_seconds
    assert not pid_alive(int((tmp_path / "child.pid").read_text()))  # gone, no polling
    assert run.record["status"] == "completed"


async def test_a_pre_hook_whose_shell_cannot_start_refuses_the_task(
    start_service: StartService, fake_claude_state: Path
) -> None:
    _, client = await start_service(
        shell="/nonexistent/sh", hooks=HooksConfig(pre_execute=["true"])
    )
    with pytest.raises(ProtocolError) as info:
        await client.execute_claude("hello")
    assert info.value.code == ErrorCode.HOOK_REJECTED
    assert "could not start" in info.value.message and "/nonexistent/sh" in info.value.message
    assert info.value.data["exit_code"] is None and info.value.data["timed_out"] is False
    assert _files(fake_claude_state) == []  # the CLI never ran
