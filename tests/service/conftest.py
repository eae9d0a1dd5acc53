"""Service fixtures: services with custom settings, raw WebSocket connections, and the
service run as a real subprocess (tests/support's ServiceProcess) for crash/signal tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.support import ServiceProcess

MakeService = Callable[..., Awaitable[ExecutorService]]


@pytest.fixture
async def make_service(settings: Settings) -> AsyncIterator[MakeService]:
    """make_service(**overrides) -> a started service (own data dir per call), stopped after."""
    services: list[ExecutorService] = []

    async def make(**overrides: Any) -> ExecutorService:
        data_dir = settings.data_dir.parent / f"data-{len(services)}"
        data_dir.mkdir(exist_ok=True)
        s = Settings(**{**settings.model_dump(), "data_dir": data_dir, **overrides})
        svc = ExecutorService(s)
        await svc.start()
        services.append(svc)
        return svc

    yield make
    for svc in services:
        await svc.stop()


class RawWS:
    """A WebSocket speaking raw JSON-RPC frames: nothing between the test and the wire."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1000)
        self.notifications: list[dict[str, Any]] = []

    async def send(self, frame: Any) -> None:
        if isinstance(frame, str | bytes):
            await self.ws.send(frame, text=isinstance(frame, str))
        else:
            await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 30) -> Any:
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        return json.loads(msg)

    async def reply_to(self, rid: Any, timeout: float = 30) -> dict[str, Any]:
        """Read until the response with this id; notifications on the way are kept."""
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self.notifications.append(msg)
                continue
            assert isinstance(msg, dict) and msg.get("id") == rid, f"unexpected frame {msg}"
            return msg

    async def call(self, method: str, params: Any = None, timeout: float = 30) -> dict[str, Any]:
        """One request; the whole response object (result or error)."""
        rid = next(self.ids)
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        await self.send(req)
        return await self.reply_to(rid, timeout)

    async def result(self, method: str, params: Any = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def until(self, method: str, task_id: str, timeout: float = 30) -> dict[str, Any]:
        """Read until a notification `method` for task_id (kept ones count too)."""
        for n in self.notifications:
            if n["method"] == method and n["params"].get("task_id") == task_id:
                return n["params"]
        while True:
            msg = await self.recv(timeout)
            assert "method" in msg, f"unexpected response {msg}"
            self.notifications.append(msg)
            if msg["method"] == method and msg["params"].get("task_id") == task_id:
                return msg["params"]


@contextlib.asynccontextmanager
async def raw_connect(
    url: str, token: str | None, *, max_queue: int | None = 16, **kw: Any
) -> AsyncIterator[RawWS]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(
        url,
        additional_headers=headers,
        proxy=None,
        compression=None,
        max_size=None,
        max_queue=max_queue,
        open_timeout=10,
        **kw,
    ) as ws:
        yield RawWS(ws)


@pytest.fixture
async def raw(service: ExecutorService) -> AsyncIterator[RawWS]:
    async with raw_connect(service.url, service.token) as r:
        yield r


# ------------------------------------------------------------------ service as a subprocess


@pytest.fixture
async def service_process(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """service_process(data_dir=None, **env) -> a started ServiceProcess (tests/support);
    every one is stopped after the test, and none may have logged an internal error."""
    procs: list[ServiceProcess] = []

    async def start(data_dir: Path | None = None, **env: str) -> ServiceProcess:
        sp = ServiceProcess(
            data_dir or tmp_path / "svc-data", tmp_path / f"svc-{len(procs)}.log", **env
        )
        procs.append(sp)
        await sp.start()
        return sp

    yield start
    errors = []
    for sp in procs:
        await sp.stop_async()
        errors += sp.errors()
    assert not errors, "\n".join(json.dumps(rec)[:2000] for rec in errors[:10])
