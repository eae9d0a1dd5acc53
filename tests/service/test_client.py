"""The Python client: retrying connect, settings-based URL/token, handles when the link drops."""

from __future__ import annotations

import asyncio

import pytest

from cc_executor.client import ExecutorClient, ExecutorConnectionError
from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.support import free_port, live_members, wait_until


async def test_connect_retries_until_the_service_is_up(settings: Settings) -> None:
    port = free_port()
    s = settings.model_copy(update={"port": port, "auth_token": "t0k"})
    client = ExecutorClient(settings=s, retry_for=30)
    assert client.url == f"ws://127.0.0.1:{port}/ws" and client.token == "t0k"
    connecting = asyncio.create_task(client.connect())
    await asyncio.sleep(0)  # it is trying (and failing) against a closed port
    svc = ExecutorService(s)
    await svc.start()
    try:
        await asyncio.wait_for(connecting, 30)
        assert (await client.ping())["pong"] is True
        await client.close()
    finally:
        await svc.stop()


async def test_no_retry_fails_fast_with_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(ExecutorConnectionError, match="cannot reach"):
        async with ExecutorClient(f"ws://127.0.0.1:{port}/ws", "x"):
            pass


async def test_token_read_from_the_data_dir(service: ExecutorService) -> None:
    s = service.settings.model_copy(update={"port": service.port})
    async with ExecutorClient(settings=s) as c:
        assert c.token == service.token
        assert (await c.ping())["pong"] is True


async def test_service_stop_seen_by_the_client(settings: Settings) -> None:
    svc = ExecutorService(settings)
    await svc.start()
    c = ExecutorClient(svc.url, svc.token)
    await c.connect()
    h = await c.execute(["sleep", "300"])
    assert h.pid is not None
    await svc.stop()
    # The task was ended, and the client was told before the connection closed.
    done = await h.wait(30)
    assert done["status"] == "cancelled" and "shutting down" in done["error"]
    assert await wait_until(lambda: not c.connected)
    with pytest.raises(ExecutorConnectionError):
        await c.ping()
    assert await wait_until(lambda: not live_members(h.pid))  # type: ignore[arg-type]
    await c.close()
