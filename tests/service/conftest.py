"""Service fixtures: services with custom settings, raw WebSocket connections, and the
service run as a real subprocess (`python -m cc_executor.server`) for crash/signal tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from cc_executor.config import Settings
from cc_executor.server import ExecutorService

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


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    stderr_path: Path
    url: str = ""
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr_path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                out.append(orjson.loads(line))
        return out

    def read_token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def vm(self, key: str) -> int:
        """A /proc/<pid>/status figure (VmRSS, VmHWM) in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)


def _launch(data_dir: Path, stderr_path: Path, env_overrides: dict[str, str]) -> ServiceProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_EXECUTOR_")}
    env.update(
        CC_EXECUTOR_DATA_DIR=str(data_dir),
        CC_EXECUTOR_KILL_GRACE_SECONDS="1",
        CC_EXECUTOR_LOG_FORMAT="json",
        CC_EXECUTOR_LOG_LEVEL="INFO",
    )
    env.update(env_overrides)
    with open(stderr_path, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cc_executor.server", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    return ServiceProcess(proc, data_dir, stderr_path, env=env)


async def start_service_process(
    data_dir: Path, stderr_path: Path, **env_overrides: str
) -> ServiceProcess:
    """Start `python -m cc_executor.server --port 0` and learn its URL from its JSON log."""
    sp = _launch(data_dir, stderr_path, env_overrides)
    proc = sp.proc
    start = len(sp.log_lines())
    for _ in range(3000):  # ~30 s: a loaded machine may be slow to import
        for rec in sp.log_lines()[start:]:
            if rec.get("msg") == "cc-executor listening":
                sp.url = rec["url"]
        if sp.url:
            break
        if proc.poll() is not None:
            raise AssertionError(f"service exited: {sp.log_lines()}")
        await asyncio.sleep(0.01)
    assert sp.url, f"service did not start: {sp.log_lines()}"
    sp.token = sp.read_token()
    return sp


@pytest.fixture
async def service_process(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """service_process(data_dir=None, **env) -> a running ServiceProcess; all are ended after."""
    procs: list[ServiceProcess] = []

    async def start(data_dir: Path | None = None, **env: str) -> ServiceProcess:
        d = data_dir or tmp_path / "svc-data"
        d.mkdir(exist_ok=True)
        sp = await start_service_process(d, tmp_path / f"svc-{len(procs)}.log", **env)
        procs.append(sp)
        return sp

    yield start
    for sp in procs:
        if sp.proc.poll() is None:
            sp.proc.send_signal(signal.SIGTERM)
            try:
                sp.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sp.proc.kill()
                sp.proc.wait()
