"""How a front end talks to the engine: one small contract, several ways to carry it.

In the spirit of httpx's transports, a `Transport` does one thing: `call(method, params)`
returns the method's result, or raises one of the project's errors:

- `ProtocolError`: the JSON-RPC error the handlers answered (the service's, or the very
  same handlers run in this process);
- `ServiceUnavailable`: nothing was sent (the service could not be reached, or the
  connection was closed already), so sending again, or elsewhere, runs nothing twice;
- `ExecutorConnectionError`: the connection dropped after the request went out: it may
  have been carried out.

Notifications (`process.output`, `process.completed`, ...) go to the sink the transport was
built with, as `sink(method, params)`; a task's come after the `execute` reply that named
it, so a caller that starts following a task when it has the reply misses nothing. The
sink must not keep a reference it later changes: in-process, `params` is shared.

The implementations: `InProcessTransport` (the handlers on an engine in this process),
`WebSocketTransport` (a pool of connections to the service), `AutoTransport` (the service
when it answers, else in-process) and `FunctionTransport` (one async function: tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from cc_executor.client import ExecutorConnectionError, ServiceUnavailable
from cc_executor.protocol import Method

NotificationSink = Callable[[str, dict[str, Any]], None]
"""Where a transport hands each notification: `sink(method, params)`."""

CHANNEL_LOST: Final = "transport.channel_lost"
"""Not a wire notification: what a transport tells its sink when it will get no more
notifications of a task (`{"task_id", "error"}`), because the connection carrying them
closed. `subscribe` again (from the offsets already seen) to go on following it."""


class Transport(Protocol):
    """What the bridge and the Python API call; see the module docstring for the errors."""

    name: str
    """Who serves the calls: "websocket" (the service), "local" (this process), ..."""

    async def call(self, method: Method, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one method and return its result."""
        ...

    def info(self) -> dict[str, Any]:
        """What it is connected to, for status pages; never connects or starts anything.
        `ready` says whether a call would go out now without connecting or starting."""
        ...

    async def aclose(self) -> None:
        """Close connections, or stop the in-process engine (ending its tasks)."""
        ...


Handler = Callable[[Method, dict[str, Any]], Awaitable[dict[str, Any]]]
"""An async function serving calls: `await handler(method, params)` -> result."""


class FunctionTransport:
    """A transport made of one function: `call` awaits `handler(method, params)`.

    For tests and adapters: the handler raises the project's errors itself, and emits
    notifications through the sink it was given (`transport.notify`).
    """

    def __init__(
        self,
        handler: Handler,
        on_notification: NotificationSink | None = None,
        *,
        name: str = "function",
    ) -> None:
        self.handler = handler
        self.notify: NotificationSink = on_notification or _ignore
        self.name = name
        self.closed = False

    async def call(self, method: Method, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.closed:
            raise ServiceUnavailable(f"the {self.name} transport is closed")
        return await self.handler(method, dict(params or {}))

    def info(self) -> dict[str, Any]:
        return {"ready": not self.closed}

    async def aclose(self) -> None:
        self.closed = True


def _ignore(method: str, params: dict[str, Any]) -> None:
    return None


__all__ = [
    "CHANNEL_LOST",
    "ExecutorConnectionError",
    "FunctionTransport",
    "Handler",
    "NotificationSink",
    "ServiceUnavailable",
    "Transport",
]
