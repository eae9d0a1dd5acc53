"""Executor service benchmarks, each against a raw baseline measured in the same run.

    python benchmarks/bench_service.py            # full: 500 MB stream, 1 GB stalled stream
    python benchmarks/bench_service.py --quick    # 100 MB stream, 256 MB stalled stream
    python benchmarks/bench_service.py --only throughput,control

1. throughput  stdout -> ExecutorClient over a real service on loopback, vs. a raw asyncio
               pipe read (256 KB reads) of the same child; best of 3 each, alternating.
                                                                      target >= 0.5x raw
2. spawn       `execute ["true"]` until process.completed, vs. raw
               asyncio.create_subprocess_exec("true") + wait.         target p50 <= raw + 3 ms
3. control     PAUSE / RESUME reply latency on a group of 3 processes, each reply checked
               against /proc (every member T, then none T), vs. raw os.killpg + the same
               /proc poll.                                            target p99 <= 10 ms
4. concurrent  500 `sleep 1` tasks at once (max_concurrent_tasks=512): every completion
               delivered; wall time vs. ideal 1 s and 500 raw asyncio subprocesses.
5. rss         service (a subprocess) RSS growth while 1 GB streams to a client that
               started the task and then reads nothing; dropped bytes from status stats.
                                                                      target <= 64 MB

Benchmarks 1a and 2-4 run the service in this process (client and service share one event loop,
so the client's own decoding is included); 1b and 5 run `python -m cc_executor.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from _common import (
    MB,
    Bench,
    Row,
    live_members,
    ms,
    percentile,
    print_machine_info,
    report,
    run_benches,
    scratch_dir,
    service_process,
    vm_rss_bytes,
    vm_status,
    wait_until,
)
from websockets.asyncio.client import connect

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.config import Settings
from cc_executor.engine import process
from cc_executor.logs import setup_logging
from cc_executor.server import ExecutorService

READ_CHUNK = 256 * 1024

# A child that prints `n` MiB of printable ASCII (64 KiB lines) in 1 MiB writes.
_PRINTER = """
import sys
n = int(sys.argv[1])
line = b"0123456789abcdef" * 4095 + b"0123456789abcde\\n"
block = line * 16
w = sys.stdout.buffer.write
for _ in range(n):
    w(block)
