"""The executor service: JSON-RPC 2.0 over WebSocket at /ws (and /ws/mcp), /health over HTTP.

This module only moves frames and guards the door (handshake slots, Host, Origin, token,
connection limits: the checks are `door`); what a frame means is `jsonrpc`, what a method
does is `handlers`, and every process belongs to the `Engine`.

What one connection can make the service hold is bounded: `max_requests_in_flight`
requests (each element of a batch counts) until their replies are sent, and
`max_reply_bytes_in_flight` bytes of those replies; an element past either gets an error
of its own in its place.

Run it with `cc-executor start`, `python -m cc_executor` or `python -m cc_executor.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cc_executor import __version__, allocator, door, jsonrpc, service_policy
from cc_executor.auth import ensure_token, token_matches
from cc_executor.claude.ratelimit import RateLimits
from cc_executor.cluster.routing import cluster_routes
from cc_executor.config import Settings
from cc_executor.dashboard import (
    asset_response,
    own_origins,
    select_subprotocol,
    token_from_subprotocols,
)
from cc_executor.engine import Event, Subscriber, SubscriberClosed, reaper
from cc_executor.engine.events import holds_of_this_request
from cc_executor.handlers import ROUTES, Conn
from cc_executor.logs import setup_logging
from cc_executor.protocol import ErrorCode, Method, OutputParams, ProtocolError
from cc_executor.runtime import build_runtime
from cc_executor.service_policy import ServicePolicy

log = logging.getLogger(__name__)

WS_PATHS = frozenset({"/ws", "/ws/mcp"})
_OUTPUT_DEFAULT_LIMIT: int = OutputParams.model_fields["limit"].default
_OUTPUT_MAX_LIMIT = 16 * 1024 * 1024


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
            self.sessions.find_elsewhere = cluster.find_session  # senders on other nodes
        # In a cluster, calls about another node's tasks are served by that node.
        self.routes = ROUTES if cluster is None else cluster_routes(ROUTES, cluster)
        self.token = ""
        self._server: Server | None = None
        self._connections = 0
        self._per_client: Counter[str] = Counter()
        self._handshakes = door.HandshakeSlots(settings.max_handshakes)
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
        self._write_policy()
        await self.sessions.start()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            select_subprotocol=select_subprotocol,  # faces: the dashboard's (no token echoed)
            create_connection=_guarded_connection(self._handshakes),
            open_timeout=self.settings.handshake_timeout,
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

    def _write_policy(self) -> None:
        """`<data_dir>/policy.json`: what a bridge's local fallback must apply as well."""
        try:
            service_policy.write(self.settings.data_dir, ServicePolicy.of(self.settings))
        except OSError as exc:
            log.error(
                "cannot write %s: %s (a bridge's local fallback will refuse to run "
                "anything rather than guess)",
                service_policy.policy_path(self.settings.data_dir),
                exc,
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
        """`status` "degraded" with its `problems` (a full disk, a deleted data dir:
        engine/health.py) while new tasks are refused. Still HTTP 200: the service runs
        and serves, and a probe that restarted it on a full disk would lose the records
        it keeps until the disk takes them."""
        stats = self.engine.stats()
        cluster = self.engine.cluster
        problems = self.engine.storage.problems()
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": __version__,
            "node": self.settings.node,
            "cluster": None if cluster is None else cluster.health(),
            "running": stats["running"],
            "paused": stats["paused"],
            "queued": stats["queued"],
            "connections": self._connections,
            "handshakes_waiting": len(self._handshakes),
            "handshakes_evicted": self._handshakes.evicted,
            "uptime_s": round(time.time() - self._started, 3),
            "rate_limits": RateLimits.of(self.settings).snapshot(),  # issue 16
        }

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        twice = door.duplicate_header(request.headers)
        if twice is not None:
            return _json_response(
                HTTPStatus.BAD_REQUEST, {"error": f"more than one {twice} header"}
            )
        host = request.headers.get("Host")
        if not door.host_allowed(host, self.settings.host, self.settings.allowed_hosts):
            log.warning("refused a request for a foreign host", extra={"host": str(host)[:200]})
            return _json_response(HTTPStatus.BAD_REQUEST, {"error": "unknown Host header"})
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
            if given is None:  # faces: the dashboard offers it as a subprotocol
                given = token_from_subprotocols(request.headers.get_all("Sec-WebSocket-Protocol"))
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
        binary = ws.request is not None and door.wants_binary_output(ws.request.path)
        writer = asyncio.create_task(self._write_loop(ws, sub, binary))
        limit = self.settings.max_requests_in_flight
        in_flight = asyncio.Semaphore(limit)
        budget = jsonrpc.ReplyBudget(self.settings.max_reply_bytes_in_flight)
        pending: set[asyncio.Task[None]] = set()
        try:
            async for message in ws:
                items, is_batch = jsonrpc.parse(message)
                # Every element holds a slot until its reply is sent; past the limit an
                # element is refused. While slots are taken, reading waits (TCP pushes back).
                slots = min(len(items), limit)
                for _ in range(slots):
                    await in_flight.acquire()
                frame = _Frame(items, is_batch, slots, in_flight, budget)
                t = asyncio.create_task(self._serve_frame(conn, frame))
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

    async def _serve_frame(self, conn: Conn, frame: _Frame) -> None:
        # The slots (and reply bytes) are held until the reply has gone out, not just been
        # queued: a client that sends requests without reading replies is stopped there.
        reply_queued = False
        with holds_of_this_request() as held:
            try:
                parts = await asyncio.gather(
                    *(self._serve_item(conn, frame, i, item) for i, item in enumerate(frame.items))
                )
                encoded = [p for p in parts if p is not None]
                if encoded:
                    data = jsonrpc.encode_frame(encoded, frame.is_batch)
                    conn.subscriber.push(_Reply(data, frame.release))
                    reply_queued = True
            finally:
                # The events of the tasks this frame created follow its reply, and only
                # theirs: another frame's reply may still be on its way (Subscriber.hold).
                conn.subscriber.release_held(held)
                if not reply_queued:
                    frame.release()

    async def _serve_item(
        self, conn: Conn, frame: _Frame, index: int, item: jsonrpc.Request | dict[str, Any]
    ) -> bytes | None:
        """One element's reply, encoded and held in the reply budget (None: no reply)."""
        budget = frame.budget
        if isinstance(item, dict):
            reply: dict[str, Any] | None = item  # an invalid request's error
            estimate = 0
        elif index >= frame.slots:
            reply = _past_the_limit(item, self.settings.max_requests_in_flight)
            estimate = 0
        else:
            # An `output` reads up to its limit: hold that much before reading, so that
            # concurrent reads cannot pass the budget before their replies are weighed.
            estimate = _reply_estimate(item)
            if not await budget.take(frame.number, estimate):
                return None if item.is_notification else _encode(budget.refusal(item.id, estimate))
            try:
                reply = await jsonrpc.call(self.routes, item, conn)
            except BaseException:
                budget.give_back(frame.number, estimate)
                raise
        if reply is None:
            budget.give_back(frame.number, estimate)
            return None
        data = _encode(reply)
        more = len(data) - estimate
        if more < 0:
            budget.give_back(frame.number, -more)
        elif more > 0 and not await budget.take(frame.number, more):
            budget.give_back(frame.number, estimate)
            return _encode(budget.refusal(reply.get("id"), len(data)))
        frame.reserved += len(data)
        return data

    async def _write_loop(self, ws: ServerConnection, sub: Subscriber, binary: bool) -> None:
        # A binary-output connection gets each output chunk's bytes as they came: no
        # UTF-8 decoding, JSON escaping or parsing of them here or at the client.
        try:
            while True:
                ev = await sub.get()
                frame, is_binary = ev.wire_frame(binary)
                batch, size = [(frame, is_binary, ev)], len(frame)
                # Small frames queued already go out with it: one write, so one wake-up of
                # the client (a reply and its task's `process.started` come together).
                # Bounded, so that TCP's back-pressure still reaches us every 256 KiB.
                while len(batch) < _FRAMES_PER_WRITE and size < _JOIN_MAX_BYTES:
                    more = sub.get_nowait()
                    if more is None:
                        break
                    frame, is_binary = more.wire_frame(binary)
                    batch.append((frame, is_binary, more))
                    size += len(frame)
                async with ws.send_context():
                    for frame, is_binary, _ in batch:
                        if is_binary:
                            ws.protocol.send_binary(frame)
                        else:  # JSON-RPC is text; orjson already gave us UTF-8 bytes
                            ws.protocol.send_text(frame)
                for _, _, ev in batch:
                    if isinstance(ev, _Reply):
                        ev.on_sent()
        except (SubscriberClosed, ConnectionClosed):
            pass


