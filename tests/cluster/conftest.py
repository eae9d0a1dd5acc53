"""Cluster fixtures: a private redis-server per test, and nodes started as processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Node, RedisServer, pid_namespaces_available, redis_available, start_node


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    why = redis_available()
    if why:
        pytest.skip(why)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def need_pid_namespaces() -> None:
    why = pid_namespaces_available()
    if why:
        pytest.skip(why)


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """nodes(node_id, isolate=False, **env) -> a started Node; all are stopped after."""
    started: list[Node] = []

    async def start(node_id: str, isolate: bool = False, **env: str) -> Node:
        n = await start_node(tmp_path, redis_server.url, node_id, isolate=isolate, **env)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()
