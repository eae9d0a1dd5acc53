"""A cluster node: this engine's parts that live in Redis, wired together and run.

`build_engine` (engine/factory.py) makes one when `Settings.redis_url` is set: the Redis
store, the cluster-wide queue and the Redis bus replace the single-host parts, the output
streams receive a copy of every chunk, and the node's loops run beside the engine:
heartbeat and reaper, queue taker, output tailer, bus, RPC inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from cc_executor import jsonrpc
from cc_executor.cluster import keys
from cc_executor.cluster import sessions as cluster_sessions
from cc_executor.cluster.bus import RedisEventBus
from cc_executor.cluster.connection import connect
from cc_executor.cluster.follow import Followers
from cc_executor.cluster.liveness import Reaper
from cc_executor.cluster.output import OutputStreams
from cc_executor.cluster.queue import ClusterQueue
from cc_executor.cluster.registry import NodeRegistry
from cc_executor.cluster.rpc import Rpc
from cc_executor.cluster.store import RedisTaskStore
from cc_executor.config import Settings
from cc_executor.engine.events import Subscriber
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.task import TaskSpec
from cc_executor.protocol import (
    ExecuteClaudeParams,
    ExecuteParams,
    Notification,
    ProtocolError,
    TaskStatus,
)
from cc_executor.protocol_families import PARAMS

if TYPE_CHECKING:
    from cc_executor.engine.engine import Engine
    from cc_executor.sessions.manager import SessionManager

log = logging.getLogger(__name__)


class ClusterUnavailable(ConnectionError):
    """The node cannot start: its Redis does not answer (the URL is not in the message)."""


def spec_for_request(method: str, params: dict[str, Any], settings: Settings) -> TaskSpec:
    """Build, on this node, the spec of a request another node queued."""
    from cc_executor.tasks import spec_for

    p = PARAMS[method].model_validate(params)
    assert isinstance(p, ExecuteParams | ExecuteClaudeParams)
    return spec_for(p, settings)


class ClusterNode:
    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url
        self.settings = settings
        self.node = settings.node
        self.redacted_url = keys.redact(settings.redis_url)
        self.redis = connect(settings.redis_url)
        self.blocking = connect(settings.redis_url)
        self.store = RedisTaskStore(self.redis)
        self.queue = ClusterQueue(
            self.redis, self.node, settings.max_concurrent_tasks, settings.max_queued_tasks
        )
        self.outputs = OutputStreams(
            self.redis, settings.output_retention_bytes, settings.output_expiry_seconds
        )
        self.rpc = Rpc(self.redis, self.blocking, self.node)
        self.followers = Followers(self.redis, self.node, self.outputs, self.store, self.rpc.call)
        self.bus = RedisEventBus(self.redis, self.node, self.followers)
        self.registry = NodeRegistry(
            self.redis, self.node, settings.node_ttl, self._describe, self._write_back
        )
        self.reaper = Reaper(
            self.redis, self.node, self.registry, self.store, self.queue, self._announce_final
        )
        self.engine: Engine | None = None
        self.sessions: SessionManager | None = None  # the service's (set by server)
        self.service_url = ""  # the node's WebSocket URL, in its heartbeat (set by server)
        self.service_token = ""  # the cluster's token, written back if Redis loses it
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[Any]] = []

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        engine.cluster = self
        engine.output_sink = self.outputs
        self.queue.on_shared = lambda task: self.followers.follow_from_start(
            task.task_id, task.subscribers
        )
        self.queue.starter = self._run_taken
        self.queue.accepting = lambda: not engine._closing
        self.bus.on_queue_wake = self.queue.wake
        self.bus.on_reconnect = self.followers.recheck
        self.rpc.serve = self._serve

    # ------------------------------------------------------------ lifecycle

    async def check_reachable(self) -> None:
        try:
            await self.redis.ping()
        except Exception as exc:
            raise ClusterUnavailable(
                f"cannot reach the cluster's Redis at {self.redacted_url}: {type(exc).__name__}"
            ) from None

    async def shared_token(self, own: str) -> str:
        """The cluster's one token: the first node's, or the configured one (a client
        uses it on any node). Written to this node's token file for the local CLI."""
        if self.settings.auth_token:
            return own
        await self.redis.set(keys.TOKEN, own, nx=True)
        token = (await self.redis.get(keys.TOKEN) or own.encode()).decode()
        self.service_token = token
        if token != own:
            path = self.settings.token_file
            tmp = path.with_name(f".token.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, token.encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        return token

    async def start(self) -> None:
        """After the engine's recovery: clear what a previous life of this node left in
        the queue, announce the node, and run its loops."""
        await self._clear_previous_life()
        await self.registry.beat()
        loop = asyncio.get_running_loop()
        self.outputs.start()
        for coro in (
            self.registry.run(self._stopping, self.reaper.sweep),
            self.queue.run_taker(self._stopping),
            self.followers.run(self._stopping),
            self.bus.run(self._stopping),
            self.rpc.run(self._stopping),
        ):
            self._loops.append(loop.create_task(coro))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.bus.subscribed.wait(), 5)

    async def _clear_previous_life(self) -> None:
        """Entries this node took but never claimed go back; tasks that waited on it alone
        are cancelled (as a single host does with its queue on restart)."""
        await self.queue.requeue_taken(self.node)
        ids = [i.decode() for i in await self.redis.smembers(keys.node_tasks(self.node))]
        now = time.time()
        for rec in await self.store.get_many(ids):
            if rec.status == TaskStatus.QUEUED:
                transition(rec, TaskStatus.CANCELLED)
                rec.node = self.node
                rec.ended_at = now
                rec.error = f"node {self.node} restarted before this queued task started"
                await self.store.save_now(rec)

    async def stop(self) -> None:
        """Stop the loops (the engine has ended its tasks) and leave the cluster."""
        await self.bus.drain(1.0)  # the completions of the tasks just ended go out
        self._stopping.set()
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._loops.clear()
        await self.outputs.stop()
        with contextlib.suppress(Exception):
            await self.redis.delete(keys.heartbeat(self.node))
        with contextlib.suppress(Exception):
            await self.blocking.aclose()

    # ------------------------------------------------------------ what the loops call

    def _describe(self) -> dict[str, Any]:
        eng = self.engine
        stats = eng.stats() if eng is not None else {}
        return {
            "url": self.service_url,
            "running": stats.get("running", 0),
            "paused": stats.get("paused", 0),
            "capacity": self.settings.max_concurrent_tasks,
        }

    async def _write_back(self) -> None:
        """Redis lost its data: write this node's live records back (they catch up)."""
        if self.engine is None:
            return
        self.store.resave(t.current_record() for t in list(self.engine._live.values()))
        if not self.settings.auth_token and self.service_token:
            await self.redis.set(keys.TOKEN, self.service_token, nx=True)
        await self.store.flush()

    def _announce_final(self, rec: TaskRecord) -> None:
        self.bus.publish(Notification.COMPLETED, rec.completed_params())

    async def _run_taken(self, method: str, record: TaskRecord, params: dict[str, Any]) -> None:
        assert self.engine is not None
        try:
            spec = spec_for_request(method, params, self.settings)
        except Exception as exc:
            msg = exc.message if isinstance(exc, ProtocolError) else f"{type(exc).__name__}"
            await self._fail_unstartable(record, f"node {self.node} cannot run it: {msg}")
            return
        await self.engine.run_taken(record, spec, self.followers.adopt(record.task_id))

    async def _fail_unstartable(self, record: TaskRecord, error: str) -> None:
        self.queue.release()
        transition(record, TaskStatus.FAILED)
        record.node = self.node
        record.error = error
        record.ended_at = time.time()
        await self.store.save_now(record)
        self._announce_final(record)

    async def _serve(self, req: jsonrpc.Request) -> dict[str, Any] | None:
        """A call forwarded from another node: the same ROUTES as a WebSocket frame."""
        from cc_executor.handlers import ROUTES, Conn

        assert self.engine is not None
        sub = Subscriber(self.settings.subscriber_queue_bytes, name="rpc")
        conn = Conn(self.engine, self.settings, sub, peer="cluster", sessions=self.sessions)
        try:
            return await jsonrpc.call(ROUTES, req, conn)
        finally:
            self.engine.detach(sub)
            sub.close()

    # ------------------------------------------------------------ views

    async def find_session(self, ref: str) -> tuple[str, str] | None:
        return await cluster_sessions.find_session(self, ref)

    async def nodes(self) -> list[dict[str, Any]]:
        return await self.registry.nodes()

    def health(self) -> dict[str, Any]:
        seen = self.registry.last_nodes
        return {
            "redis": self.redacted_url,
            "connected": self.registry.connected_since is not None,
            "nodes": len(seen),
            "nodes_alive": sum(1 for n in seen if n["alive"]),
        }
