"""Redis credentials come from the URL and appear nowhere else; without a cluster, a pin
to another node is refused clearly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_executor.client import ExecutorClient
from cc_executor.protocol import ErrorCode, ProtocolError

from .support import RedisServer, client, redis_available, start_node

SECRET = "s3cret-Redis-pass"


async def test_the_redis_password_never_shows(tmp_path: Path) -> None:
    why = redis_available()
    if why:
        pytest.skip(why)
    server = RedisServer(tmp_path / "redis", password=SECRET)
    server.start()
    node = None
    try:
        node = await start_node(tmp_path, server.url, "node-a")
        health_url = node.url.replace("ws://", "http://").replace("/ws", "/health")
        health = (await asyncio.to_thread(httpx.get, health_url, trust_env=False)).json()
        assert health["cluster"]["redis"] == f"redis://127.0.0.1:{server.port}/0"
        async with client(node) as cl:
            tid = (await cl.result("execute", {"command": "echo hi"}))["task_id"]
            await cl.until("process.completed", tid)
            server.stop()  # now every call that needs Redis fails: the error names no secret
            failed = await cl.call("status", {})
            assert failed["error"]["code"] == -32000, failed
            assert f"127.0.0.1:{server.port}" in failed["error"]["message"]
            assert SECRET not in str(failed)
        node.stop()
        assert SECRET not in node.log_path.read_text()
        wrong = RedisServer(tmp_path / "redis2", password="other")
        wrong.start()
        try:
            with pytest.raises(AssertionError, match="exited"):
                await start_node(tmp_path, wrong.url.replace("other", SECRET), "node-x")
            said = (tmp_path / "node-x.log").read_text()
            assert "cannot reach the cluster's Redis at redis://127.0.0.1:" in said
            assert "AuthenticationError" in said and SECRET not in said
        finally:
            wrong.stop()
    finally:
        if node is not None:
            node.stop()
        server.stop()


async def test_without_a_cluster_a_pin_to_another_node_is_refused(service: Any) -> None:
    async with ExecutorClient(service.url, service.token) as c:
        with pytest.raises(ProtocolError) as err:
            await c.call("execute", {"command": "true", "node": "elsewhere"})
        assert err.value.code == ErrorCode.INVALID_PARAMS
        assert "node: 'elsewhere' is not this node" in err.value.message
        here = await c.call("execute", {"command": "true", "node": service.settings.node})
        assert here["status"] in ("running", "completed")
