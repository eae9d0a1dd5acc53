"""What the stress tests share: the profile, the service as a subprocess, process-table
scans, a client-side record of every notification, and the summary report."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.engine import process

HERE = Path(__file__).resolve().parent
CHILDREN = HERE / "children.py"
FAKE_CLAUDE = HERE.parent / "fake_claude" / "claude"
PY = sys.executable
MB = 1024 * 1024

# ------------------------------------------------------------------ profile


@dataclass(frozen=True)
class Profile:
    name: str
    load_tasks: int
    load_clients: int
    bulk_bytes: int
    chatty_lines: int
    storm_tasks: int
    storm_clients: int
    storm_rounds: int
    fault_tasks: int
    drop_clients: int
    drop_rounds: int
    fuzz_examples: int
    flood: int


PROFILES = {
    "short": Profile(
        name="short",
        load_tasks=60,
        load_clients=10,
        bulk_bytes=2 * MB,
        chatty_lines=1000,
        storm_tasks=12,
        storm_clients=4,
        storm_rounds=25,
        fault_tasks=12,
        drop_clients=4,
        drop_rounds=3,
        fuzz_examples=100,
        flood=60,
    ),
    "full": Profile(
        name="full",
        load_tasks=200,
        load_clients=20,
        bulk_bytes=10 * MB,
        chatty_lines=4000,
        storm_tasks=40,
        storm_clients=8,
        storm_rounds=60,
        fault_tasks=40,
        drop_clients=10,
        drop_rounds=6,
        fuzz_examples=300,
        flood=300,
    ),
}


def profile() -> Profile:
    name = os.environ.get("CC_STRESS_PROFILE", "short")
    if name not in PROFILES:
        raise ValueError(f"CC_STRESS_PROFILE must be one of {sorted(PROFILES)}, not {name!r}")
    return PROFILES[name]


P = profile()


def child(*args: str | int) -> list[str]:
    return [PY, str(CHILDREN), *(str(a) for a in args)]


# ------------------------------------------------------------------ the report


@dataclass
class Row:
    test: str
    tasks: int = 0
    bytes: int = 0
    failures: int = 0
    max_rss: int = 0
    latencies: list[float] = field(default_factory=list)
    leftovers: int = 0
    wall_s: float = 0.0
    note: str = ""


class Report:
    """Figures of every stress test, printed as one table at the end of the run."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def row(self, test: str) -> Row:
        r = Row(test)
        self.rows.append(r)
        return r

    def lines(self) -> list[str]:
        def pct(v: list[float], p: float) -> str:
            if not v:
                return "-"
            s = sorted(v)
            k = (len(s) - 1) * p / 100
            lo = int(k)
            hi = min(lo + 1, len(s) - 1)
            return f"{(s[lo] + (s[hi] - s[lo]) * (k - lo)) * 1000:.1f}"

        head = (
            "test",
            "tasks",
            "bytes",
            "failures",
            "max RSS",
            "ctl n",
            "ctl p50 ms",
            "ctl p99 ms",
            "leftovers",
            "wall s",
        )
        cells = [
            (
                r.test,
                str(r.tasks),
                _size(r.bytes),
                str(r.failures),
                _size(r.max_rss) if r.max_rss else "-",
                str(len(r.latencies)) if r.latencies else "-",
                pct(r.latencies, 50),
                pct(r.latencies, 99),
                str(r.leftovers),
                f"{r.wall_s:.1f}",
            )
            for r in self.rows
        ]
        all_lat = [x for r in self.rows for x in r.latencies]
        cells.append(
            (
                "TOTAL",
                str(sum(r.tasks for r in self.rows)),
                _size(sum(r.bytes for r in self.rows)),
                str(sum(r.failures for r in self.rows)),
                _size(max((r.max_rss for r in self.rows), default=0)),
                str(len(all_lat)),
                pct(all_lat, 50),
                pct(all_lat, 99),
                str(sum(r.leftovers for r in self.rows)),
                f"{sum(r.wall_s for r in self.rows):.1f}",
            )
        )
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]

        def line(values: Iterable[str]) -> str:
            return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(c) for c in cells]
        out += [f"{r.test}: {r.note}" for r in self.rows if r.note]
        if all_lat:
            out.append(f"control latency over {len(all_lat)} calls (reported, not asserted)")
        return out


def _size(n: int) -> str:
    if n >= MB:
        return f"{n / MB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} B"


REPORT = Report()

# ------------------------------------------------------------------ the process table


def marked_processes(mark: str) -> dict[int, str]:
    """Every live process whose environment carries CC_STRESS_MARK=<mark> -> its cmdline."""
    needle = f"CC_STRESS_MARK={mark}".encode()
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") or needle in cmd:
            if _state(pid) not in "ZX":
                found[pid] = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found


