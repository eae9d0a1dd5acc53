"""The engine: one owner of every task process (spawn, stream, signal, reap, persist)."""

from cc_executor.engine.datadir import DataDirLocked
from cc_executor.engine.engine import (
    Engine,
    RunningTask,
    TaskObserver,
    TaskSpec,
)
from cc_executor.engine.events import CallbackSubscriber, Event, Subscriber, SubscriberClosed
from cc_executor.engine.factory import build_engine
from cc_executor.engine.process import command_env
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import SqliteTaskStore, TaskStore

__all__ = [
    "CallbackSubscriber",
    "DataDirLocked",
    "Engine",
    "Event",
    "RunningTask",
    "SqliteTaskStore",
    "Subscriber",
    "SubscriberClosed",
    "TaskObserver",
    "TaskRecord",
    "TaskSpec",
    "TaskStore",
    "build_engine",
    "command_env",
]
