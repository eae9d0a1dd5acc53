"""Build an engine and its parts from Settings: the one place that chooses them.

Today every part is the single-host one (SQLite store, in-memory queue, in-process bus);
a shared store, queue and bus for several hosts are chosen here too.
"""

from __future__ import annotations

from cc_executor.config import Settings
from cc_executor.engine.bus import LocalEventBus
from cc_executor.engine.engine import Engine
from cc_executor.engine.queue import LocalTaskQueue
from cc_executor.engine.store import SqliteTaskStore


def build_engine(settings: Settings) -> Engine:
    return Engine(
        settings,
        store=SqliteTaskStore(settings.db_path),
        queue=LocalTaskQueue(settings.max_concurrent_tasks, settings.max_queued_tasks),
        bus=LocalEventBus(),
    )
