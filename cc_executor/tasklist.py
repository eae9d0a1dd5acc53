"""Task lists: run tasks in order, each in a fresh process, later ones using earlier results.

One implementation shared by the MCP bridge's `execute_task_list` tool and the Python API: a
pure template renderer plus a sequential runner that is handed a function running one task.

Placeholders (inside any string of a task: `command`, `prompt`, `cwd`, `resume`, ...):

    {{tasks[N].FIELD}}      a field of task N (0-based) of this list; N must come earlier
    {{previous.FIELD}}      a field of the task just before this one

FIELD is one of:

    output             stdout as text, trailing newlines stripped (like shell `$(...)`);
                       for a Claude task, its final answer text
    result             a Claude task's final answer text; for a command, same as `output`
    stderr             stderr as text, trailing newlines stripped
    exit_code          the exit code ("" if the process was killed by a signal)
    status             the final status: completed, failed, cancelled, timed_out, ...
    task_id            the executor's task id (use it with status/output tools)
    claude_session_id  a Claude task's session id (pass it as `resume` to continue it)

A filter may follow: `{{previous.output | shell}}` quotes the value for a POSIX shell
(`shlex.quote`), `{{previous.output | json}}` writes it as a JSON string literal. Spaces
inside the braces are allowed. Write `\\{{` for a literal `{{`. Anything else between `{{`
and `}}` is an error naming the task and the placeholder, reported before any task runs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from cc_executor.problems import problems
from cc_executor.protocol import ProtocolError
from cc_executor.tasks import TaskParams

FIELDS = frozenset(
    {"output", "result", "stderr", "exit_code", "status", "task_id", "claude_session_id"}
)
FILTERS: dict[str, Callable[[str], str]] = {
    "shell": shlex.quote,
    "json": lambda v: json.dumps(v, ensure_ascii=False),
}
TEXT_FIELDS = frozenset({"output", "result", "stderr"})
"""Fields whose value is a task's output: the runner fetches it only when referenced."""

_PLACEHOLDER = re.compile(r"(\\)?\{\{(.*?)\}\}", re.DOTALL)
_EXPR = re.compile(r"^(?:(previous)|tasks\[(\d+)\])\.(\w+)(?:\s*\|\s*(\w+))?$")


class TemplateError(ValueError):
    """A placeholder that cannot be resolved (unknown name, field, filter, or a later task)."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    text: str  # as written, braces included
    index: int | None  # None: `previous`
    field: str
    filter: str | None

    def target(self, current: int) -> int:
        return current - 1 if self.index is None else self.index


def _parse(expr: str, text: str, current: int) -> Placeholder:
    m = _EXPR.match(expr.strip())
    if m is None:
        raise TemplateError(
            f"task {current}: unknown placeholder {text!r}; use {{{{tasks[N].FIELD}}}} or "
            f"{{{{previous.FIELD}}}} with FIELD one of {', '.join(sorted(FIELDS))} "
            "(write \\{{ for a literal '{{')"
        )
    previous, index, fld, flt = m.groups()
    ph = Placeholder(text, None if previous else int(index), fld, flt)
    if fld not in FIELDS:
        raise TemplateError(
            f"task {current}: unknown field {fld!r} in {text!r}; "
            f"known fields: {', '.join(sorted(FIELDS))}"
        )
    if flt is not None and flt not in FILTERS:
        raise TemplateError(
            f"task {current}: unknown filter {flt!r} in {text!r}; "
            f"known filters: {', '.join(sorted(FILTERS))}"
        )
    target = ph.target(current)
    if target < 0:
        raise TemplateError(f"task {current}: {text!r} refers to a task before the first one")
    if target >= current:
        raise TemplateError(
            f"task {current}: {text!r} refers to task {target}, which runs later; "
            "a task can only use results of tasks before it"
        )
    return ph


def placeholders(text: str, current: int) -> list[Placeholder]:
    """Every placeholder in `text` (for task number `current`), validated."""
    found = []
    for m in _PLACEHOLDER.finditer(text):
        if m.group(1):
            continue
        found.append(_parse(m.group(2), m.group(0), current))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def check_templates(tasks: Sequence[Mapping[str, Any]]) -> dict[int, set[str]]:
    """Validate every placeholder of a list before anything runs.

    Returns, for each task index that later tasks refer to, the fields they use, so the
    runner knows which outputs it must keep.
    """
    needs: dict[int, set[str]] = {}
    for i, task in enumerate(tasks):
        for text in _strings(task):
            for ph in placeholders(text, i):
                needs.setdefault(ph.target(i), set()).add(ph.field)
    return needs


@dataclass
class TaskResult:
    """What one task of a list gave: what placeholders read and what the caller gets back."""

    index: int
    status: str
    task_id: str | None = None
    exit_code: int | None = None
    output: str = ""
    result: str | None = None
    stderr: str = ""
    claude_session_id: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the runner's own extra fields

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def value(self, name: str) -> str:
        return field_value(self.__dict__, name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        details = d.pop("details")
        d.update(details)
        return {k: v for k, v in d.items() if v is not None and v != ""}


def field_value(result: Mapping[str, Any], name: str) -> str:
    """The text a placeholder field stands for, from a result's fields."""
    v = result.get(name)
    if name == "result" and v is None:
        v = result.get("output")
    if v is None:
        return ""
    if name in TEXT_FIELDS:
        return str(v).rstrip("\n")
    return str(v)


