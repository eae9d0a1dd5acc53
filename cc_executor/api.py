"""The Python API: run a Claude prompt or a command in a fresh process, no service needed.

    from cc_executor import cc_execute
    r = cc_execute("Write a haiku about process groups")     # a fresh `claude -p`
    r = cc_execute(command=["pytest", "-q"], timeout=600)    # any command
    print(r.status, r.exit_code, r.result or r.output)

Every call goes through an in-process transport (`cc_executor.transport.inprocess`): the
service's own handlers on an engine in this process, so the same process groups, timeouts,
logs, records and replies. One transport serves the whole process: it runs on a background
event-loop thread, so sync callers and async callers on any loop share it, and its engine
owns its data dir (`<data_dir>/api`) alone. Cancelling a call (Ctrl-C, task cancellation)
cancels its process group before the call returns; SIGTERM to the process (while nothing
else handles it) ends every task's group, then the process (`transport/sigterm.py`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cc_executor.client import output_bytes
from cc_executor.config import Settings
from cc_executor.protocol import (
    Action,
    ExecuteClaudeParams,
    ExecuteParams,
    Method,
    Notification,
    ProtocolError,
    Stream,
)
from cc_executor.tasks import TaskParams
from cc_executor.transport import sigterm
from cc_executor.transport.inprocess import InProcessTransport

EventCallback = Callable[[str, dict[str, Any]], Any]
"""Called as callback(method, params) for each notification of the task."""
Deliver = Callable[[str, dict[str, Any]], None]
"""Hands one notification on to the caller's thread or loop (never blocks)."""

_PAGE_BYTES = 16 * 1024 * 1024  # the most one `output` call returns

# A signal sent to the process (SIGTERM, Ctrl-C's SIGINT) may be taken by any of its
# threads, and its Python handler runs on the main thread only once that thread runs
# Python again: a caller blocked in an untimed wait would never see it (5 SIGTERMs of 55
# went unheard under load). So the caller's thread waits in slices this long.
_SIGNAL_POLL_S = 0.2

T = TypeVar("T")


