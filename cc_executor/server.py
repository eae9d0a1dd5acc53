"""The executor service: JSON-RPC 2.0 over WebSocket at /ws (and /ws/mcp), /health over HTTP.

This module only moves frames and guards the door (path, Origin, token, connection
limits); what a frame means is `jsonrpc`, what a method does is `handlers`, and every
process belongs to the `Engine`.

Run it with `cc-executor start`, `python -m cc_executor` or `python -m cc_executor.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cc_executor import __version__, jsonrpc
from cc_executor.auth import ensure_token, token_matches
from cc_executor.cluster.routing import cluster_routes
from cc_executor.config import Settings
from cc_executor.dashboard import asset_response, own_origins
from cc_executor.engine import Event, Subscriber, SubscriberClosed
from cc_executor.engine.events import holds_of_this_request
from cc_executor.handlers import ROUTES, Conn
from cc_executor.logs import setup_logging
from cc_executor.runtime import build_runtime

log = logging.getLogger(__name__)

WS_PATHS = frozenset({"/ws", "/ws/mcp"})
_MAX_IN_FLIGHT = 16  # requests per connection until their replies are sent (memory bound)


def _json_response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    payload = jsonrpc.encode(body)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status.value, status.phrase, headers, payload)


class ExecutorService:
    """The engine plus its WebSocket front door."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = build_runtime(settings)
        self.engine = self.runtime.engine
        self.sessions = self.runtime.sessions
        cluster = self.engine.cluster
        if cluster is not None:
            cluster.sessions = self.sessions  # forwarded session.* calls use it
        # In a cluster, calls about another node's tasks are served by that node.
        self.routes = ROUTES if cluster is None else cluster_routes(ROUTES, cluster)
        self.token = ""
        self._server: Server | None = None
        self._connections = 0
        self._per_client: Counter[str] = Counter()
        self._started = time.time()
        self.stopped = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.token = ensure_token(self.settings)
        cluster = self.engine.cluster
        if cluster is not None:
            await cluster.check_reachable()
            self.token = await cluster.shared_token(self.token)
        await self.engine.start()
        await self.sessions.start()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            compression=None,  # deflate costs more than it saves on loopback
            max_size=self.settings.max_message_bytes,
            ping_interval=20,
            ping_timeout=60,
            server_header=f"cc-executor/{__version__}",
        )
        if cluster is not None:
            cluster.service_url = self.url
        log.info(
            "cc-executor listening",
            extra={"url": self.url, "data_dir": str(self.settings.data_dir)},
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        return self.settings.port

    @property
    def url(self) -> str:
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/ws"

    async def stop(self) -> None:
        """Stop accepting, end every task's group, close the store."""
        if self._server is not None:
            # Stop accepting only: websockets' Server.close() acts on its first call alone,
            # so the connections are closed by the close() below, once the tasks are ended.
            self._server.server.close()
        await self.sessions.stop()
        await self.engine.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self.stopped.set()

    # ---------------------------------------------------------------- HTTP side

    def health(self) -> dict[str, Any]:
        stats = self.engine.stats()
        cluster = self.engine.cluster
        return {
            "status": "ok",
            "version": __version__,
            "node": self.settings.node,
            "cluster": None if cluster is None else cluster.health(),
            "running": stats["running"],
            "paused": stats["paused"],
            "queued": stats["queued"],
            "connections": self._connections,
            "uptime_s": round(time.time() - self._started, 3),
        }

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/health":
            return _json_response(HTTPStatus.OK, self.health())
        if url.path not in WS_PATHS:
            # The dashboard's files (docs/dashboard.md), to plain GETs only: no token needed.
            page = None if "Upgrade" in request.headers else asset_response(url.path)
            if page is not None:
                return page
            return _json_response(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path}"})
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and origin not in self.settings.allowed_origins
            and origin not in own_origins(self.settings.host, self.port)  # the dashboard
        ):
            log.warning("refused foreign origin", extra={"origin": origin})
            return _json_response(HTTPStatus.FORBIDDEN, {"error": "origin not allowed"})
        given: str | None = None
        auth = request.headers.get("Authorization")
        if auth and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        else:
            tokens = parse_qs(url.query).get("token")
            given = tokens[0] if tokens else None
        if not token_matches(self.token, given):
            return _json_response(HTTPStatus.UNAUTHORIZED, {"error": "missing or invalid token"})
        if self._connections >= self.settings.max_connections:
            return _json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many connections"})
        per_client = self.settings.max_connections_per_client
        client = _peer_host(connection)
        if per_client > 0 and self._per_client[client] >= per_client:
            return _json_response(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"error": f"at most {per_client} connections per client address"},
            )
        return None

    # ---------------------------------------------------------------- WebSocket side

    async def _handle(self, ws: ServerConnection) -> None:
        client = _peer_host(ws)
        self._connections += 1
        self._per_client[client] += 1
        sub = Subscriber(self.settings.subscriber_queue_bytes)
        sub.hold_new_tasks = True  # a task's events follow the reply that names it
        conn = Conn(self.engine, self.settings, sub, peer=client, sessions=self.sessions)
        writer = asyncio.create_task(self._write_loop(ws, sub))
        in_flight = asyncio.Semaphore(_MAX_IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()
        try:
            async for message in ws:
                await in_flight.acquire()
                t = asyncio.create_task(self._serve_frame(conn, message, in_flight))
                pending.add(t)
                t.add_done_callback(pending.discard)
        except ConnectionClosed:
            pass
        finally:
            # Tasks keep running when their client goes; they stay reachable by subscribe.
            self.engine.detach(sub)
            for t in pending:
                t.cancel()
            sub.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self._connections -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _serve_frame(self, conn: Conn, message: str | bytes, slot: asyncio.Semaphore) -> None:
        # The slot is held until the reply has gone out, not just been queued: a client
        # that sends requests without reading replies is stopped at _MAX_IN_FLIGHT
        # (reading pauses, TCP pushes back) instead of growing the service's memory.
        reply_queued = False
        with holds_of_this_request() as held:
            try:
                items, is_batch = jsonrpc.parse(message)
                replies: list[dict[str, Any]] = []
                calls = []
                for item in items:
                    if isinstance(item, dict):
                        replies.append(item)
                    else:
                        calls.append(jsonrpc.call(self.routes, item, conn))
                if len(calls) == 1:
                    r = await calls[0]
                    if r is not None:
                        replies.append(r)
                elif calls:
                    replies.extend(r for r in await asyncio.gather(*calls) if r is not None)
                if replies:
                    body = replies if is_batch else replies[0]
                    conn.subscriber.push(_Reply(jsonrpc.encode(body), slot.release))
                    reply_queued = True
            finally:
                # The events of the tasks this frame created follow its reply, and only
                # theirs: another frame's reply may still be on its way (Subscriber.hold).
                conn.subscriber.release_held(held)
                if not reply_queued:
                    slot.release()

    async def _write_loop(self, ws: ServerConnection, sub: Subscriber) -> None:
        try:
            while True:
                ev = await sub.get()
                # Text frames: JSON-RPC is text; orjson already gave us UTF-8 bytes.
                await ws.send(ev.frame(), text=True)
                if isinstance(ev, _Reply):
                    ev.on_sent()
        except (SubscriberClosed, ConnectionClosed):
            pass


class _Reply(Event):
    """A response: it travels the same ordered queue as notifications, is never dropped,
    and tells its request's slot when it has been sent."""

    __slots__ = ("on_sent",)

    def __init__(self, frame: bytes, on_sent: Callable[[], None]) -> None:
        super().__init__("", {"task_id": ""})
        self._frame = frame
        self.on_sent = on_sent


def _peer_host(connection: ServerConnection) -> str:
    addr = connection.remote_address
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return str(addr)


async def run_service(settings: Settings) -> None:
    """Start the service and serve until SIGINT/SIGTERM, then end every task and exit."""
    service = ExecutorService(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: ending all task groups")
    await service.stop()


def build_arg_parser(prog: str = "cc-executor start") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Start the cc-executor service.")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8003)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--data-dir", help="where records, logs and the token live")
    p.add_argument(
        "--redis-url",
        help="cluster mode: redis://[:password@]HOST:PORT/DB, shared by every node",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for key in ("host", "port", "log_level", "data_dir", "redis_url"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser("python -m cc_executor.server").parse_args(argv)
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    try:
        asyncio.run(run_service(settings))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
