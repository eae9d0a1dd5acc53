"""Who may come in: the checks on a TCP connection and its HTTP request, before any frame.

No I/O here (websockets' objects in, a verdict out), so each check is tested without a
socket; `server.py` applies them.

- Handshakes: a TCP connection that has not sent its whole HTTP request yet holds a file
  descriptor and nothing else. At most `max_handshakes` wait at once; a new one evicts the
  oldest waiting one (a real client sends its request within a millisecond of connecting,
  an idle socket never does), and `handshake_timeout` closes the rest.
- Headers that decide access (Host, Origin, Authorization) must be there at most once: two
  of them are a 400, not a guess at which one counts.
- Host: a DNS-rebinding page (evil.example resolving to 127.0.0.1) makes a browser send
  `Host: evil.example`; only loopback names, IP literals (rebinding needs a name), the
  configured host and `allowed_hosts` are served.
- What the connection asked for: binary output frames (`/ws?output=binary`).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cc_executor.protocol import BINARY_OUTPUT_QUERY

SINGLE_HEADERS = ("Host", "Origin", "Authorization")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})


def duplicate_header(headers: Any) -> str | None:
    """The first of SINGLE_HEADERS the request holds more than once, if any."""
    for name in SINGLE_HEADERS:
        if len(headers.get_all(name)) > 1:
            return name
    return None


def host_name(host_header: str) -> str:
    """`name:port`, `[v6]:port`, `name` -> the name, lower case, without brackets."""
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value


def host_allowed(host_header: str | None, bind_host: str, allowed: Iterable[str]) -> bool:
    """Is this Host header one of ours (see the module docstring)?"""
    if not host_header:
        return False
    name = host_name(host_header)
    if not name:
        return False
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True  # browsers resolve these to loopback themselves, never through DNS
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    ours = {host_name(h) for h in allowed}
    ours.add(host_name(bind_host))
    return name in ours


class HandshakeSlots:
    """TCP connections still waiting for their HTTP request, oldest first."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max(1, max_waiting)
        self._waiting: OrderedDict[Any, None] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def opened(self, conn: Any) -> Any | None:
        """A new connection waits; returns the one it evicts (to be closed), if any."""
        self._waiting[conn] = None
        if len(self._waiting) > self.max_waiting:
            old, _ = self._waiting.popitem(last=False)
            self.evicted += 1
            return old
        return None

    def done(self, conn: Any) -> None:
        """Its request arrived (or it closed): it no longer waits."""
        self._waiting.pop(conn, None)


def wants_binary_output(path: str) -> bool:
    """Whether a WebSocket was opened as `/ws?output=binary` (protocol.py)."""
    key, value = BINARY_OUTPUT_QUERY
    return value in parse_qs(urlsplit(path).query).get(key, ())
