"""Loopback ports."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nothing listens on now (bound by us for a moment, then released).

    Another process could take it before the caller binds it; on a test machine that
    almost never happens, and a service that cannot bind exits with a clear error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