sys.stdout.flush()
"""


def printer_argv(mib: int) -> list[str]:
    return [sys.executable, "-c", _PRINTER, str(mib)]


GROUP_OF_3 = ["sh", "-c", "sleep 100 & sleep 100 & wait"]


@contextlib.asynccontextmanager
async def in_process_service(**overrides: Any) -> AsyncIterator[ExecutorService]:
    """A real service on an ephemeral loopback port, in a data dir deleted afterwards."""
    with scratch_dir() as data_dir:
        settings = Settings(data_dir=data_dir, port=0, kill_grace_seconds=1.0, **overrides)
        # As deployed: JSON log lines at INFO, here to a file in the data dir.
        setup_logging("INFO", "json", data_dir / "service.log")
        service = ExecutorService(settings)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()


def fmt_rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MB / seconds:.0f} MB/s"


# ---------------------------------------------------------------------- 1. throughput


async def raw_pipe_read(argv: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    total = 0
    while True:
        chunk = await proc.stdout.read(READ_CHUNK)
        if not chunk:
            break
        total += len(chunk)
    await proc.wait()
    return total, time.perf_counter() - t0


async def client_stream(client: ExecutorClient, argv: list[str]) -> tuple[int, float, int]:
    """Bytes received by the client, seconds until process.completed, bytes dropped."""
    t0 = time.perf_counter()
    task = await client.execute(argv)
    received = 0
    dropped = 0
    async for ev in task.events():
        method, params = ev["method"], ev["params"]
        if method == "process.output" and params["stream"] == "stdout":
            received += len(output_bytes(params))
        elif method == "process.dropped":
            dropped += params["to_offset"] - params["from_offset"]
    elapsed = time.perf_counter() - t0
    done = await task.wait()
    if done["status"] != "completed":
        raise RuntimeError(f"printer task ended {done['status']}")
    return received, elapsed, dropped


async def bench_throughput(mib: int, repeats: int = 3, separate: bool = False) -> list[Row]:
    """Best of `repeats` for each side, raw and service runs alternating.

    With `separate`, the service runs in its own process (as deployed) instead of sharing
    the client's process and GIL.
    """
    argv = printer_argv(mib)
    expected = mib * MB
    await raw_pipe_read(printer_argv(min(mib, 100)))  # warm-up
    raw_rates: list[float] = []
    rates: list[float] = []
    lossless = True
    dropped_total = 0
    async with contextlib.AsyncExitStack() as stack:
        if separate:  # its data dir (500 MB of logs per run) is deleted at the end
            proc = await stack.enter_async_context(service_process())
            url, token = proc.url, proc.token
        else:
            svc = await stack.enter_async_context(in_process_service())
            url, token = svc.url, svc.token
        client = await stack.enter_async_context(ExecutorClient(url, token))
        for _ in range(repeats):
            raw_bytes, raw_s = await raw_pipe_read(argv)
            assert raw_bytes == expected, (raw_bytes, expected)
            raw_rates.append(expected / raw_s)
            got, svc_s, dropped = await client_stream(client, argv)
            rates.append(got / svc_s)
            lossless = lossless and got == expected and dropped == 0
            dropped_total += dropped
    raw_rate, rate = max(raw_rates), max(rates)
    ratio = rate / raw_rate
    note = "" if lossless else f", {dropped_total / MB:.1f} MB dropped"
    return [
        Row(
            f"1{'b' if separate else 'a'}. stdout -> client, {mib} MB, service "
            f"{'in its own process' if separate else 'in the client process'}",
            f"{rate / MB:.0f} MB/s ({ratio:.2f}x raw{note})",
            f"{raw_rate / MB:.0f} MB/s",
            ">= 0.5x raw, lossless",
            ratio >= 0.5 and lossless,
        )
    ]


# ---------------------------------------------------------------------- 2. spawn latency


async def raw_spawn_once() -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    return time.perf_counter() - t0


async def service_spawn_once(client: ExecutorClient) -> float:
    t0 = time.perf_counter()
    task = await client.execute(["true"], keep_events=False)
    done = await task.wait(30)
    elapsed = time.perf_counter() - t0
    if done["status"] != "completed":
        raise RuntimeError(f"`true` ended {done['status']}")
    return elapsed


async def bench_spawn(n: int) -> list[Row]:
    raw: list[float] = []
    got: list[float] = []
    async with (
        in_process_service() as svc,
        ExecutorClient(svc.url, svc.token) as client,
    ):
        for i in range(10 + n):  # 10 warm-up pairs; raw and service alternate who goes first
            if i % 2:
                r, s = await raw_spawn_once(), await service_spawn_once(client)
            else:
                s, r = await service_spawn_once(client), await raw_spawn_once()
            if i >= 10:
                raw.append(r)
                got.append(s)
    p50, raw50 = percentile(got, 50), percentile(raw, 50)
    return [
        Row(
            f"2. execute `true` -> completed (n={n})",
            f"p50 {ms(p50)} / p99 {ms(percentile(got, 99))}",
            f"p50 {ms(raw50)} / p99 {ms(percentile(raw, 99))}",
            "p50 <= raw p50 + 3 ms",
            p50 <= raw50 + 0.003,
        )
    ]


# ---------------------------------------------------------------------- 3. pause / resume


async def wait_members(pgid: int, count: int, timeout: float = 10.0) -> None:
    await wait_until(lambda: len(live_members(pgid)) >= count, timeout, f"{count} in {pgid}")


def check_group(pgid: int, stopped: bool, expect: int = 3) -> bool:
    """Every member of the group is stopped (T/t), or none is."""
    states = live_members(pgid)
    if len(states) != expect:
        return False
    return all((s in "Tt") == stopped for s in states.values())


class ControlSamples:
    """PAUSE and RESUME latencies of one group, and how many replies /proc contradicted."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.pause: list[float] = []
        self.resume: list[float] = []
        self.wrong = 0

    async def round(
        self,
        pause: Callable[[], Coroutine[Any, Any, Any]],
        resume: Callable[[], Coroutine[Any, Any, Any]],
    ) -> None:
        t0 = time.perf_counter()
        await pause()
        self.pause.append(time.perf_counter() - t0)
        self.wrong += not check_group(self.pgid, stopped=True)
        t0 = time.perf_counter()
        await resume()
        self.resume.append(time.perf_counter() - t0)
        self.wrong += not check_group(self.pgid, stopped=False)