def _state(pid: int) -> str:
    """One-letter state from /proc/<pid>/stat; "X" when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return "X"
    return raw[raw.rfind(b")") + 2 :].split(b" ")[0].decode()


def group_leftovers(pgids: Iterable[int]) -> dict[int, dict[int, str]]:
    """Live (non-zombie) members of each of these process groups, from a /proc scan."""
    wanted = set(pgids)
    left: dict[int, dict[int, str]] = defaultdict(dict)
    for pgid in wanted:
        for pid, st in process.group_members(pgid).items():
            if st not in "ZX":
                left[pgid][pid] = st
    return dict(left)


async def leftovers(mark: str, pgids: Iterable[int], timeout: float = 10.0) -> list[str]:
    """Processes of ours still alive after `timeout` (poll the table with a deadline)."""
    pgids = list(pgids)
    deadline = time.monotonic() + timeout
    while True:
        marked = marked_processes(mark)
        groups = group_leftovers(pgids)
        if not marked and not groups:
            return []
        if time.monotonic() > deadline:
            out = [f"pid {pid}: {cmd}" for pid, cmd in marked.items()]
            out += [f"group {g}: {m}" for g, m in groups.items()]
            return out
        await asyncio.sleep(0.02)


def new_mark() -> str:
    return uuid.uuid4().hex


def kill_marked(mark: str) -> None:
    """Teardown safety net: SIGKILL whatever still carries the mark (after the checks)."""
    for pid in marked_processes(mark):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ the service, as a process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`python -m cc_executor.server` as a child of the test, on a fixed port and token."""

    def __init__(self, data_dir: Path, log: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.token = secrets.token_hex(16)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CC_EXECUTOR_", "CC_STRESS_")) and k != "CLAUDECODE"
        }
        self.env = {
            **base,
            "CC_EXECUTOR_DATA_DIR": str(data_dir),
            "CC_EXECUTOR_AUTH_TOKEN": self.token,
            "CC_EXECUTOR_KILL_GRACE_SECONDS": "1",
            "CC_EXECUTOR_LOG_FORMAT": "json",
            "CC_EXECUTOR_LOG_LEVEL": "INFO",
            "CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE),
            "CC_EXECUTOR_MAX_CONCURRENT_TASKS": "512",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.max_rss = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [PY, "-m", "cc_executor.server", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env,
            )
        self.pids.append(self.proc.pid)

    async def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"service exited: {self.log.read_text()[-4000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0)
                    if r.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError("service did not come up")
                await asyncio.sleep(0.02)

    def start_sync(self, timeout: float = 60.0) -> None:
        self.spawn()
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"service exited: {self.log.read_text()[-4000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError("service did not come up")
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample_rss(self) -> int:
        """The service's peak RSS so far (VmHWM), remembered across restarts."""
        if self.alive():
            with contextlib.suppress(OSError):
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.max_rss = max(self.max_rss, int(line.split()[1]) * 1024)
        return self.max_rss

    def kill9(self) -> None:
        assert self.proc is not None
        self.sample_rss()
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
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

    def log_records(self) -> list[dict[str, Any]]:
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

    def client(self, **kw: Any) -> ExecutorClient:
        return ExecutorClient(self.url, self.token, **kw)

    def log_path(self, task_id: str, stream: str = "stdout") -> Path:
        return self.data_dir / "logs" / f"{task_id}.{stream}"


# ------------------------------------------------------------------ what a client saw


class Wire:
    """Every notification one connection received, by task: output pieces, gaps, ends."""

    def __init__(self) -> None:
        self.pieces: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        self.gaps: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        self.completed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.errors: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.first_output: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.done: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        tid = params.get("task_id", "")
        if method == "process.output":
            self.pieces[(tid, params["stream"])].append((params["offset"], output_bytes(params)))
            self.first_output[tid].set()
        elif method == "process.dropped":
            key = (tid, params["stream"])
            self.gaps[key].append((params["from_offset"], params["to_offset"]))
        elif method == "process.completed":
            self.completed[tid].append(params)
            self.done[tid].set()
        elif method == "process.error":
            self.errors[tid].append(params)
        if method in ("process.paused", "process.resumed", "process.completed"):
            self.events.append((method, params))

    async def assemble(self, client: ExecutorClient, task_id: str, stream: str = "stdout") -> bytes:
        """The stream as this client received it, its dropped ranges fetched with `output`.

        Raises AssertionError on an overlap or a hole nobody named.
        """
        parts = sorted(self.pieces.get((task_id, stream), []))
        for a, b in self.gaps.get((task_id, stream), []):
            data = b""
            while len(data) < b - a:
                page = await client.output(task_id, stream, a + len(data), b - a - len(data))
                got = output_bytes(page)
                assert got, f"output of {task_id} [{a + len(data)}, {b}) came back empty"
                data += got
            parts.append((a, data))
        parts.sort()
        buf = bytearray()
        for off, data in parts:
            assert off == len(buf), f"{task_id} {stream}: piece at {off}, expected {len(buf)}"
            buf += data
        return bytes(buf)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    """Poll a condition of the outside world (files, the process table) with a deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
