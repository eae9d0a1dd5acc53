"""The cluster's event bus: every task's control events to every node, over Redis pub/sub.

`publish` never waits: events go on a queue that one task sends, in order. Each node
receives every event (its own too) and hands it to its `listen` subscribers (a dashboard
sees the whole cluster) and to its followers of remote tasks (cluster/follow.py). The
`queue-wake` channel tells nodes with free slots that work was queued.

Pub/sub loses what is sent while a node is disconnected; what matters of it is in the
records: after reconnecting, the followers re-read theirs (`Followers.recheck`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis, forever
from cc_executor.cluster.follow import Followers
from cc_executor.engine.bus import LocalEventBus
from cc_executor.engine.events import Subscriber

log = logging.getLogger(__name__)


class RedisEventBus(LocalEventBus):
    """An `EventBus` shared by every node of the cluster: what is published goes through
    Redis; what comes from Redis is delivered to this process's listeners."""

    def __init__(self, redis: Redis, node: str, followers: Followers) -> None:
        super().__init__()
        self.redis = redis
        self.node = node
        self.followers = followers
        self._outbox: asyncio.Queue[bytes] | None = None
        self.on_queue_wake: Callable[[], None] = lambda: None
        self.on_reconnect: Callable[[], Any] = lambda: None
        self.subscribed = asyncio.Event()

    def publish(self, method: str, params: dict[str, Any]) -> None:
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        self._outbox.put_nowait(orjson.dumps({"m": method, "p": params, "n": self.node}))

    def relay(self, method: str, params: dict[str, Any]) -> None:
        """For the task's followers on other nodes only: no listener gets it."""
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        msg = {"m": method, "p": params, "n": self.node, "f": 1}
        self._outbox.put_nowait(orjson.dumps(msg))

    async def drain(self, timeout: float) -> None:
        """Until every event published so far is sent (or `timeout`): before stopping."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._outbox is not None and not self._outbox.empty():
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    def unlisten(self, subscriber: Subscriber) -> None:
        """The subscriber's connection closed: it listens no more and follows nothing."""
        super().unlisten(subscriber)
        self.followers.detach(subscriber)

    # ------------------------------------------------------------ loops

    async def run(self, stopping: asyncio.Event) -> None:
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        await asyncio.gather(
            forever("bus sender", self._send_step, stopping),
            forever("bus receiver", lambda: self._receive(stopping), stopping),
        )

    async def _send_step(self) -> None:
        assert self._outbox is not None
        first = await self._outbox.get()
        batch = [first]
        while not self._outbox.empty() and len(batch) < 256:
            batch.append(self._outbox.get_nowait())
        # If Redis is away this batch is lost: the records say what happened, and the
        # followers re-read them.
        pipe = self.redis.pipeline(transaction=False)
        for msg in batch:
            pipe.publish(keys.BUS, msg)
        await pipe.execute()

    async def _receive(self, stopping: asyncio.Event) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.BUS, keys.QUEUE_WAKE)
            self.subscribed.set()
            reconnect = self.on_reconnect()
            if asyncio.iscoroutine(reconnect):
                await reconnect
            while not stopping.is_set():
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None:
                    continue
                if msg["channel"] == keys.QUEUE_WAKE.encode():
                    self.on_queue_wake()
                    continue
                self._dispatch(orjson.loads(msg["data"]))
        finally:
            self.subscribed.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method, params, node = msg["m"], msg["p"], msg.get("n")
        self.followers.on_event(method, params, node)
        if not msg.get("f"):  # a task's own event (relay) goes to its followers only
            self.deliver(method, params)