async def raw_signal_and_poll(pgid: int, sig: int, stopped: bool) -> None:
    """The baseline: killpg, then the engine's own /proc poll until the group settled."""
    os.killpg(pgid, sig)
    if not await process.wait_group_state(pgid, stopped=stopped):
        raise RuntimeError("raw group never settled")


async def bench_control(n: int) -> list[Row]:
    raw_proc = await asyncio.create_subprocess_exec(*GROUP_OF_3, start_new_session=True)
    raw_pgid = raw_proc.pid
    try:
        async with (
            in_process_service() as svc,
            ExecutorClient(svc.url, svc.token) as client,
        ):
            task = await client.execute(GROUP_OF_3, keep_events=False)
            assert task.pid is not None
            await wait_members(raw_pgid, 3)
            await wait_members(task.pid, 3)

            async def act(action: str, want: str) -> None:
                reply = await client.control(task.task_id, action)
                if reply["status"] != want:
                    raise RuntimeError(f"{action} replied {reply}")

            def raw_round() -> Coroutine[Any, Any, None]:
                return raw.round(
                    lambda: raw_signal_and_poll(raw_pgid, signal.SIGSTOP, True),
                    lambda: raw_signal_and_poll(raw_pgid, signal.SIGCONT, False),
                )

            def svc_round() -> Coroutine[Any, Any, None]:
                return got.round(lambda: act("PAUSE", "paused"), lambda: act("RESUME", "running"))

            for warm_up in (True, False):
                raw, got = ControlSamples(raw_pgid), ControlSamples(task.pid)
                for i in range(10 if warm_up else n):  # alternate who goes first
                    first, second = (raw_round, svc_round) if i % 2 else (svc_round, raw_round)
                    await first()
                    await second()
            await client.control(task.task_id, "CANCEL")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(raw_pgid, signal.SIGKILL)
        await raw_proc.wait()
    rows = []
    for label, mine, base in (
        ("PAUSE", got.pause, raw.pause),
        ("RESUME", got.resume, raw.resume),
    ):
        p99 = percentile(mine, 99)
        rows.append(
            Row(
                f"3. {label} reply, group of 3 (n={n})",
                f"p50 {ms(percentile(mine, 50))} / p99 {ms(p99)}"
                + (f", {got.wrong} replies before /proc agreed" if got.wrong else ""),
                f"p50 {ms(percentile(base, 50))} / p99 {ms(percentile(base, 99))}",
                "p99 <= 10 ms, group really T / not T",
                p99 <= 0.010 and got.wrong == 0,
            )
        )
    if raw.wrong:
        print(f"note: /proc contradicted the raw baseline {raw.wrong} times")
    return rows


# ---------------------------------------------------------------------- 4. 500 concurrent


async def raw_concurrent(n: int) -> float:
    async def one() -> None:
        proc = await asyncio.create_subprocess_exec("sleep", "1")
        await proc.wait()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


