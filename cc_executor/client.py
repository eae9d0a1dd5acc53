"""Async Python client of the executor service.

    async with ExecutorClient() as client:          # URL and token from settings
        task = await client.execute(["python", "-c", "print(1)"])
        async for event in task.events():           # process.output ... process.completed
            ...
        done = await task.wait()                     # the process.completed params

One WebSocket carries any number of calls and tasks at once: responses are matched by id,
notifications are routed to the handle of their task. The service sends a task's `execute`
reply before any notification of it, so a handle registered on the reply misses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from cc_executor.auth import read_token
from cc_executor.config import Settings
from cc_executor.protocol import (
    BINARY_OUTPUT_QUERY,
    Method,
    Notification,
    ProtocolError,
    Stream,
    split_binary_output,
)

log = logging.getLogger(__name__)


class ExecutorConnectionError(ConnectionError):
    """The service could not be reached, refused us, or the connection dropped."""


class ServiceUnavailable(ExecutorConnectionError):
    """Nothing was sent: the service could not be reached or refused us, or the connection
    was closed already. Sending again, or elsewhere, cannot run anything twice."""


def output_bytes(params: dict[str, Any]) -> bytes:
    """The raw bytes of a process.output notification or an `output` result."""
    data: str | bytes = params.get("data", "")
    if isinstance(data, bytes):  # a binary frame's (see BINARY_OUTPUT_QUERY)
        return data
    if params.get("encoding") == "base64":
        return base64.b64decode(data)
    return data.encode("utf-8")


def _with_binary_output(url: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, "=".join(BINARY_OUTPUT_QUERY)) if q)
    return urlunsplit(parts._replace(query=query))


class TaskHandle:
    """A task this client started or subscribed to."""

    def __init__(self, client: ExecutorClient, task_id: str, info: dict[str, Any], keep: bool):
        self.client = client
        self.task_id = task_id
        self.info = info
        self.pid: int | None = info.get("pid")
        self._keep = keep
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def _feed(self, method: str, params: dict[str, Any]) -> None:
        if self._keep:
            self._events.put_nowait({"method": method, "params": params})
        if method == Notification.COMPLETED:
            if not self._done.done():
                self._done.set_result(params)
            self._events.put_nowait(None)

    def _fail(self, exc: BaseException) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
            self._done.exception()  # mark retrieved: the caller may never wait
        self._events.put_nowait(None)

    @property
    def done(self) -> bool:
        return self._done.done()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every notification of this task, ending after process.completed."""
        if not self._keep:
            raise RuntimeError("this handle was created with keep_events=False")
        while True:
            ev = await self._events.get()
            if ev is None:
                if self._done.done() and self._done.exception() is not None:
                    raise self._done.exception()  # type: ignore[misc]
                return
            yield ev

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The process.completed params, once the task is final."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    async def control(self, action: str) -> dict[str, Any]:
        return await self.client.control(self.task_id, action)

    async def pause(self) -> dict[str, Any]:
        return await self.control("PAUSE")

    async def resume(self) -> dict[str, Any]:
        return await self.control("RESUME")

    async def cancel(self) -> dict[str, Any]:
        return await self.control("CANCEL")


class ExecutorClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        settings: Settings | None = None,
        connect_timeout: float = 5.0,
        retry_for: float = 0.0,
        on_notification: Callable[[str, dict[str, Any]], None] | None = None,
        on_close: Callable[[BaseException], None] | None = None,
        binary_output: bool = True,
    ) -> None:
        s = settings or Settings()
        self.url = url or s.websocket_url()
        # Output chunks as binary frames: their `data` is then the bytes themselves
        # (`output_bytes` reads either form), and neither side encodes or parses them.
        self.binary_output = binary_output
        self.token = token if token is not None else read_token(s)
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for
        self.on_notification = on_notification
        self.on_close = on_close  # called once when a connection ends, with why
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._handles: dict[str, TaskHandle] = {}
        self._closed_exc: BaseException | None = None

    # ------------------------------------------------------------------ connection

    async def __aenter__(self) -> ExecutorClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._closed_exc is None

    async def _connect_once(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            return await connect(
                _with_binary_output(self.url) if self.binary_output else self.url,
                additional_headers=headers,
                compression=None,
                max_size=None,
                open_timeout=self.connect_timeout,
                proxy=None,
                ping_interval=20,
                ping_timeout=60,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            raise ServiceUnavailable(
                f"service at {self.url} refused the connection: HTTP {code} "
                f"{exc.response.body.decode(errors='replace')[:200]}"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise ServiceUnavailable(f"cannot reach the service at {self.url}: {exc}") from exc

    async def connect(self) -> None:
        ws: ClientConnection | None = None
        if self.retry_for > 0:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.retry_for),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                retry=retry_if_exception_type(ExecutorConnectionError),
                reraise=True,
            ):
                with attempt:
                    ws = await self._connect_once()
        else:
            ws = await self._connect_once()
        assert ws is not None
        self._ws = ws
        self._closed_exc = None
        self._reader = asyncio.create_task(self._read_loop(ws))

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._fail_all(ExecutorConnectionError("client closed"))

    def _fail_all(self, exc: BaseException) -> None:
        first = self._closed_exc is None
        self._closed_exc = exc
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for h in self._handles.values():
            h._fail(exc)
        self._handles.clear()
        if first and self.on_close is not None:
            self.on_close(exc)

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            while True:
                if self.binary_output:
                    # Text frames come as str, binary ones (output: JSON head, "\n",
                    # the bytes) as bytes.
                    message = await ws.recv()
                    if isinstance(message, bytes):
                        head, data = split_binary_output(message)
                        obj = orjson.loads(head)
                        obj["params"]["data"] = data
                    else:
                        obj = orjson.loads(message)
                else:
                    # Bytes as they came: orjson checks the UTF-8 itself, so a text
                    # frame is not decoded twice (websockets would make it a str first).
                    obj = orjson.loads(await ws.recv(decode=False))
                replied = False
                for item in obj if isinstance(obj, list) else (obj,):
                    replied = self._dispatch(item) or replied
                if replied:
                    # Frames already received are read without a pause: let the caller
                    # of this reply resume first, so it can register the task the reply
                    # names before that task's notifications (which follow it) arrive.
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("client reader failed")
        finally:
            self._fail_all(ExecutorConnectionError("connection to the service closed"))

    def _dispatch(self, msg: dict[str, Any]) -> bool:
        """Route one message; True when it was the reply a caller waits for."""
        if "method" in msg and "id" not in msg:
            method = msg["method"]
            params = msg.get("params") or {}
            if self.on_notification is not None:
                self.on_notification(method, params)
            task_id: str | None = params.get("task_id")
            handle = self._handles.get(task_id) if task_id else None
            if handle is not None:
                handle._feed(method, params)
                if method == Notification.COMPLETED and task_id:
                    self._handles.pop(task_id, None)
            return False
        fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if fut is None or fut.done():
            return False
        if "error" in msg:
            err = msg["error"]
            fut.set_exception(ProtocolError(err["code"], err["message"], err.get("data")))
        else:
            fut.set_result(msg.get("result"))
        return True

    # ------------------------------------------------------------------ calls

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result; a JSON-RPC error raises ProtocolError."""
        ws = self._ws
        if ws is None or self._closed_exc is not None or ws.state is not State.OPEN:
            raise ServiceUnavailable("not connected")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        frame = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
        try:
            await ws.send(orjson.dumps(frame), text=True)
        except ConnectionClosed as exc:  # while writing it: it may have gone out
            self._pending.pop(rid, None)
            raise ExecutorConnectionError("connection to the service closed") from exc
        return await fut

    def _register(self, info: dict[str, Any], keep_events: bool) -> TaskHandle:
        task_id = info["task_id"]
        handle = TaskHandle(self, task_id, info, keep_events)
        self._handles[task_id] = handle
        return handle

    async def execute(
        self, command: str | list[str], *, keep_events: bool = True, **params: Any
    ) -> TaskHandle:
        """Start a command; returns a handle streaming its events."""
        clean = {k: v for k, v in params.items() if v is not None}
        info = await self.call(Method.EXECUTE, {"command": command, **clean})
        return self._register(info, keep_events)

    async def execute_claude(
        self, prompt: str, *, keep_events: bool = True, **params: Any
    ) -> TaskHandle:
        clean = {k: v for k, v in params.items() if v is not None}
        info = await self.call(Method.EXECUTE_CLAUDE, {"prompt": prompt, **clean})
        return self._register(info, keep_events)

    async def subscribe(
        self,
        task_id: str,
        from_offset: int | None = None,
        stderr_from_offset: int | None = None,
        keep_events: bool = True,
    ) -> TaskHandle:
        # Register first so replayed events are not mistaken for strays.
        handle = self._handles.get(task_id) or TaskHandle(self, task_id, {}, keep_events)
        self._handles[task_id] = handle
        params: dict[str, Any] = {"task_id": task_id}
        if from_offset is not None:
            params["from_offset"] = from_offset
        if stderr_from_offset is not None:
            params["stderr_from_offset"] = stderr_from_offset
        try:
            handle.info = await self.call(Method.SUBSCRIBE, params)
        except BaseException:
            self._handles.pop(task_id, None)
            raise
        return handle

    async def unsubscribe(self, task_id: str) -> dict[str, Any]:
        self._handles.pop(task_id, None)
        return await self.call(Method.UNSUBSCRIBE, {"task_id": task_id})

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        return await self.call(Method.CONTROL, {"task_id": task_id, "action": action})

    async def status(
        self, task_id: str | None = None, limit: int | None = None, **filters: Any
    ) -> dict[str, Any]:
        """One task's record, or the list; `filters` are `StatusParams`' (statuses, text,
        offset, active_first, sort, descending)."""
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if task_id is not None:
            params["task_id"] = task_id
        if limit is not None:
            params["limit"] = limit
        return await self.call(Method.STATUS, params)

    async def output(
        self,
        task_id: str,
        stream: str = Stream.STDOUT,
        offset: int = 0,
        limit: int = 1024 * 1024,
    ) -> dict[str, Any]:
        return await self.call(
            Method.OUTPUT, {"task_id": task_id, "stream": stream, "offset": offset, "limit": limit}
        )

    async def read_output(self, task_id: str, stream: str = Stream.STDOUT) -> bytes:
        """Every byte a task printed on one stream, paged from its log."""
        chunks: list[bytes] = []
        offset = 0
        while True:
            page = await self.output(task_id, stream, offset, 4 * 1024 * 1024)
            data = output_bytes(page)
            chunks.append(data)
            offset += page["size"]
            if page["size"] == 0 or offset >= page["total"]:
                return b"".join(chunks)

    async def ping(self) -> dict[str, Any]:
        return await self.call(Method.PING)
