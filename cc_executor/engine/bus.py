"""The event bus: control events of every task to whoever listens (a dashboard, `listen`).

`EventBus` is the seam a shared bus (several hosts) plugs into; `LocalEventBus` hands each
event to the listeners of this process.
"""

from __future__ import annotations

from typing import Any, Protocol

from cc_executor.engine.events import Event, Subscriber


class EventBus(Protocol):
    listeners: set[Subscriber]  # the subscribers of this process

    def publish(self, method: str, params: dict[str, Any]) -> None: ...
    def relay(self, method: str, params: dict[str, Any]) -> None:
        """One task's event for its subscribers on other nodes (`claude.event`, ...)."""

    def listen(self, subscriber: Subscriber) -> None: ...
    def unlisten(self, subscriber: Subscriber) -> None: ...


class LocalEventBus:
    def __init__(self) -> None:
        self.listeners: set[Subscriber] = set()

    def publish(self, method: str, params: dict[str, Any]) -> None:
        self.deliver(method, params)

    def relay(self, method: str, params: dict[str, Any]) -> None:
        return None  # one process: its subscribers got it from the task

    def deliver(self, method: str, params: dict[str, Any]) -> None:
        """Hand an event to this process's listeners."""
        if not self.listeners:
            return
        ev = Event(method, params)
        for sub in tuple(self.listeners):
            if sub.closed:
                self.listeners.discard(sub)
            else:
                sub.push(ev)

    def listen(self, subscriber: Subscriber) -> None:
        self.listeners.add(subscriber)

    def unlisten(self, subscriber: Subscriber) -> None:
        self.listeners.discard(subscriber)
