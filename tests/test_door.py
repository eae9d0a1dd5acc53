"""The front door's checks without a socket: Host names, repeated headers, handshake slots."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers

from cc_executor.door import (
    HandshakeSlots,
    duplicate_header,
    host_allowed,
    host_name,
    wants_binary_output,
)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8003", "127.0.0.1"),
        ("[::1]:8003", "::1"),
        ("LocalHost", "localhost"),
        ("example.com:80", "example.com"),
        ("::1", "::1"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("header", "bind", "ok"),
    [
        ("127.0.0.1:8003", "127.0.0.1", True),
        ("localhost:8003", "127.0.0.1", True),
        ("[::1]:8003", "::1", True),
        ("dash.localhost", "127.0.0.1", True),
        ("192.168.1.5:8003", "0.0.0.0", True),
        ("build-host:8003", "build-host", True),
        ("evil.example", "127.0.0.1", False),
        ("127.0.0.1.evil.example", "127.0.0.1", False),
        ("localhost.evil.example:8003", "0.0.0.0", False),
        ("", "127.0.0.1", False),
        (None, "127.0.0.1", False),
    ],
)
def test_host_allowed(header: str | None, bind: str, ok: bool) -> None:
    assert host_allowed(header, bind, []) is ok


def test_allowed_hosts_extend_the_names() -> None:
    assert not host_allowed("executor.lan:8003", "127.0.0.1", [])
    assert host_allowed("executor.lan:8003", "127.0.0.1", ["executor.lan"])
    assert host_allowed("EXECUTOR.LAN", "127.0.0.1", ["executor.lan:9999"])


def test_duplicate_access_headers() -> None:
    assert duplicate_header(Headers([("Host", "a"), ("Origin", "b")])) is None
    assert duplicate_header(Headers([("Host", "a"), ("Host", "b")])) == "Host"
    assert duplicate_header(Headers([("Origin", "a"), ("origin", "a")])) == "Origin"
    assert duplicate_header(Headers([("X-A", "1"), ("X-A", "2")])) is None


def test_handshake_slots_evict_the_oldest_waiting() -> None:
    slots = HandshakeSlots(2)
    assert slots.opened("a") is None
    assert slots.opened("b") is None
    slots.done("a")  # its request arrived: it no longer waits
    assert slots.opened("c") is None
    assert slots.opened("d") == "b"
    assert len(slots) == 2 and slots.evicted == 1
    slots.done("c")
    slots.done("d")
    slots.done("d")  # closing twice is fine
    assert len(slots) == 0


def test_binary_output_is_asked_for_by_the_query_only() -> None:
    assert wants_binary_output("/ws?output=binary")
    assert wants_binary_output("/ws?token=abc&output=binary")
    assert not wants_binary_output("/ws")
    assert not wants_binary_output("/ws?output=text")
    assert not wants_binary_output("/ws?outputs=binary")
