"""The executor service as a transport: a pool of WebSocket connections opened on demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cc_executor.client import ExecutorClient, ExecutorConnectionError, ServiceUnavailable
from cc_executor.config import Settings
from cc_executor.protocol import READ_ONLY_METHODS, Method, Notification, ProtocolError
from cc_executor.transport import CHANNEL_LOST, NotificationSink

log = logging.getLogger(__name__)

_IDEMPOTENT = READ_ONLY_METHODS
"""Methods sent again on a fresh connection when theirs drops after sending: reading twice,
or subscribing again, does no harm. Any other is sent again only if it never went out."""

_FOLLOWS = frozenset({Method.EXECUTE, Method.EXECUTE_CLAUDE, Method.SUBSCRIBE})
"""Methods after which the connection that carried them carries the task's notifications."""


class _Conn:
    __slots__ = ("client", "inflight", "tasks")

    def __init__(self) -> None:
        self.client: ExecutorClient | None = None
        self.inflight = 0
        self.tasks: set[str] = set()  # tasks whose notifications come over this one

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected


class WebSocketTransport:
    """The service, over a pool of WebSocket connections opened on demand.

    Calls are multiplexed (a connection carries any number at once); a new connection is
    opened only when every open one is busy, up to `pool_size`. A connection the service
    closed is dropped and replaced on the next call. When a connection that carried a
    task's notifications closes, the sink is told (`CHANNEL_LOST`), so the follower can
    subscribe again on another; an `unsubscribe` goes over the connection carrying them.
    """

    name = "websocket"

    def __init__(
        self,
        url: str,
        token: Callable[[], str | None] | str | None,
        on_notification: NotificationSink | None = None,
        *,
        settings: Settings | None = None,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        retry_for: float = 0.0,
        token_source: str | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.token_source = token_source  # where the token is read, for a refusal's message
        self._sink = on_notification
        self.settings = settings or Settings()
        self.pool_size = max(1, pool_size)
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for
        self._conns: list[_Conn] = []
        self._carrier: dict[str, _Conn] = {}
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.connections_opened = 0
        self.service_policy: dict[str, Any] | None = None
        """The service's policy as its `ping` told it (cc_executor/service_policy.py),
        learned on each new connection and kept after the service is gone."""

    # ------------------------------------------------------------------ notifications

    def _emit(self, method: str, params: dict[str, Any]) -> None:
        if self._sink is None:
            return
        try:
            self._sink(method, params)
        except Exception:
            log.exception("notification sink failed on %s", method)

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == Notification.COMPLETED:
            conn = self._carrier.pop(params.get("task_id") or "", None)
            if conn is not None:
                conn.tasks.discard(params["task_id"])
        self._emit(method, params)

    def _on_close(self, conn: _Conn, exc: BaseException) -> None:
        lost = [t for t in conn.tasks if self._carrier.get(t) is conn]
        conn.tasks.clear()
        for task_id in lost:
            del self._carrier[task_id]
        if self._closed:
            return
        for task_id in lost:
            self._emit(CHANNEL_LOST, {"task_id": task_id, "error": str(exc)})

    def _carry(self, task_id: str, conn: _Conn) -> None:
        old = self._carrier.get(task_id)
        if old is not None and old is not conn:
            old.tasks.discard(task_id)
        self._carrier[task_id] = conn
        conn.tasks.add(task_id)
        if not conn.connected:  # it closed as the reply came: tell once the caller has it
            loop = asyncio.get_running_loop()
            loop.call_soon(self._on_close, conn, ExecutorConnectionError("connection closed"))

    # ------------------------------------------------------------------ pool

    async def _open(self) -> _Conn:
        conn = _Conn()
        token = self._token() if callable(self._token) else self._token
        client = ExecutorClient(
            self.url,
            token or "",
            settings=self.settings,
            connect_timeout=self.connect_timeout,
            retry_for=self.retry_for,
            on_notification=self._on_notification,
            on_close=lambda exc: self._on_close(conn, exc),
            # The transport contract gives output as the in-process transport does (text,
            # or base64): a sink cannot tell which transport it is behind.
            binary_output=False,
        )
        try:
            await client.connect()
        except ExecutorConnectionError as exc:
            if isinstance(exc.__cause__, OSError | TimeoutError):  # nothing answers there
                raise ServiceUnavailable(f"{exc}. Start it with `cc-executor start`") from exc
            if "HTTP 401" in str(exc):  # it runs, and refused the token
                where = f"; the token is read from {self.token_source}" if self.token_source else ""
                raise ServiceUnavailable(f"the service refused the token ({exc}){where}") from exc
            raise ServiceUnavailable(str(exc)) from exc
        conn.client = client
        self.connections_opened += 1
        await self._learn_policy(client)
        return conn

    async def _learn_policy(self, client: ExecutorClient) -> None:
        """Ask the service its policy (`ping`), for a fallback that must apply it too."""
        try:
            hello = await client.call(Method.PING)
        except (ProtocolError, ExecutorConnectionError) as exc:
            log.info("the service did not tell its policy: %s", exc)
            return
        policy = hello.get("policy")
        if policy is not None:
            self.service_policy = policy

    def _prune(self) -> None:
        dead = [c for c in self._conns if not c.connected]
        if dead:
            self._conns = [c for c in self._conns if c.connected]
            for c in dead:
                if c.client is not None:
                    self._spawn(c.client.close())

    async def _acquire(self) -> _Conn:
        self._prune()
        best = min(self._conns, key=lambda c: c.inflight, default=None)
        if best is not None and (best.inflight == 0 or len(self._conns) >= self.pool_size):
            return best
        async with self._lock:
            self._prune()
            if len(self._conns) < self.pool_size:
                try:
                    conn = await self._open()
                except ServiceUnavailable:
                    if best is not None and best.connected:
                        return best
                    raise
                self._conns.append(conn)
                return conn
            return min(self._conns, key=lambda c: c.inflight)

    async def connect(self) -> None:
        """Make sure one connection is open (raises ServiceUnavailable)."""
        await self._acquire()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ calls

    async def call(self, method: Method, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._closed:
            raise ServiceUnavailable("the WebSocket transport is closed")
        params = params or {}
        prefer = None
        if method == Method.UNSUBSCRIBE:
            prefer = self._carrier.pop(str(params.get("task_id")), None)
            if prefer is not None:
                prefer.tasks.discard(str(params.get("task_id")))
        result, conn = await self._send(method, params, prefer)
        if method in _FOLLOWS and isinstance(result.get("task_id"), str):
            self._carry(result["task_id"], conn)
        return result

    async def _send(
        self, method: Method, params: dict[str, Any], prefer: _Conn | None
    ) -> tuple[dict[str, Any], _Conn]:
        for attempt in (1, 2):
            use_preferred = attempt == 1 and prefer is not None and prefer.connected
            conn = prefer if use_preferred and prefer is not None else await self._acquire()
            assert conn.client is not None
            conn.inflight += 1
            try:
                result: dict[str, Any] = await conn.client.call(method, params)
                return result, conn
            except ServiceUnavailable:  # closed before it went out: a fresh one may do
                if attempt == 2:
                    raise
            except ExecutorConnectionError as exc:
                if attempt == 2 or method not in _IDEMPOTENT:
                    raise
                log.info("service connection dropped (%s); retrying on a fresh one", exc)
            finally:
                conn.inflight -= 1
        raise AssertionError("unreachable")

    def info(self) -> dict[str, Any]:
        self._prune()
        return {
            "url": self.url,
            "connections": len(self._conns),
            "pool_size": self.pool_size,
            "connections_opened": self.connections_opened,
            "ready": any(c.connected for c in self._conns),
        }

    async def aclose(self) -> None:
        self._closed = True
        conns, self._conns = self._conns, []
        for c in conns:
            if c.client is not None:
                with contextlib.suppress(Exception):
                    await c.client.close()
        for t in list(self._background):
            t.cancel()