EarlierResult = TaskResult | Mapping[str, Any]
"""A finished task as placeholders see it: a `TaskResult`, or a dict with the same fields."""


def _lookup(result: EarlierResult, name: str) -> str:
    return result.value(name) if isinstance(result, TaskResult) else field_value(result, name)


def render_text(text: str, current: int, results: Sequence[EarlierResult]) -> str:
    """Replace the placeholders of one string for task `current`, given earlier results."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(0)[1:]  # \{{...}} -> {{...}}
        ph = _parse(m.group(2), m.group(0), current)
        value = _lookup(results[ph.target(current)], ph.field)
        return FILTERS[ph.filter](value) if ph.filter else value

    return _PLACEHOLDER.sub(sub, text)


def render(value: Any, current: int, results: Sequence[EarlierResult]) -> Any:
    """Render every string inside a task's params (dicts and lists walked)."""
    if isinstance(value, str):
        return render_text(value, current, results)
    if isinstance(value, Mapping):
        return {k: render(v, current, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, current, results) for v in value]
    return value


def render_task(
    task: Mapping[str, Any], results: Sequence[EarlierResult], index: int | None = None
) -> dict[str, Any]:
    """A task's params (a dict) with its placeholders filled from the results before it.

    `index` is the task's place in its list; by default the next one after `results`.
    """
    current = len(results) if index is None else index
    rendered: dict[str, Any] = render(task, current, results)
    return rendered


RunOne = Callable[[int, TaskParams, frozenset[str]], Awaitable[TaskResult]]
"""Runs task `index` to its end and returns its result. The set names the text fields
(`output`, `result`, `stderr`) later tasks need, so the runner fetches only those."""


async def run_task_list(
    tasks: Sequence[TaskParams],
    run_one: RunOne,
    *,
    stop_on_failure: bool = True,
    on_update: Callable[[list[TaskResult]], None] | None = None,
) -> list[TaskResult]:
    """Run `tasks` in order, one at a time; one `TaskResult` per task, in order.

    Placeholders are checked before the first task starts (`TemplateError`). A task that
    fails (any final status but `completed`, or an error before it could start) stops the
    list when `stop_on_failure`; the tasks after it are reported `skipped`. Cancelling the
    caller cancels the running task's wait (the caller's `run_one` decides what that means
    for the process) and starts nothing more.
    """
    needs = check_templates([t.model_dump(exclude_unset=True) for t in tasks])
    results: list[TaskResult] = []
    stopped = False
    for i, task in enumerate(tasks):
        if stopped:
            res = TaskResult(i, "skipped", error="not run: an earlier task failed")
        else:
            try:
                data = render_task(task.model_dump(exclude_unset=True), results, i)
                rendered = type(task).model_validate(data)
            except TemplateError as exc:
                res = TaskResult(i, "error", error=f"task {i}: {exc}")
            except ValidationError as exc:  # a placeholder's value made the task invalid
                why = "; ".join(problems(exc.errors(include_url=False)))
                res = TaskResult(i, "error", error=f"task {i}: {why}")
            else:
                try:
                    res = await run_one(i, rendered, frozenset(needs.get(i, ())))
                except ProtocolError as exc:
                    res = TaskResult(i, "error", error=exc.message, details={"code": exc.code})
            stopped = stop_on_failure and not res.ok
        results.append(res)
        if on_update is not None:
            on_update(results)
    return results


def list_status(results: Sequence[TaskResult], total: int) -> str:
    """The status of a whole list: running, completed, or failed."""
    if len(results) < total:
        return "running"
    return "completed" if all(r.ok for r in results) else "failed"
