"""Build an engine and its parts from Settings: the one place that chooses them.

On a single host: the SQLite store, the in-memory queue and the in-process bus. With
`redis_url` set, the node's cluster parts (cc_executor/cluster): the Redis store, the
cluster-wide queue, the Redis bus and a Redis stream per task stream for its output.
"""

from __future__ import annotations

from cc_executor.config import Settings
from cc_executor.engine.bus import LocalEventBus
from cc_executor.engine.engine import Engine
from cc_executor.engine.queue import LocalTaskQueue
from cc_executor.engine.store import SqliteTaskStore


def build_engine(settings: Settings) -> Engine:
    if settings.redis_url:
        from cc_executor.cluster.node import ClusterNode

        node = ClusterNode(settings)
        engine = Engine(settings, store=node.store, queue=node.queue, bus=node.bus)
        node.attach(engine)
        return engine
    return Engine(
        settings,
        store=SqliteTaskStore(settings.db_path),
        queue=LocalTaskQueue(settings.max_concurrent_tasks, settings.max_queued_tasks),
        bus=LocalEventBus(),
    )