class _Frame:
    """One incoming frame being served: its elements, the in-flight slots it took (one per
    element, up to the limit) and the reply bytes it holds until its reply is sent."""

    __slots__ = ("budget", "in_flight", "is_batch", "items", "number", "reserved", "slots")

    def __init__(
        self,
        items: list[jsonrpc.Request | dict[str, Any]],
        is_batch: bool,
        slots: int,
        in_flight: asyncio.Semaphore,
        budget: jsonrpc.ReplyBudget,
    ) -> None:
        self.items = items
        self.is_batch = is_batch
        self.slots = slots
        self.in_flight = in_flight
        self.budget = budget
        self.number = budget.new_frame()
        self.reserved = 0

    def release(self) -> None:
        for _ in range(self.slots):
            self.in_flight.release()
        self.slots = 0
        self.budget.give_back(self.number, self.reserved)
        self.reserved = 0


def _encode(reply: dict[str, Any]) -> bytes:
    return jsonrpc.encode(reply)


def _reply_estimate(req: jsonrpc.Request) -> int:
    """Bytes an element's reply is sure to take, reserved before it runs: an `output`
    reads up to `limit` bytes (its JSON is larger still); the rest are small."""
    if req.method != Method.OUTPUT:
        return 0
    limit = req.params.get("limit") if isinstance(req.params, dict) else None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        return min(limit, _OUTPUT_MAX_LIMIT)
    return _OUTPUT_DEFAULT_LIMIT


