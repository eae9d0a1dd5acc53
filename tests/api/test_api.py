"""The Python API runs real processes through the in-process engine (no service)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

import cc_executor
from cc_executor.api import EventCallback
from cc_executor.config import Settings
from tests.support import FAKE_CLAUDE, live_members, wait_until, wait_until_sync


@pytest.fixture(scope="module", autouse=True)
def api_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("api-data")
    cc_executor.shutdown()
    from cc_executor import api

    api._API.settings = None
    cc_executor.configure(
        Settings(data_dir=data, claude_bin=str(FAKE_CLAUDE), kill_grace_seconds=1.0)
    )
    yield data
    cc_executor.shutdown()


def test_command_result_has_status_exit_and_both_streams() -> None:
    r = cc_executor.cc_execute(command="echo out; echo err >&2; exit 3")
    assert (r.status, r.exit_code, r.ok) == ("failed", 3, False)
    assert r.output == "out\n"
    assert r.stderr == "err\n"
    assert r.result is None


def test_list_command_is_exec_without_shell() -> None:
    r = cc_executor.cc_execute(command=["echo", "$HOME", ";", "x"])
    assert r.ok
    assert r.output == "$HOME ; x\n"


def test_claude_prompt_returns_parsed_record(fake_claude_state: Path) -> None:
    r = cc_executor.cc_execute("plan the work", max_turns=3)
    assert r.ok, r
    assert r.result == "Fake Claude answer to: plan the work"
    assert r.claude_session_id
    assert r.total_cost_usd is not None and r.total_cost_usd > 0
    assert r.error_kind is None
    # The conversation can be resumed through the same API.
    again = cc_executor.cc_execute("and then?", resume=r.claude_session_id)
    assert again.claude_session_id == r.claude_session_id
    assert "turn 2" in (again.result or "")


def test_claude_error_kind_reaches_the_result(fake_claude_state: Path) -> None:
    r = cc_executor.cc_execute("hi FAKE_ERROR=auth")
    assert r.status == "failed"
    assert r.error_kind == "auth"
    assert r.error


def test_claude_retries_return_the_last_attempt(fake_claude_state: Path) -> None:
    events: list[str] = []
    r = cc_executor.cc_execute(
        "FAKE_ERROR=api_error FAKE_ERROR_TIMES=1 try again",
        retries=2,
        on_event=lambda method, params: events.append(params["task_id"]),
    )
    assert r.ok, r
    assert r.record["attempt"] == 2 and r.record["attempts"] == 2
    assert r.result and r.result.endswith("(turn 2, remembers 1 earlier prompts)")
    assert {r.record["retry_of"], r.task_id} <= set(events)  # both attempts were followed


def test_sync_callback_runs_in_calling_thread(fake_claude_state: Path) -> None:
    seen: list[tuple[str, int]] = []
    cc_executor.cc_execute(
        "FAKE_TOOL_USE", on_event=lambda m, p: seen.append((m, threading.get_ident()))
    )
    methods = [m for m, _ in seen]
    assert methods[0] == "process.started"
    assert methods[-1] == "process.completed"
    assert "claude.event" in methods
    assert {tid for _, tid in seen} == {threading.get_ident()}


async def test_async_callback_runs_on_callers_loop() -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def on_event(method: str, params: dict[str, object]) -> None:
        assert asyncio.get_running_loop() is loop
        seen.append(method)

    r = await cc_executor.acc_execute(command="printf 'a\\nb\\n'", on_event=on_event)
    assert r.output == "a\nb\n"
    await wait_until(lambda: "process.completed" in seen)
    assert seen[0] == "process.started" and "process.output" in seen


async def test_concurrent_async_calls_share_the_engine() -> None:
    results = await asyncio.gather(
        *(cc_executor.acc_execute(command=["sh", "-c", f"echo {i}"]) for i in range(8))
    )
    assert [r.output for r in results] == [f"{i}\n" for i in range(8)]
    assert len({r.task_id for r in results}) == 8


async def test_concurrent_calls_each_see_all_of_their_own_task() -> None:
    seen: dict[int, list[tuple[str, dict[str, object]]]] = {i: [] for i in range(8)}

    def recorder(i: int) -> EventCallback:
        return lambda method, params: seen[i].append((method, params))

    results = await asyncio.gather(
        *(cc_executor.acc_execute(command=["echo", str(i)], on_event=recorder(i)) for i in range(8))
    )
    for i, r in enumerate(results):
        await wait_until(lambda i=i: bool(seen[i]) and seen[i][-1][0] == "process.completed")
        methods = [m for m, _ in seen[i]]
        assert methods[0] == "process.started", methods
        assert {str(p["task_id"]) for _, p in seen[i]} == {r.task_id}
        assert [p["data"] for m, p in seen[i] if m == "process.output"] == [f"{i}\n"]


def test_timeout_ends_the_whole_group() -> None:
    r = cc_executor.cc_execute(command="sleep 300 & sleep 300 & echo started; wait", timeout=0.5)
    assert r.status == "timed_out"
    assert r.output == "started\n"  # output so far is kept
    pgid = r.record["pgid"]
    assert not live_members(pgid)


async def test_cancelling_the_call_cancels_the_group() -> None:
    started = asyncio.Event()
    pids: list[int] = []

    def on_event(method: str, params: dict[str, object]) -> None:
        if method == "process.started":
            pids.append(int(str(params["pid"])))
            started.set()

    call = asyncio.create_task(
        cc_executor.acc_execute(command="sleep 300 & sleep 300; wait", on_event=on_event)
    )
    await started.wait()
    assert await wait_until(lambda: len(live_members(pids[0])) >= 2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not live_members(pids[0])


def test_ctrl_c_in_a_sync_caller_leaves_no_process(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            import cc_executor
            from cc_executor.config import Settings
            cc_executor.configure(Settings(data_dir=Path({str(tmp_path / "d")!r})))
            def on_event(method, params):
                if method == "process.started":
                    print(params["pid"], flush=True)
            try:
                cc_executor.cc_execute(command="sleep 300 & sleep 300; wait", on_event=on_event)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(130)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout is not None
    pgid = int(proc.stdout.readline())
    assert wait_until_sync(lambda: len(live_members(pgid)) >= 2)
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 130
    assert "interrupted" in rest
    assert not live_members(pgid)


def test_bad_calls_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of prompt"):
        cc_executor.cc_execute("a prompt", command="ls")
    with pytest.raises(ValueError, match="exactly one of prompt"):
        cc_executor.cc_execute()
    with pytest.raises(ValidationError):
        cc_executor.cc_execute(command="ls", timeout=-1)
    with pytest.raises(ValidationError):
        cc_executor.cc_execute(command="ls", no_such_param=1)


def test_task_list_passes_results_forward(fake_claude_state: Path) -> None:
    results = cc_executor.cc_execute_list(
        [
            {"command": "python3 -c 'print(6 * 7)'"},
            {"prompt": "explain {{previous.output}}"},
            {"command": ["echo", "first said {{tasks[0].output}}"]},
        ]
    )
    assert [r.status for r in results] == ["completed"] * 3
    assert results[1].result == "Fake Claude answer to: explain 42"
    assert results[2].output == "first said 42\n"


def test_task_list_stops_at_the_first_failure() -> None:
    results = cc_executor.cc_execute_list(
        [{"command": "exit 4"}, {"command": "echo never"}], stop_on_failure=True
    )
    assert [(r.status, r.exit_code) for r in results] == [("failed", 4)]
    both = cc_executor.cc_execute_list(
        [{"command": "exit 4"}, {"command": "echo {{previous.exit_code}}"}],
        stop_on_failure=False,
    )
    assert both[1].output == "4\n"


def test_task_list_rejects_a_bad_placeholder_before_running() -> None:
    with pytest.raises(ValueError, match="tasks\\[5\\]"):
        cc_executor.cc_execute_list(
            [{"command": "echo hi"}, {"command": "echo {{tasks[5].output}}"}]
        )
