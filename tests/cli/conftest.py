"""Fixtures for the CLI tests: the real `cc-executor` console script, run as a subprocess.

The `service` fixture serves from the test's own event loop, so the CLI must be awaited
with asyncio subprocesses (a blocking `subprocess.run` would starve the service).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.support import free_port

CLI_TIMEOUT = 60.0  # a safety net against a hung CLI, not a synchronisation


@dataclass
class CliResult:
    rc: int
    out: bytes
    err: bytes

    @property
    def stdout(self) -> str:
        return self.out.decode()

    @property
    def stderr(self) -> str:
        return self.err.decode()


class Cli:
    """Runs `python -m cc_executor.cli` against the test service."""

    def __init__(self, service: ExecutorService, settings: Settings) -> None:
        self.service = service
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CC_EXECUTOR_")}
        # Isolate from the user's state dir even where no --url/--token is passed.
        self.env["CC_EXECUTOR_DATA_DIR"] = str(settings.data_dir)

    def argv(self, *args: str, connect: bool = True) -> list[str]:
        # `--token=T`: a generated token may start with "-", which argparse would take
        # for an option in `--token T`.
        conn = [f"--url={self.service.url}", f"--token={self.service.token}"] if connect else []
        return [sys.executable, "-m", "cc_executor.cli", *conn, *args]

    async def spawn(
        self, *args: str, connect: bool = True, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args, connect=connect),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
        )

    @staticmethod
    async def finish(proc: asyncio.subprocess.Process) -> CliResult:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return CliResult(proc.returncode, out, err)

    async def __call__(
        self, *args: str, connect: bool = True, env: dict[str, str] | None = None
    ) -> CliResult:
        return await self.finish(await self.spawn(*args, connect=connect, env=env))


@pytest.fixture
def cli(service: ExecutorService, settings: Settings) -> Cli:
    return Cli(service, settings)


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once by us, then released)."""
    return free_port()


TaskPred = Callable[[dict[str, Any]], bool]


@pytest.fixture
def wait_for_task(
    client: ExecutorClient,
) -> Callable[[TaskPred], Coroutine[Any, Any, dict[str, Any]]]:
    """Poll the service's task list until a task matches: the state of another process."""

    async def wait(pred: TaskPred, timeout: float = 20.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for task in (await client.status())["tasks"]:
                if pred(task):
                    return task
            if loop.time() > deadline:
                raise AssertionError("no matching task appeared")
            await asyncio.sleep(0.02)

    return wait
