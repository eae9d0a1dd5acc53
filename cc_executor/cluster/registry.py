"""The node registry: each node's heartbeat (a key with a TTL) and what it says about it.

A node is alive while `keys.heartbeat(node)` exists; it refreshes it every `interval`
(a third of `node_ttl`, at most 2 s). `keys.NODES` keeps every node's last heartbeat after
it dies, so `status` can list dead nodes too; a heartbeat's age is read from the key's
remaining TTL, so no two hosts' clocks need to agree.

The registry also notices when Redis lost its data (a restart without persistence):
`keys.EPOCH` is set once per dataset; a node that finds another value (or none) calls
`on_data_lost`, which writes its live state back (the records catch up).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis

log = logging.getLogger(__name__)


def beat_interval(ttl: float) -> float:
    return min(ttl / 3, 2.0)


class NodeRegistry:
    def __init__(
        self,
        redis: Redis,
        node: str,
        ttl: float,
        describe: Callable[[], dict[str, Any]],
        on_data_lost: Callable[[], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.node = node
        self.ttl = ttl
        self.interval = beat_interval(ttl)
        self._describe = describe
        self._on_data_lost = on_data_lost
        self._epoch: bytes | None = None
        self.connected_since: float | None = None  # monotonic; None while Redis is down
        self.beats = 0
        self.last_nodes: list[dict[str, Any]] = []  # as of the last beat (for /health)

    async def beat(self) -> None:
        """Refresh this node's heartbeat (and notice a Redis that lost its data)."""
        info = {**self._describe(), "node": self.node, "ttl": self.ttl, "at": time.time()}
        blob = orjson.dumps(info)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.heartbeat(self.node), blob, px=int(self.ttl * 1000))
        pipe.hset(keys.NODES, self.node, blob)
        pipe.set(keys.EPOCH, secrets.token_hex(8), nx=True)
        pipe.get(keys.EPOCH)
        *_, epoch = await pipe.execute()
        if self.connected_since is None:
            self.connected_since = time.monotonic()
        self.beats += 1
        if self._epoch is not None and epoch != self._epoch:
            log.warning("Redis lost its data (restarted without persistence): writing back")
            self._epoch = epoch
            await self._on_data_lost()
        self._epoch = epoch

    def disconnected(self) -> None:
        self.connected_since = None

    def settled(self) -> bool:
        """Connected for a whole TTL: every live node has had the time to beat since."""
        since = self.connected_since
        return since is not None and time.monotonic() - since > self.ttl + self.interval

    async def is_alive(self, node: str) -> bool:
        return bool(await self.redis.exists(keys.heartbeat(node)))

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node that ever beat: id, alive, running, capacity, heartbeat age."""
        raw = await self.redis.hgetall(keys.NODES)
        names = sorted(k.decode() for k in raw)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.pttl(keys.heartbeat(name))
        ttls = await pipe.execute()
        out = []
        now = time.time()
        for name, pttl in zip(names, ttls, strict=True):
            info = orjson.loads(raw[name.encode()])
            alive = pttl is not None and pttl > 0
            ttl = float(info.get("ttl", self.ttl))
            age = ttl - pttl / 1000 if alive else now - float(info.get("at", now))
            out.append(
                {
                    "node": name,
                    "alive": alive,
                    "running": info.get("running", 0),
                    "paused": info.get("paused", 0),
                    "capacity": info.get("capacity", 0),
                    "url": info.get("url"),
                    "heartbeat_age_s": round(max(age, 0.0), 3),
                }
            )
        return out

    async def run(self, stopping: asyncio.Event, sweep: Callable[[], Awaitable[None]]) -> None:
        """Beat, then look for dead nodes, every `interval`, until `stopping`."""
        while not stopping.is_set():
            try:
                await self.beat()
                self.last_nodes = await self.nodes()
                await sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected_since is not None:
                    log.warning("heartbeat failed (%s); retrying", type(exc).__name__)
                self.disconnected()
            try:
                await asyncio.wait_for(stopping.wait(), self.interval)
            except TimeoutError:
                pass
