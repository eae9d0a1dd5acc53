"""Declaring a dead node's work: its running and paused tasks `lost`, its taken entries back.

Every node sweeps after each heartbeat: a registered node whose heartbeat key expired and
that still has work (unfinished tasks in `keys.node_tasks`, entries in `keys.taken`) is
reaped by exactly one survivor, the one that sets `keys.reaper_lock` first. A node that
has itself just reconnected to Redis waits a whole TTL before reaping anyone (`settled`):
after a Redis outage every heartbeat may have expired, and the live nodes need the time to
beat again. Idle times are never used: a task may run for hours.

A lost record is final (cluster/store.py): when the node comes back with the same id, its
recovery kills what is left of those groups (engine/recovery.py) but never revives them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis
from cc_executor.cluster.queue import ClusterQueue
from cc_executor.cluster.registry import NodeRegistry
from cc_executor.cluster.store import RedisTaskStore
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.records import TaskRecord
from cc_executor.protocol import TaskStatus

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        redis: Redis,
        node: str,
        registry: NodeRegistry,
        store: RedisTaskStore,
        queue: ClusterQueue,
        announce: Callable[[TaskRecord], None],
    ) -> None:
        self.redis = redis
        self.node = node
        self.registry = registry
        self.store = store
        self.queue = queue
        self._announce = announce  # publish `process.completed` of a record made final
        self.reaped: list[tuple[str, int, int]] = []  # (node, lost, requeued), for tests

    async def sweep(self) -> None:
        if not self.registry.settled():
            return
        names = [k.decode() for k in await self.redis.hkeys(keys.NODES)]
        others = [n for n in names if n != self.node]
        if not others:
            return
        pipe = self.redis.pipeline(transaction=False)
        for n in others:
            pipe.exists(keys.heartbeat(n))
            pipe.scard(keys.node_tasks(n))
            pipe.llen(keys.taken(n))
        res = await pipe.execute()
        for i, n in enumerate(others):
            alive, tasks, taken = res[3 * i : 3 * i + 3]
            if alive or not (tasks or taken):
                continue
            lock = keys.reaper_lock(n)
            if await self.redis.set(lock, self.node, nx=True, px=int(self.registry.ttl * 1000)):
                try:
                    await self.reap(n)
                finally:
                    await self.redis.delete(lock)

    async def reap(self, dead: str) -> None:
        """Declare `dead`'s work: requeue what it took but never started, mark the rest lost."""
        requeued = await self.queue.requeue_taken(dead)
        ids = [i.decode() for i in await self.redis.smembers(keys.node_tasks(dead))]
        lost = 0
        now = time.time()
        for rec in await self.store.get_many(ids):
            if rec.status.is_final:
                await self.redis.srem(keys.node_tasks(dead), rec.task_id)
                continue
            started = rec.status != TaskStatus.QUEUED
            transition(rec, TaskStatus.LOST)
            rec.node = dead
            rec.ended_at = now
            rec.error = f"node {dead} was lost (no heartbeat for {self.registry.ttl:g}s) " + (
                "while this task ran on it" if started else "before this task started"
            )
            if await self.store.save_now(rec):
                lost += 1
                self._announce(rec)
        known = set(ids)
        for tid in known:  # final now, by us or by the node itself before it died
            await self.redis.srem(keys.node_tasks(dead), tid)
        self.reaped.append((dead, lost, requeued))
        log.warning(
            "node %s is gone: %d tasks marked lost, %d queue entries put back",
            dead,
            lost,
            requeued,
            extra={"dead_node": dead, "lost": lost, "requeued": requeued},
        )
