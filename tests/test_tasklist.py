"""Task lists: placeholder rendering and the sequential runner, with no processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol import ExecuteClaudeParams, ExecuteParams, ProtocolError
from cc_executor.tasklist import (
    RunOne,
    TaskParams,
    TaskResult,
    TemplateError,
    check_templates,
    list_status,
    placeholders,
    render_task,
    render_text,
    run_task_list,
)

R0 = TaskResult(
    0, "completed", task_id="t0", exit_code=0, output="hello world\n\n", stderr="warn\n"
)
R1 = TaskResult(
    1,
    "failed",
    task_id="t1",
    exit_code=2,
    output="x",
    result="the answer",
    claude_session_id="sess-1",
)


def test_fields_and_refs() -> None:
    results = [R0, R1]
    assert render_text("{{tasks[0].output}}", 2, results) == "hello world"
    assert render_text("{{ previous.result }}", 2, results) == "the answer"
    assert render_text("{{tasks[0].result}}", 2, results) == "hello world"  # falls back
    assert render_text("{{previous.exit_code}}/{{tasks[0].exit_code}}", 2, results) == "2/0"
    assert render_text("{{tasks[1].task_id}} {{tasks[1].status}}", 2, results) == "t1 failed"
    assert render_text("{{previous.claude_session_id}}", 2, results) == "sess-1"
    assert render_text("{{tasks[0].stderr}}", 2, results) == "warn"
    killed = TaskResult(0, "cancelled", exit_code=None)
    assert render_text("[{{previous.exit_code}}]", 1, [killed]) == "[]"


def test_filters_and_escape() -> None:
    r = [TaskResult(0, "completed", output="it's $HOME; rm -rf /\n")]
    assert (
        render_text("echo {{previous.output | shell}}", 1, r) == "echo 'it'\"'\"'s $HOME; rm -rf /'"
    )
    assert json.loads(render_text("{{previous.output|json}}", 1, r)) == "it's $HOME; rm -rf /"
    assert (
        render_text(r"literal \{{previous.output}} stays", 1, r)
        == "literal {{previous.output}} stays"
    )


@pytest.mark.parametrize(
    ("text", "index", "message"),
    [
        ("{{previus.output}}", 1, "unknown placeholder"),
        ("{{tasks[0].stdout}}", 1, "unknown field 'stdout'"),
        ("{{tasks[0].output | upper}}", 1, "unknown filter 'upper'"),
        ("{{tasks[1].output}}", 1, "runs later"),
        ("{{tasks[3].output}}", 1, "runs later"),
        ("{{previous.output}}", 0, "before the first"),
        ("{{ }}", 2, "unknown placeholder"),
        ("{{name}}", 2, "unknown placeholder"),
    ],
)
def test_unknown_placeholders_are_clear_errors(text: str, index: int, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        placeholders(text, index)
    assert message in str(info.value)
    assert f"task {index}" in str(info.value)


def test_check_templates_reports_needs_and_walks_lists() -> None:
    tasks: list[dict[str, Any]] = [
        {"command": "echo a"},
        {"command": ["printf", "%s", "{{previous.output}}"]},
        {"prompt": "use {{tasks[0].result}} and {{tasks[1].stderr}} {{tasks[1].exit_code}}"},
    ]
    assert check_templates(tasks) == {0: {"output", "result"}, 1: {"stderr", "exit_code"}}
    with pytest.raises(TemplateError):
        check_templates([{"command": "echo {{previous.output}}"}])


def test_render_task_on_dicts_and_result_dicts() -> None:
    """The Python API passes dicts (its results' to_dict()); same rendering."""
    done = [{"output": "a\n", "result": None, "exit_code": 0, "task_id": "x"}]
    got = render_task({"command": ["echo", "{{previous.output}}"], "timeout": 5}, done)
    assert got == {"command": ["echo", "a"], "timeout": 5}


@given(st.text())
def test_text_without_braces_is_unchanged(text: str) -> None:
    if "{{" not in text:
        assert render_text(text, 0, []) == text


def _runner(outcomes: dict[str, str], seen: list[tuple[int, TaskParams, frozenset[str]]]) -> RunOne:
    """A run_one made from a function: the status each command ends with."""

    async def run_one(index: int, params: TaskParams, need: frozenset[str]) -> TaskResult:
        seen.append((index, params, need))
        if isinstance(params, ExecuteClaudeParams):
            return TaskResult(index, "completed", task_id=f"t{index}", result=params.prompt.upper())
        cmd = params.command if isinstance(params.command, str) else " ".join(params.command)
        if cmd == "refuse":
            raise ProtocolError(-32002, "command not allowed")
        status = outcomes.get(cmd, "completed")
        return TaskResult(
            index,
            status,
            task_id=f"t{index}",
            exit_code=0 if status == "completed" else 1,
            output=f"out:{cmd}\n",
        )

    return run_one


async def test_runner_passes_results_forward_in_order() -> None:
    seen: list[tuple[int, TaskParams, frozenset[str]]] = []
    tasks: list[TaskParams] = [
        ExecuteParams(command="one"),
        ExecuteClaudeParams(prompt="about {{previous.output}}"),
        ExecuteParams(command="got {{tasks[1].result}} {{tasks[0].task_id}}"),
    ]
    updates: list[int] = []
    results = await run_task_list(
        tasks, _runner({}, seen), on_update=lambda rs: updates.append(len(rs))
    )
    assert [r.status for r in results] == ["completed"] * 3
    assert seen[1][1].prompt == "about out:one"  # type: ignore[union-attr]
    assert seen[2][1].command == "got ABOUT OUT:ONE t0"  # type: ignore[union-attr]
    assert seen[0][2] == {"output", "task_id"} and seen[1][2] == {"result"}
    assert updates == [1, 2, 3]
    assert list_status(results, 3) == "completed"


async def test_runner_stops_on_failure_and_marks_the_rest_skipped() -> None:
    seen: list[tuple[int, TaskParams, frozenset[str]]] = []
    tasks: list[TaskParams] = [
        ExecuteParams(command="bad"),
        ExecuteParams(command="next"),
        ExecuteParams(command="last"),
    ]
    results = await run_task_list(tasks, _runner({"bad": "failed"}, seen))
    assert [r.status for r in results] == ["failed", "skipped", "skipped"]
    assert len(seen) == 1 and list_status(results, 3) == "failed"
    results = await run_task_list(tasks, _runner({"bad": "failed"}, seen), stop_on_failure=False)
    assert [r.status for r in results] == ["failed", "completed", "completed"]


async def test_runner_reports_refused_and_unrenderable_tasks() -> None:
    seen: list[tuple[int, TaskParams, frozenset[str]]] = []
    tasks: list[TaskParams] = [
        ExecuteParams(command="refuse"),
        ExecuteParams(command="after"),
    ]
    results = await run_task_list(tasks, _runner({}, seen), stop_on_failure=False)
    assert results[0].status == "error" and "not allowed" in (results[0].error or "")
    assert results[0].to_dict()["code"] == -32002
    assert results[1].status == "completed"
    # A placeholder can render to something the params refuse: that task is an error.
    tasks = [ExecuteParams(command="x"), ExecuteParams(command="{{previous.stderr}}")]
    results = await run_task_list(tasks, _runner({}, seen))
    assert results[1].status == "error"
    assert "command must not be empty" in (results[1].error or "")


async def test_runner_checks_every_placeholder_before_running() -> None:
    seen: list[tuple[int, TaskParams, frozenset[str]]] = []
    tasks: list[TaskParams] = [
        ExecuteParams(command="one"),
        ExecuteParams(command="{{tasks[5].output}}"),
    ]
    with pytest.raises(TemplateError):
        await run_task_list(tasks, _runner({}, seen))
    assert seen == []


async def test_cancelling_the_runner_starts_nothing_more() -> None:
    started: list[int] = []
    began = asyncio.Event()
    gate = asyncio.Event()

    async def run_one(index: int, params: TaskParams, need: frozenset[str]) -> TaskResult:
        started.append(index)
        began.set()
        await gate.wait()
        return TaskResult(index, "completed")

    tasks: list[TaskParams] = [ExecuteParams(command="a"), ExecuteParams(command="b")]
    t = asyncio.ensure_future(run_task_list(tasks, run_one))
    await began.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert started == [0]