def _past_the_limit(req: jsonrpc.Request, limit: int) -> dict[str, Any] | None:
    if req.is_notification:
        return None
    return jsonrpc.error_response(
        req.id,
        ProtocolError(
            ErrorCode.CAPACITY_EXCEEDED,
            f"more than {limit} requests in flight on this connection (each element of a "
            "batch counts): send fewer at once",
            {"max_requests_in_flight": limit},
        ),
    )


def _guarded_connection(slots: door.HandshakeSlots) -> type[ServerConnection]:
    """A ServerConnection that holds a handshake slot from accept until its request."""

    class GuardedConnection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            evicted = slots.opened(self)
            if evicted is not None:
                evicted.transport.abort()

        def process_event(self, event: Any) -> None:
            if self.request is None:
                slots.done(self)
            super().process_event(event)

        def connection_lost(self, exc: Exception | None) -> None:
            slots.done(self)
            super().connection_lost(exc)

        def send_data(self) -> None:
            # Frames queued together leave in one write (one send, one wake-up of the
            # peer) unless they are large, where joining them would cost a copy.
            writes = self.protocol.writes
            if len(writes) > 1 and all(writes) and sum(map(len, writes)) <= _JOIN_MAX_BYTES:
                writes[:] = [b"".join(writes)]
            super().send_data()

    return GuardedConnection


_FRAMES_PER_WRITE = 64
_JOIN_MAX_BYTES = 256 * 1024


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


async def run_service(
    settings: Settings, on_started: Callable[[ExecutorService], None] | None = None
) -> None:
    """Start the service and serve until SIGINT/SIGTERM, then end every task and exit.
    `on_started` sees the started service (`cc-executor start` prints its banner).

    The service owns its process: it raises its own soft fd limit, becomes a child
    subreaper (so what leaves a task's group is still its child, engine/reaper.py),
    reaps the orphans that come to it, as PID 1 of a container too, and keeps the memory
    of output chunks for the next ones (allocator.py).
    """
    raise_fd_limit()
    allocator.keep_chunk_memory()
    reaper.become_subreaper()
    orphans = reaper.OrphanReaper()
    orphans.start()
    try:
        service = ExecutorService(settings)
        await service.start()
        if on_started is not None:
            on_started(service)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: ending all task groups")
        await service.stop()
    finally:
        # Every orphan left is a task's or a hook's, whatever its environment says now.
        if reaper.collects_orphans():
            await reaper.end_orphans()
        orphans.stop()


FD_LIMIT = 65536
"""The soft limit of open files the service asks for (each connection, pipe and log takes
one; 1024, a common default, is reached by 1,000 idle sockets). Children inherit it."""


def raise_fd_limit(want: int = FD_LIMIT) -> int:
    """Raise the soft RLIMIT_NOFILE towards `want` (never past the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


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
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:  # one line per setting, named as it was set
        for e in exc.errors():
            name = "CC_EXECUTOR_" + "_".join(str(p) for p in e["loc"]).upper()
            print(f"error: invalid cc-executor setting {name}: {e['msg']}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    try:
        asyncio.run(run_service(settings))
    except (OSError, sqlite3.Error) as exc:  # sqlite3: its data dir's disk is full, say
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
