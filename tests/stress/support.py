"""What the stress tests share: the profile, the service as a subprocess with the stress
settings, process-table scans by marker, a client-side record of every notification, and
the summary report. The rest (the service process, polling, /proc) is tests/support."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cc_executor.client import ExecutorClient, output_bytes
from tests.support import ServiceProcess, live_members, processes_with_env

HERE = Path(__file__).resolve().parent
CHILDREN = HERE / "children.py"
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
    return processes_with_env(f"CC_STRESS_MARK={mark}")


def group_leftovers(pgids: Iterable[int]) -> dict[int, dict[int, str]]:
    """Live (non-zombie) members of each of these process groups, from a /proc scan."""
    return {pgid: left for pgid in set(pgids) if (left := live_members(pgid))}


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


def stress_service(data_dir: Path, log: Path, **env: str) -> ServiceProcess:
    """The service as a subprocess (tests/support), with room for every stress task at once."""
    return ServiceProcess(data_dir, log, **{"CC_EXECUTOR_MAX_CONCURRENT_TASKS": "512", **env})


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
