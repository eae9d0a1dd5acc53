"""Helpers shared by the benchmark scripts: machine info, percentiles, tables, scratch dirs,
and the service as a separate process (from tests/support, shared with the tests).

Benchmarks are run by hand (`python benchmarks/bench_*.py` from the repository root);
nothing here is imported by the packages or the tests.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# `python benchmarks/bench_x.py` puts benchmarks/ on sys.path, not the repository root:
# add the root so the benchmarks share tests/support with the tests.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    ServiceProcess,
    free_port,
    group_running,
    group_stopped,
    live_members,
    vm_status,
    wait_until,
)

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


Bench = Callable[[], Coroutine[object, object, list[Row]]]


async def run_benches(plan: Sequence[tuple[str, Bench]], only: str | None) -> list[Row]:
    """Run the benchmarks of `plan` named in `only` (comma-separated; None: all), in order,
    printing each one's rows as it ends. One that raises gives an ERROR row; the others
    still run."""
    names = {name for name, _ in plan}
    wanted = set(only.split(",")) if only else names
    unknown = wanted - names
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    rows: list[Row] = []
    for name, bench in plan:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            got = await bench()
        except Exception as exc:  # keep the other figures; say what broke
            got = [Row(name, f"ERROR: {type(exc).__name__}: {exc}"[:100], "-", "-", False)]
        for r in got:
            print(f"  {r.benchmark}: {r.measured} | raw {r.baseline} | {r.result}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s, load {load_average()})", flush=True)
        rows.extend(got)
    return rows


def report(rows: Sequence[Row]) -> int:
    """The closing table; the exit status: 1 when a target failed."""
    logging.shutdown()
    print()
    print_table(rows)
    print(f"\nload average at the end: {load_average()}")
    return 0 if all(r.ok is not False for r in rows) else 1


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes (0 if gone)."""
    return vm_status(pid, "VmRSS").get("VmRSS", 0)


def create_cost_us(directory: Path, files: int = 50) -> float:
    """Median wall time, in us, to create, write 3 bytes to and close a new file there."""
    times = []
    for i in range(files):
        name = directory / f".create-probe-{i}"
        t0 = time.perf_counter()
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"hi\n")
        os.close(fd)
        times.append(time.perf_counter() - t0)
        name.unlink()
    return percentile(times, 50) * 1e6


@contextlib.contextmanager
def scratch_dir(prefix: str = "cc-bench-") -> Iterator[Path]:
    """A temporary directory, deleted with everything in it when the block ends.

    Data dirs hold every task's output log: a benchmark that streamed 1.5 GB and left it
    behind slows the next run's disk, so every run cleans up after itself.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # Every task creates a log file: on one VM, creating a file under /tmp cost 1.0-1.6 ms
    # while elsewhere on the same disk it cost 20-140 us. Say what this run's disk gives
    # (TMPDIR=... moves the scratch dirs).
    cost = create_cost_us(path)
    print(f"{'scratch dir':>26}: {path} (a file created, written, closed in {cost:.0f} us)")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def service_process(**env: str) -> AsyncIterator[ServiceProcess]:
    """`python -m cc_executor.server` in a scratch data dir (its log beside it), started;
    stopped and its data deleted at the end."""
    with scratch_dir() as root:
        svc = ServiceProcess(root / "data", root / "service.log", **env)
        try:
            await svc.start()
            yield svc
        finally:
            await svc.stop_async()


__all__ = [
    "MB",
    "ROOT",
    "Bench",
    "Row",
    "ServiceProcess",
    "free_port",
    "group_running",
    "group_stopped",
    "live_members",
    "load_average",
    "machine_info",
    "ms",
    "percentile",
    "print_machine_info",
    "print_table",
    "report",
    "run_benches",
    "scratch_dir",
    "service_process",
    "vm_rss_bytes",
    "vm_status",
    "wait_until",
]
