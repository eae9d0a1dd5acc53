"""The executor service as a backend: a pool of WebSocket connections opened on demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from cc_executor.client import ExecutorClient, ExecutorConnectionError, TaskHandle
from cc_executor.config import Settings
from cc_executor.protocol import ExecuteClaudeParams
from mcp_bridge.backend.base import ServiceUnavailable, T, TaskParams, _Watching
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import TaskWatch

log = logging.getLogger(__name__)

_UNWATCHED_LIMIT = 4096


class _Conn:
    __slots__ = ("client", "inflight")

    def __init__(self, client: ExecutorClient) -> None:
        self.client = client
        self.inflight = 0


def _not_sent(exc: ExecutorConnectionError) -> bool:
    """True when the request provably never left: retrying it cannot run anything twice."""
    return str(exc) == "not connected" or isinstance(exc.__cause__, ConnectionClosed)


class RemoteBackend(_Watching):
    """The executor service, over a pool of WebSocket connections opened on demand.

    Calls are multiplexed (a connection carries any number at once); a new connection is
    opened only when every open one is busy, up to `pool_size`. A connection the service
    closed is dropped and replaced on the next call, transparently.
    """

    name = "websocket"

    def __init__(
        self,
        settings: BridgeSettings,
        service: Settings,
        *,
        connect_timeout: float | None = None,
        retry_for: float = 0.0,
    ) -> None:
        super().__init__(settings)
        self.service = service
        self.url = settings.websocket_url
        self.connect_timeout = connect_timeout or settings.connect_timeout
        self.retry_for = retry_for
        self._conns: list[_Conn] = []
        self._lock = asyncio.Lock()
        self._handles: dict[str, TaskHandle] = {}
        self._unwatched: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self.connections_opened = 0

    # ------------------------------------------------------------------ pool

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        task_id = params.get("task_id")
        if not task_id:
            return
        watch = self._watches.get(task_id)
        if watch is None:
            if task_id in self._unwatched:
                return
            # Notifications of a task come before the reply that names it: keep them.
            watch = self._watches[task_id] = self._new_watch(task_id)
        watch.feed(method, params)

    async def _open(self) -> ExecutorClient:
        client = ExecutorClient(
            self.url,
            self.settings.resolve_token(self.service) or "",
            settings=self.service,
            connect_timeout=self.connect_timeout,
            retry_for=self.retry_for,
            on_notification=self._on_notification,
        )
        try:
            await client.connect()
        except ExecutorConnectionError as exc:
            raise ServiceUnavailable(f"{exc}. Start it with `cc-executor start`") from exc
        self.connections_opened += 1
        return client

    def _prune(self) -> None:
        dead = [c for c in self._conns if not c.client.connected]
        if dead:
            self._conns = [c for c in self._conns if c.client.connected]
            for c in dead:
                self._spawn(c.client.close())

    async def _acquire(self) -> _Conn:
        self._prune()
        best = min(self._conns, key=lambda c: c.inflight, default=None)
        if best is not None and (best.inflight == 0 or len(self._conns) >= self.settings.pool_size):
            return best
        async with self._lock:
            self._prune()
            if len(self._conns) < self.settings.pool_size:
                try:
                    conn = _Conn(await self._open())
                except ServiceUnavailable:
                    if best is not None and best.client.connected:
                        return best
                    raise
                self._conns.append(conn)
                return conn
            return min(self._conns, key=lambda c: c.inflight)

    async def connect_one(self) -> None:
        """Make sure one connection is open (raises ServiceUnavailable)."""
        await self._acquire()

    async def _call(
        self, fn: Callable[[ExecutorClient], Awaitable[T]], *, idempotent: bool = True
    ) -> T:
        for attempt in (1, 2):
            conn = await self._acquire()
            conn.inflight += 1
            try:
                return await fn(conn.client)
            except ServiceUnavailable:
                raise
            except ExecutorConnectionError as exc:
                if attempt == 2 or not (idempotent or _not_sent(exc)):
                    raise
                log.info("service connection dropped (%s); retrying on a fresh one", exc)
            finally:
                conn.inflight -= 1
        raise AssertionError("unreachable")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ tasks

    async def execute(self, params: TaskParams, *, watch: bool = True) -> dict[str, Any]:
        fields = params.model_dump(exclude_none=True)

        async def go(c: ExecutorClient) -> TaskHandle:
            if isinstance(params, ExecuteClaudeParams):
                return await c.execute_claude(fields.pop("prompt"), keep_events=False, **fields)
            return await c.execute(fields.pop("command"), keep_events=False, **fields)

        handle = await self._call(go, idempotent=False)
        task_id = handle.task_id
        self._handles[task_id] = handle
        if task_id not in self._watches:
            self._watches[task_id] = self._new_watch(task_id)
        if not watch:
            self._unwatch(task_id)  # and unsubscribe: nobody here reads its output
        return {**handle.info, "backend": self.name}

    def _arm(self, watch: TaskWatch) -> None:
        handle = self._handles.get(watch.task_id or "")
        if handle is None or watch.finished:
            return

        def done(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                watch.fail(fut.exception())  # type: ignore[arg-type]

        fut = asyncio.ensure_future(handle.wait())
        fut.add_done_callback(done)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    async def _follow(self, task_id: str, watch: TaskWatch) -> None:
        self._unwatched.pop(task_id, None)
        self._watches[task_id] = watch

        async def go(c: ExecutorClient) -> TaskHandle:
            return await c.subscribe(
                task_id, watch.stdout.size, watch.stderr.size, keep_events=False
            )

        self._handles[task_id] = await self._call(go)

    def _unwatch(self, task_id: str) -> None:
        watch = self._watches.pop(task_id, None)
        handle = self._handles.pop(task_id, None)
        if watch is not None and not watch.finished:
            self._unwatched[task_id] = None
            while len(self._unwatched) > _UNWATCHED_LIMIT:
                self._unwatched.popitem(last=False)
            if handle is not None and handle.client.connected:
                # Nobody reads its output here any more: stop the service sending it.
                self._spawn(self._quietly(handle.client.unsubscribe(task_id)))

    @staticmethod
    async def _quietly(coro: Awaitable[Any]) -> None:
        with contextlib.suppress(Exception):
            await coro

    async def status(self, task_id: str) -> dict[str, Any]:
        rec: dict[str, Any] = await self._call(lambda c: c.status(task_id))
        rec["backend"] = self.name
        return rec

    async def tasks(self, limit: int = 100) -> dict[str, Any]:
        res: dict[str, Any] = await self._call(lambda c: c.status(None, limit))
        for t in res.get("tasks", ()):
            t["backend"] = self.name
        return res

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        res: dict[str, Any] = await self._call(lambda c: c.control(task_id, action))
        res["backend"] = self.name
        return res

    async def output(
        self, task_id: str, stream: str = "stdout", offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]:
        res: dict[str, Any] = await self._call(lambda c: c.output(task_id, stream, offset, limit))
        res["backend"] = self.name
        return res

    async def call(
        self, method: str, params: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        res: dict[str, Any] = await self._call(
            lambda c: c.call(method, params), idempotent=idempotent
        )
        return res

    def call_ready(self) -> bool:
        return any(c.client.connected for c in self._conns)

    async def info(self) -> dict[str, Any]:
        self._prune()
        return {
            "url": self.url,
            "connections": len(self._conns),
            "pool_size": self.settings.pool_size,
            "connections_opened": self.connections_opened,
        }

    async def close(self) -> None:
        conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                await c.client.close()
        for t in list(self._background):
            t.cancel()
