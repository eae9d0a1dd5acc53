"""The Python API: run a Claude prompt or a command in a fresh process, no service needed.

    from cc_executor import cc_execute
    r = cc_execute("Write a haiku about process groups")     # a fresh `claude -p`
    r = cc_execute(command=["pytest", "-q"], timeout=600)    # any command
    print(r.status, r.exit_code, r.result or r.output)

Every call goes through the same in-process `Engine` the service uses (same process
groups, timeouts, logs and records). One engine serves the whole process: it runs on a
background event-loop thread, so sync callers and async callers on any loop share it,
and it owns its data dir (`<data_dir>/api`) alone. Cancelling a call (Ctrl-C, task
cancellation) cancels its process group before the call returns.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import os
import queue
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cc_executor.config import Settings
from cc_executor.engine import DataDirLocked, Engine, Subscriber, SubscriberClosed
from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import Action, ExecuteClaudeParams, ExecuteParams, Stream
from cc_executor.tasks import command_spec

EventCallback = Callable[[str, dict[str, Any]], Any]
"""Called as callback(method, params) for each notification of the task."""

_EVENT_QUEUE_BYTES = 64 * 1024 * 1024


@dataclass
class ExecutionResult:
    """What a task came to: its status, exit, output and (for Claude) the parsed result."""

    task_id: str
    status: str
    exit_code: int | None
    signal: int | None
    output: str
    stderr: str
    result: str | None = None
    claude_session_id: str | None = None
    total_cost_usd: float | None = None
    error_kind: str | None = None
    error: str | None = None
    verification: str | None = None
    duration_s: float | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_record(cls, rec: TaskRecord, stdout: bytes, stderr: bytes) -> ExecutionResult:
        d = rec.to_dict()
        return cls(
            task_id=rec.task_id,
            status=str(rec.status),
            exit_code=rec.exit_code,
            signal=rec.signal,
            output=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            result=d.get("result"),
            claude_session_id=d.get("claude_session_id"),
            total_cost_usd=d.get("total_cost_usd"),
            error_kind=d.get("error_kind"),
            error=rec.error,
            verification=d.get("verification"),
            duration_s=rec.duration_s,
            record=d,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "record"} | {"record": self.record}


# ---------------------------------------------------------------------------- the engine


class _ApiEngine:
    """One engine on a daemon event-loop thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self.settings: Settings | None = None

    def configure(self, settings: Settings) -> None:
        with self._lock:
            if self._engine is not None:
                raise RuntimeError("configure() must come before the first call")
            self.settings = settings

    def _start(self) -> tuple[asyncio.AbstractEventLoop, Engine]:
        with self._lock:
            if self._loop is not None and self._engine is not None:
                return self._loop, self._engine
            settings = self.settings or Settings()
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="cc-executor-api", daemon=True).start()
            engine = asyncio.run_coroutine_threadsafe(_open_engine(settings), loop).result()
            self._loop, self._engine, self.settings = loop, engine, engine.settings
            atexit.register(self.shutdown)
            return loop, engine

    def submit(self, make: Callable[[Engine, Settings], Coroutine[Any, Any, Any]]) -> _Call:
        loop, engine = self._start()
        settled: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def run() -> Any:
            try:
                return await make(engine, engine.settings)
            finally:
                settled.set_result(None)

        return _Call(asyncio.run_coroutine_threadsafe(run(), loop), settled)

    def shutdown(self) -> None:
        """End every task still running and stop the engine (also run at exit)."""
        with self._lock:
            loop, engine = self._loop, self._engine
            self._loop = self._engine = None
        if loop is None or engine is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(engine.close(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)


@dataclass
class _Call:
    """A call running on the API loop. Cancelling `result` resolves it at once, before
    the coroutine's cleanup (cancelling the task's group) has run; `settled` resolves
    only after that cleanup."""

    result: concurrent.futures.Future[Any]
    settled: concurrent.futures.Future[None]

    def cancel_and_wait(self) -> None:
        self.result.cancel()
        self.settled.result(timeout=60)

    async def cancel_and_wait_async(self) -> None:
        self.result.cancel()
        await asyncio.shield(asyncio.wrap_future(self.settled))


async def _open_engine(settings: Settings) -> Engine:
    base = settings.data_dir
    for data_dir in (base / "api", base / f"api-{os.getpid()}"):
        engine = Engine(settings.model_copy(update={"data_dir": data_dir}))
        try:
            await engine.start()
        except DataDirLocked:
            continue  # another process's API engine owns it
        return engine
    raise DataDirLocked(f"no free API data dir under {base}")


_API = _ApiEngine()


def configure(settings: Settings) -> None:
    """Use these settings for the API's engine (before the first call)."""
    _API.configure(settings)


def shutdown() -> None:
    """Stop the API's engine now (it also stops at interpreter exit)."""
    _API.shutdown()


# ---------------------------------------------------------------------------- one task


def _params(prompt: str | None, command: str | list[str] | None, params: dict[str, Any]) -> Any:
    if (prompt is None) == (command is None):
        raise ValueError("give exactly one of prompt (a Claude task) or command")
    clean = {k: v for k, v in params.items() if v is not None}
    if prompt is not None:
        return ExecuteClaudeParams(prompt=prompt, **clean)
    assert command is not None
    return ExecuteParams(command=command, **clean)


async def _run_on_engine(
    engine: Engine,
    settings: Settings,
    p: ExecuteParams | ExecuteClaudeParams,
    deliver: Callable[[str, dict[str, Any]], None] | None,
) -> ExecutionResult:
    if isinstance(p, ExecuteClaudeParams):
        from cc_executor.claude.runner import claude_spec

        spec = claude_spec(p, settings)
    else:
        spec = command_spec(p, settings)
    sub = Subscriber(_EVENT_QUEUE_BYTES) if deliver is not None else None
    rec = await engine.execute(spec, sub)
    pump = asyncio.create_task(_pump(sub, deliver)) if sub is not None and deliver else None
    try:
        rec = await engine.wait(rec.task_id)
    except asyncio.CancelledError:
        # The caller gave up (Ctrl-C, cancellation): no process may outlive the call.
        await asyncio.shield(_cancel_quietly(engine, rec.task_id))
        raise
    finally:
        if sub is not None:
            sub.close()
        if pump is not None:
            await asyncio.shield(pump)
    out = await _read_all(engine, rec.task_id, Stream.STDOUT)
    err = await _read_all(engine, rec.task_id, Stream.STDERR)
    return ExecutionResult.from_record(rec, out, err)


async def _cancel_quietly(engine: Engine, task_id: str) -> None:
    try:
        await engine.control(task_id, Action.CANCEL)
    except Exception:
        pass  # it ended meanwhile


async def _pump(sub: Subscriber, deliver: Callable[[str, dict[str, Any]], None]) -> None:
    try:
        while True:
            ev = await sub.get()
            deliver(ev.method, ev.params)
    except SubscriberClosed:
        pass


async def _read_all(engine: Engine, task_id: str, stream: Stream) -> bytes:
    path = engine.log_path(task_id, stream)
    return await asyncio.get_running_loop().run_in_executor(None, _read_file, path)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def acc_execute(
    prompt: str | None = None,
    *,
    command: str | list[str] | None = None,
    on_event: EventCallback | None = None,
    **params: Any,
) -> ExecutionResult:
    """Run a Claude prompt (`prompt=`) or a command (`command=`) and return its result.

    `params` are those of `execute_claude` (model, allowed_tools, max_turns, resume, ...)
    or of `execute` (cwd, env, timeout, idle_timeout, name). `on_event(method, params)`
    is called on the caller's loop for each notification (output, claude.event, ...).
    """
    p = _params(prompt, command, params)
    caller = asyncio.get_running_loop()
    deliver = None
    if on_event is not None:
        cb = on_event

        def deliver(method: str, ev: dict[str, Any]) -> None:
            caller.call_soon_threadsafe(_call_back, cb, method, ev)

    call = _API.submit(lambda engine, settings: _run_on_engine(engine, settings, p, deliver))
    try:
        return await asyncio.wrap_future(call.result)
    except asyncio.CancelledError:
        await call.cancel_and_wait_async()
        raise


def _call_back(cb: EventCallback, method: str, params: dict[str, Any]) -> None:
    res = cb(method, params)
    if inspect.isawaitable(res):
        t = asyncio.ensure_future(res)
        _callbacks.add(t)
        t.add_done_callback(_callbacks.discard)


_callbacks: set[asyncio.Future[Any]] = set()  # async callbacks in flight


def cc_execute(
    prompt: str | None = None,
    *,
    command: str | list[str] | None = None,
    on_event: EventCallback | None = None,
    **params: Any,
) -> ExecutionResult:
    """Blocking twin of `acc_execute`. Ctrl-C cancels the task's process group, then raises.

    `on_event` is called in the calling thread.
    """
    p = _params(prompt, command, params)
    events: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
    deliver = (lambda m, e: events.put((m, e))) if on_event is not None else None

    async def run(engine: Engine, settings: Settings) -> ExecutionResult:
        try:
            return await _run_on_engine(engine, settings, p, deliver)
        finally:
            events.put(None)

    call = _API.submit(run)
    try:
        if on_event is not None:
            while (item := events.get()) is not None:
                on_event(*item)
        return call.result.result()
    except KeyboardInterrupt:
        call.cancel_and_wait()
        raise


# ---------------------------------------------------------------------------- task lists


def _list_runner(
    tasks: Sequence[dict[str, Any]], stop_on_failure: bool
) -> Callable[[Engine, Settings], Coroutine[Any, Any, list[ExecutionResult]]]:
    from cc_executor.tasklist import TaskResult, run_task_list

    params = [_params(t.get("prompt"), t.get("command"), _rest(t)) for t in tasks]

    async def run(engine: Engine, settings: Settings) -> list[ExecutionResult]:
        ran: dict[int, ExecutionResult] = {}

        async def run_one(index: int, p: Any, needs: frozenset[str]) -> TaskResult:
            r = await _run_on_engine(engine, settings, p, None)
            ran[index] = r
            return TaskResult(
                index,
                r.status,
                task_id=r.task_id,
                exit_code=r.exit_code,
                output=r.output,
                result=r.result,
                stderr=r.stderr,
                claude_session_id=r.claude_session_id,
                error=r.error,
            )

        results = await run_task_list(params, run_one, stop_on_failure=stop_on_failure)
        out: list[ExecutionResult] = []
        for res in results:
            if res.index in ran:
                out.append(ran[res.index])
            elif res.status == "error":
                raise ValueError(res.error)
        return out

    return run


def _rest(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k not in ("prompt", "command")}


async def acc_execute_list(
    tasks: Sequence[dict[str, Any]], *, stop_on_failure: bool = True
) -> list[ExecutionResult]:
    """Run tasks in order, each in a fresh process; later ones may use earlier results
    through placeholders (`{{previous.output}}`, `{{tasks[0].result}}`; see
    docs/python-api.md). Stops at the first failure unless `stop_on_failure=False`."""
    call = _API.submit(_list_runner(tasks, stop_on_failure))
    try:
        return await asyncio.wrap_future(call.result)
    except asyncio.CancelledError:
        await call.cancel_and_wait_async()
        raise


def cc_execute_list(
    tasks: Sequence[dict[str, Any]], *, stop_on_failure: bool = True
) -> list[ExecutionResult]:
    """Blocking twin of `acc_execute_list`."""
    call = _API.submit(_list_runner(tasks, stop_on_failure))
    try:
        return call.result.result()
    except KeyboardInterrupt:
        call.cancel_and_wait()
        raise
