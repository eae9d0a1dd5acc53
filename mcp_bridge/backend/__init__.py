"""Where the bridge's tasks run: one small interface, two implementations, one policy.

`Backend` (`base`) is what the MCP tools call. `RemoteBackend` (`remote`) sends calls to
the executor service over a pool of WebSocket connections; `LocalBackend` (`local`)
drives the same `Engine` in-process (no second way of spawning: specs come from
`cc_executor.tasks` and `cc_executor.claude.runner`). `AutoBackend` (`auto`) uses the
service and falls back to the local engine while the service cannot be reached, going
back to the service as soon as it answers; calls about a task go to the backend that
owns it. `make_backend` picks one from the settings (`bridge_mode`).
"""

from mcp_bridge.backend.auto import AutoBackend, make_backend
from mcp_bridge.backend.base import (
    Backend,
    Followed,
    ProgressFn,
    ServiceUnavailable,
    TaskParams,
    Waited,
    follow,
)
from mcp_bridge.backend.local import LocalBackend
from mcp_bridge.backend.remote import RemoteBackend

__all__ = [
    "AutoBackend",
    "Backend",
    "Followed",
    "LocalBackend",
    "ProgressFn",
    "RemoteBackend",
    "ServiceUnavailable",
    "TaskParams",
    "Waited",
    "follow",
    "make_backend",
]