async def bench_concurrent(n: int) -> list[Row]:
    raw_s = await raw_concurrent(n)
    async with (
        in_process_service(max_concurrent_tasks=512) as svc,
        ExecutorClient(svc.url, svc.token) as client,
    ):
        completed: dict[str, str] = {}

        def on_note(method: str, params: dict[str, Any]) -> None:
            if method == "process.completed":
                completed[params["task_id"]] = params["status"]

        client.on_notification = on_note
        t0 = time.perf_counter()
        handles = await asyncio.gather(
            *(client.execute(["sleep", "1"], keep_events=False) for _ in range(n))
        )
        started_s = time.perf_counter() - t0
        await asyncio.gather(*(h.wait(60) for h in handles))
        wall = time.perf_counter() - t0
        stats = (await client.status(limit=1))["stats"]
    ok_count = sum(1 for h in handles if completed.get(h.task_id) == "completed")
    every = ok_count == n
    return [
        Row(
            f"4. {n} x `sleep 1` at once",
            f"{wall:.2f} s wall ({ok_count}/{n} completed delivered; "
            f"all started in {started_s:.2f} s)",
            f"{raw_s:.2f} s (ideal 1.00 s)",
            "every completion delivered",
            every and stats["tasks_started"] >= n,
        )
    ]


# ---------------------------------------------------------------------- 5. RSS, stalled client


async def bench_rss(mib: int) -> list[Row]:
    async with service_process() as svc:
        headers = {"Authorization": f"Bearer {svc.token}"}
        async with (
            ExecutorClient(svc.url, svc.token) as observer,
            # The stalled client: max_queue=1 stops reading the socket after one frame.
            connect(
                svc.url, additional_headers=headers, compression=None, max_queue=1, proxy=None
            ) as stalled,
        ):
            await observer.ping()
            await asyncio.sleep(0.5)
            rss_before = vm_rss_bytes(svc.pid)
            req: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "execute"}
            req["params"] = {"command": printer_argv(mib)}
            t0 = time.perf_counter()
            await stalled.send(orjson.dumps(req), text=True)
            task_id = None
            while task_id is None:  # read up to our reply, then never again
                msg = orjson.loads(await stalled.recv())
                if msg.get("id") == 1:
                    task_id = msg["result"]["task_id"]
            peak = rss_before
            status = "running"
            next_poll = 0.0
            while status in ("running", "queued", "paused"):
                peak = max(peak, vm_rss_bytes(svc.pid))
                now = time.perf_counter()
                if now >= next_poll:
                    status = (await observer.status(task_id))["status"]
                    next_poll = now + 0.2
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - t0
            # VmHWM (peak RSS) also catches a spike between two samples; a start-up peak
            # above rss_before would only make the growth figure more pessimistic.
            mem = vm_status(svc.pid, "VmRSS", "VmHWM")
            peak = max(peak, mem.get("VmRSS", 0), mem.get("VmHWM", 0))
            record = await observer.status(task_id)
    growth = peak - rss_before
    logged_ok = record["stdout_bytes"] == mib * MB and record["status"] == "completed"
    return [
        Row(
            f"5. service RSS, {mib} MB to a stalled client",
            # The stalled client's cursor stays behind: it would read the log later.
            f"+{growth / MB:.1f} MB (peak {peak / MB:.0f} MB; {fmt_rate(mib * MB, elapsed)})",
            f"{rss_before / MB:.0f} MB before",
            "growth <= 64 MB, all bytes logged",
            growth <= 64 * MB and logged_ok,
        )
    ]


# ---------------------------------------------------------------------- main

BENCHES = ("throughput", "spawn", "control", "concurrent", "rss")


async def run(args: argparse.Namespace) -> list[Row]:
    quick = args.quick
    plan: list[tuple[str, Bench]] = [
        ("throughput", lambda: bench_throughput(100 if quick else 500)),
        ("throughput", lambda: bench_throughput(100 if quick else 500, separate=True)),
        ("spawn", lambda: bench_spawn(args.n)),
        ("control", lambda: bench_control(args.n)),
        ("concurrent", lambda: bench_concurrent(500)),
        ("rss", lambda: bench_rss(256 if quick else 1024)),
    ]
    return await run_benches(plan, args.only)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smaller streams (100 MB / 256 MB)")
    p.add_argument("--n", type=int, default=200, help="samples for latency benchmarks")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    args = p.parse_args()
    print_machine_info()
    print()
    return report(asyncio.run(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
