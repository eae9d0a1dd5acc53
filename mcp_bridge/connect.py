"""How the bridge reaches the engine: the transport its settings ask for (`bridge_mode`).

- `websocket`: the service, over a pool of WebSocket connections;
- `local`: the engine in this process, through the service's own handlers, in the first
  free slot `<data dir>/mcp-local/slot-N` (an engine owns its data dir alone, so each
  running bridge takes its own; the next one to take a slot after a crash reconciles it);
- `auto`: the service when it answers, else the local engine (`AutoTransport`).
"""

from __future__ import annotations

from collections.abc import Callable

from cc_executor.config import Settings
from cc_executor.transport import NotificationSink, Transport
from cc_executor.transport.auto import AutoTransport
from cc_executor.transport.inprocess import InProcessTransport
from cc_executor.transport.websocket import WebSocketTransport
from mcp_bridge.settings import BridgeSettings

LOCAL_SLOTS = 256

Connect = Callable[[NotificationSink], Transport]
"""What gives the bridge its transport, told where notifications go (its watches)."""


def make_transport(
    settings: BridgeSettings, sink: NotificationSink, service: Settings | None = None
) -> Transport:
    """The transport `settings.bridge_mode` asks for, its notifications going to `sink`."""
    svc = service or settings.service_settings()

    def remote(connect_timeout: float, retry_for: float = 0.0) -> WebSocketTransport:
        return WebSocketTransport(
            settings.websocket_url,
            lambda: settings.resolve_token(svc),  # read at each connect: it may be new
            sink,
            settings=svc,
            pool_size=settings.pool_size,
            connect_timeout=connect_timeout,
            retry_for=retry_for,
            token_source=settings.token_source(svc),
        )

    def local() -> InProcessTransport:
        base = svc.data_dir / "mcp-local"
        slots = [base / f"slot-{n}" for n in range(LOCAL_SLOTS)]
        return InProcessTransport(svc, sink, data_dirs=slots)

    mode = settings.bridge_mode
    if mode == "local":
        return local()
    if mode == "websocket":
        return remote(max(settings.connect_timeout, 5.0), settings.connect_retry_for)
    return AutoTransport(
        remote(settings.connect_timeout), local(), reconnect_max_wait=settings.reconnect_max_wait
    )
