"""Session test helpers: calls through the real service, and a service that can restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.protocol import ProtocolError
from cc_executor.server import ExecutorService

ANSWER = "Fake Claude answer to: "


async def call(client: ExecutorClient, method: str, **params: Any) -> Any:
    return await client.call(method, params)


async def call_error(client: ExecutorClient, method: str, **params: Any) -> ProtocolError:
    try:
        res = await client.call(method, params)
    except ProtocolError as exc:
        return exc
    raise AssertionError(f"{method} succeeded: {res}")


async def turns_of(client: ExecutorClient, session: str) -> list[dict[str, Any]]:
    logs = await call(client, "session.logs", session_id=session, lines=1000)
    return [e for e in logs["entries"] if e["type"] == "turn"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    return d


@dataclass
class Restartable:
    """The `service` fixture's service and client, plus restart(): stop it, start a new
    service on the same data dir and reconnect."""

    settings: Settings
    service: ExecutorService
    client: ExecutorClient
    extra: list[ExecutorService] = field(default_factory=list)

    async def restart(self) -> None:
        await self.client.close()
        await self.service.stop()
        svc = ExecutorService(self.settings)
        await svc.start()
        self.extra.append(svc)
        self.service = svc
        self.client = ExecutorClient(svc.url, svc.token)
        await self.client.connect()


@pytest.fixture
async def restartable(
    settings: Settings, service: ExecutorService, fake_claude_state: Path
) -> AsyncIterator[Restartable]:
    client = ExecutorClient(service.url, service.token)
    await client.connect()
    r = Restartable(settings, service, client)
    try:
        yield r
    finally:
        await r.client.close()
        for svc in r.extra:
            await svc.stop()