def _wait(fut: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """`fut.result(timeout)`, in slices, so that signal handlers run meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not fut.done():
        left = _SIGNAL_POLL_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            break
        concurrent.futures.wait([fut], timeout=min(left, _SIGNAL_POLL_S))
    return fut.result(timeout=0)


def _next_event(events: queue.SimpleQueue[Any]) -> Any:
    """`events.get()`, in slices, so that signal handlers run meanwhile."""
    while True:
        try:
            return events.get(timeout=_SIGNAL_POLL_S)
        except queue.Empty:
            continue


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
    def from_record(cls, d: dict[str, Any], stdout: bytes, stderr: bytes) -> ExecutionResult:
        """From a task's record (the `status` result) and its two streams."""
        return cls(
            task_id=d["task_id"],
            status=str(d["status"]),
            exit_code=d.get("exit_code"),
            signal=d.get("signal"),
            output=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            result=d.get("result"),
            claude_session_id=d.get("claude_session_id"),
            total_cost_usd=d.get("total_cost_usd"),
            error_kind=d.get("error_kind"),
            error=d.get("error"),
            verification=d.get("verification"),
            duration_s=d.get("duration_s"),
            record=d,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "record"} | {"record": self.record}


# ---------------------------------------------------------------------------- the transport


@dataclass(eq=False)
class _Follower:
    """One call's task: where its events go (when the caller wants them) and its end."""

    done: asyncio.Future[dict[str, Any]]
    deliver: Deliver | None


class _Api:
    """The in-process transport on this loop, and the calls following their tasks.

    Every notification of the transport comes here; each goes to the call that started
    its task, which registers as soon as it has the `execute` result (nothing of the task
    comes before it).
    """

    def __init__(self, settings: Settings) -> None:
        base = settings.data_dir
        self.transport = InProcessTransport(
            settings, self._on_notification, data_dirs=[base / "api", base / f"api-{os.getpid()}"]
        )
        self._following: dict[str, _Follower] = {}

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        follower = self._following.get(params.get("task_id") or "")
        if follower is None:
            return
        if follower.deliver is not None:
            follower.deliver(method, params)
        if method == Notification.COMPLETED and not follower.done.done():
            follower.done.set_result(params)

    def follow(self, task_id: str, deliver: Deliver | None) -> _Follower:
        follower = _Follower(asyncio.get_running_loop().create_future(), deliver)
        self._following[task_id] = follower
        return follower

    def forget(self, task_id: str) -> None:
        self._following.pop(task_id, None)


class _ApiRuntime:
    """One `_Api` on a daemon event-loop thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # the SIGTERM handler may run while it is held
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: _Api | None = None
        self.settings: Settings | None = None

    def configure(self, settings: Settings) -> None:
        with self._lock:
            if self._api is not None:
                raise RuntimeError("configure() must come before the first call")
            self.settings = settings

    def _start(self) -> tuple[asyncio.AbstractEventLoop, _Api]:
        with self._lock:
            if self._loop is not None and self._api is not None:
                return self._loop, self._api
            settings = self.settings or Settings()
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="cc-executor-api", daemon=True).start()
            try:
                api = asyncio.run_coroutine_threadsafe(_open(settings), loop).result()
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                raise
            self._loop, self._api, self.settings = loop, api, settings
            atexit.register(self.shutdown)
            if sigterm.default_here():  # else the program's own handler decides
                signal.signal(signal.SIGTERM, self._on_sigterm)
            return loop, api

    def _on_sigterm(self, signum: int, frame: object) -> None:
        """SIGTERM, like Ctrl-C, ends every task's group before the process ends."""
        try:
            self.shutdown()
        finally:
            sigterm.die_of_sigterm()

    def submit(self, make: Callable[[_Api], Coroutine[Any, Any, Any]]) -> _Call:
        loop, api = self._start()
        settled: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def run() -> Any:
            try:
                return await make(api)
            finally:
                settled.set_result(None)

        return _Call(asyncio.run_coroutine_threadsafe(run(), loop), settled)

    def shutdown(self) -> None:
        """End every task still running and stop the engine (also run at exit)."""
        with self._lock:
            loop, api = self._loop, self._api
            self._loop = self._api = None
        if loop is None or api is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(api.transport.aclose(), loop).result(timeout=30)
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
        _wait(self.settled, timeout=60)

    async def cancel_and_wait_async(self) -> None:
        self.result.cancel()
        await asyncio.shield(asyncio.wrap_future(self.settled))


async def _open(settings: Settings) -> _Api:
    api = _Api(settings)
    await api.transport.start()  # a data dir problem shows at the first call, not later
    return api


_API = _ApiRuntime()


def configure(settings: Settings) -> None:
    """Use these settings for the API's engine (before the first call)."""
    _API.configure(settings)


def shutdown() -> None:
    """Stop the API's engine now (it also stops at interpreter exit)."""
    _API.shutdown()


# ---------------------------------------------------------------------------- one task


def _params(
    prompt: str | None, command: str | list[str] | None, params: dict[str, Any]
) -> TaskParams:
    if (prompt is None) == (command is None):
        raise ValueError("give exactly one of prompt (a Claude task) or command")
    clean = {k: v for k, v in params.items() if v is not None}
    if prompt is not None:
        return ExecuteClaudeParams(prompt=prompt, **clean)
    assert command is not None
    return ExecuteParams(command=command, **clean)


async def _run(api: _Api, p: TaskParams, deliver: Deliver | None) -> ExecutionResult:
    method = Method.EXECUTE_CLAUDE if isinstance(p, ExecuteClaudeParams) else Method.EXECUTE
    transport = api.transport
    started = await transport.call(method, p.model_dump(exclude_unset=True))
    task_id: str = started["task_id"]
    follower = api.follow(task_id, deliver)  # at once: nothing of the task came before it
    try:
        while True:
            completed = await asyncio.shield(follower.done)
            api.forget(task_id)
            if not completed.get("retried_by"):
                break
            # `retries` (issue 16): the next attempt exists already; follow it from its start
            task_id = completed["retried_by"]
            follower = api.follow(task_id, deliver)
            sub = {"task_id": task_id, "from_offset": 0, "stderr_from_offset": 0}
            await transport.call(Method.SUBSCRIBE, sub)
    except asyncio.CancelledError:
        # The caller gave up (Ctrl-C, cancellation): no process may outlive the call.
        await asyncio.shield(_cancel_quietly(api, task_id))
        raise
    finally:
        api.forget(task_id)
    record = await transport.call(Method.STATUS, {"task_id": task_id})
    out = await _read_all(api, task_id, Stream.STDOUT)
    err = await _read_all(api, task_id, Stream.STDERR)
    return ExecutionResult.from_record(record, out, err)


async def _cancel_quietly(api: _Api, task_id: str) -> None:
    try:
        await api.transport.call(Method.CONTROL, {"task_id": task_id, "action": Action.CANCEL})
    except ProtocolError:
        pass  # it ended meanwhile


async def _read_all(api: _Api, task_id: str, stream: Stream) -> bytes:
    """Every byte of one stream of a finished task, paged from its log."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        page = await api.transport.call(
            Method.OUTPUT,
            {"task_id": task_id, "stream": stream, "offset": offset, "limit": _PAGE_BYTES},
        )
        chunks.append(output_bytes(page))
        offset += page["size"]
        if page["size"] == 0 or offset >= page["total"]:
            return b"".join(chunks)


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

    call = _API.submit(lambda api: _run(api, p, deliver))
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

    async def run(api: _Api) -> ExecutionResult:
        try:
            return await _run(api, p, deliver)
        finally:
            events.put(None)

    call = _API.submit(run)
    try:
        if on_event is not None:
            while (item := _next_event(events)) is not None:
                on_event(*item)
        return _wait(call.result)
    except KeyboardInterrupt:
        call.cancel_and_wait()
        raise


# ---------------------------------------------------------------------------- task lists


def _list_runner(
    tasks: Sequence[dict[str, Any]], stop_on_failure: bool
) -> Callable[[_Api], Coroutine[Any, Any, list[ExecutionResult]]]:
    from cc_executor.tasklist import TaskResult, run_task_list

    params = [_params(t.get("prompt"), t.get("command"), _rest(t)) for t in tasks]

    async def run(api: _Api) -> list[ExecutionResult]:
        ran: dict[int, ExecutionResult] = {}

        async def run_one(index: int, p: TaskParams, needs: frozenset[str]) -> TaskResult:
            r = await _run(api, p, None)
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
        return _wait(call.result)
    except KeyboardInterrupt:
        call.cancel_and_wait()
        raise
