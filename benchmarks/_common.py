"""Helpers shared by the benchmark scripts: machine info, percentiles, tables, RSS, services.

Benchmarks are run by hand (`python benchmarks/bench_*.py`); nothing here is imported by
the packages or the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import platform
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

MB = 1024 * 1024


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine_info() -> dict[str, str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(usable),
        "cpu": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "load average (1/5/15 min)": load_average(),
    }


def print_machine_info() -> None:
    for key, value in machine_info().items():
        print(f"{key:>26}: {value}")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


@dataclass
class Row:
    """One line of the result table."""

    benchmark: str
    measured: str
    baseline: str
    target: str
    ok: bool | None  # None: informational, no target

    @property
    def result(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "FAIL")


def print_table(rows: Sequence[Row]) -> None:
    headers = ("benchmark", "measured", "baseline (raw)", "target", "result")
    cells = [(r.benchmark, r.measured, r.baseline, r.target, r.result) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print(line(c))


def vm_status(pid: int, *fields: bytes) -> dict[bytes, int]:
    """Memory fields (b"VmRSS", b"VmHWM", ...) of /proc/<pid>/status, in bytes."""
    out: dict[bytes, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for raw in f:
                key, _, rest = raw.partition(b":")
                if key in fields:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes (0 if gone)."""
    return vm_status(pid, b"VmRSS").get(b"VmRSS", 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`python -m cc_executor.server` as a child process, configured through the environment."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "CC_EXECUTOR_DATA_DIR": str(data_dir),
            "CC_EXECUTOR_PORT": str(self.port),
            "CC_EXECUTOR_AUTH_TOKEN": self.token,
            "CC_EXECUTOR_LOG_FILE": str(data_dir / "service.log"),
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 20.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cc_executor.server",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"service exited with {self.proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0)
                    if r.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("service did not come up")
                await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
