"""The service as a separate process: `python -m cc_executor.server`, as deployed.

One class for the tests, the stress suite and the benchmarks. The port is chosen once, so a
restart (`start()` again after `stop()` or `kill9()`) serves at the same URL and clients
that retry reconnect. The token is the one the service generates and keeps in its data dir
(read after the first start), unless one is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from cc_executor.client import ExecutorClient

from .net import free_port
from .procfs import vm_status

FAKE_CLAUDE = Path(__file__).resolve().parents[1] / "fake_claude" / "claude"

# Never inherited from the caller: the service must see only what the test sets.
_PRIVATE_ENV = ("CC_EXECUTOR_", "CC_STRESS_")


class ServiceProcess:
    """`python -m cc_executor.server` as a child of the caller, on a fixed loopback port.

    `log` receives the service's stderr (JSON log lines), appended across restarts;
    `env` adds to or overrides the defaults (`CC_EXECUTOR_*` variables).
    """

    def __init__(
        self, data_dir: Path, log: Path | None = None, *, token: str | None = None, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.log = log or data_dir.with_name(data_dir.name + ".log")
        self.port = free_port()
        self._token = token
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_PRIVATE_ENV) and k != "CLAUDECODE"
        }
        self.env: dict[str, str] = {
            **base,
            "CC_EXECUTOR_DATA_DIR": str(data_dir),
            "CC_EXECUTOR_KILL_GRACE_SECONDS": "1",
            "CC_EXECUTOR_LOG_FORMAT": "json",
            "CC_EXECUTOR_LOG_LEVEL": "INFO",
            "CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE),  # never the real claude by accident
            **({"CC_EXECUTOR_AUTH_TOKEN": token} if token else {}),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # one per start
        self.max_rss = 0

    # ------------------------------------------------------------------ where it is

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.read_token()
        return self._token

    def read_token(self) -> str:
        """The token the service keeps in its data dir."""
        return (self.data_dir / "token").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the service was never started"
        return self.proc.pid

    def client(self, **kw: Any) -> ExecutorClient:
        return ExecutorClient(self.url, self.token, **kw)

    def log_path(self, task_id: str, stream: str = "stdout") -> Path:
        return self.data_dir / "logs" / f"{task_id}.{stream}"

    # ------------------------------------------------------------------ start

    def spawn(self) -> None:
        """Launch the process without waiting for it to serve."""
        assert not self.alive(), "the service is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cc_executor.server", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env,
            )
        self.pids.append(self.proc.pid)

    def _check_running(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited with {self.proc.returncode}: {self._log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"service did not come up on {self.url}: {self._log_tail()}")

    async def start(self, timeout: float = 60.0) -> None:
        """Launch (or relaunch) the service and return once /health answers 200."""
        self.spawn()
        deadline = time.monotonic() + timeout  # generous: a loaded machine imports slowly
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                self._check_running(deadline)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.health_url, timeout=2.0)).status_code == 200:
                        return
                await asyncio.sleep(0.02)

    def start_sync(self, timeout: float = 60.0) -> None:
        """`start` for callers without an event loop."""
        self.spawn()
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False) as http:
            while True:
                self._check_running(deadline)
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.health_url, timeout=2.0).status_code == 200:
                        return
                time.sleep(0.02)

    async def restart(self, timeout: float = 60.0) -> None:
        """SIGTERM, wait for the exit, start again on the same port and data dir."""
        await self.stop_async()
        await self.start(timeout)

    # ------------------------------------------------------------------ stop

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        """SIGKILL: the service gets no chance to tidy up (its children are orphaned)."""
        assert self.proc is not None
        self.sample_rss()
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit status, None if never started.

        This blocks: from a coroutine whose loop still serves something, use `stop_async`.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sample_rss()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    async def stop_async(self, timeout: float = 30.0) -> int | None:
        """`stop` without blocking the event loop (its clients can answer the close)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sample_rss()
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    break
                await asyncio.sleep(0.02)
        return self.proc.returncode

    # ------------------------------------------------------------------ what it did

    def vm(self, key: str) -> int:
        """A /proc/<pid>/status figure ("VmRSS", "VmHWM") of the running service, in bytes."""
        return vm_status(self.pid, key)[key]

    def sample_rss(self) -> int:
        """The service's peak RSS so far (VmHWM), remembered across restarts."""
        if self.alive():
            self.max_rss = max(self.max_rss, vm_status(self.pid, "VmHWM").get("VmHWM", 0))
        return self.max_rss

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line the service wrote to `log`, over all its starts."""
        out = []
        with contextlib.suppress(OSError):
            for line in self.log.read_bytes().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(orjson.loads(line))
        return out

    def errors(self) -> list[dict[str, Any]]:
        """Log records that mean a bug: internal errors and tracebacks."""
        return [
            r
            for r in self.log_records()
            if r.get("exc") or "internal error" in str(r.get("msg", ""))
        ]

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return "(no log)"
