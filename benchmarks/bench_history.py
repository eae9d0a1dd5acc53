"""Costs that grow with the task history, against the service as a separate process.

    python benchmarks/bench_history.py                    # both series
    python benchmarks/bench_history.py --only status --samples 300
    python benchmarks/bench_history.py --only throughput --tasks 10000 --block 1000

1. status      `status` with no task_id (the list of up to 1000 records) over a raw
               WebSocket, 1000 finished tasks in the store: median and p90 of the round
               trip (request sent -> reply frame received, not decoded). Measured twice:
               with the records in the engine's memory, and after a restart (SQLite only).
                                                                      target median <= 20 ms
2. throughput  `execute ["true"]` and wait for process.completed, one after another, for
               many tasks: tasks/s and the service's CPU per task of each block of
               `--block` tasks. The wall-clock rate moves with the machine's load; the CPU
               per task (median of the last quarter of the blocks against the first) says
               whether the work per task grows with history.    target last <= 1.18x first

Every run uses its own scratch data dir, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time

import orjson
from _common import (
    Bench,
    Row,
    ServiceProcess,
    load_average,
    ms,
    percentile,
    print_machine_info,
    report,
    run_benches,
    service_process,
)
from websockets.asyncio.client import connect

from cc_executor.client import ExecutorClient

STATUS_TARGET_S = 0.020
FLAT_RATIO = 0.85


async def run_true(client: ExecutorClient, n: int) -> float:
    """Run `true` n times one after another, each until process.completed; seconds taken."""
    t0 = time.perf_counter()
    for _ in range(n):
        task = await client.execute(["true"], keep_events=False)
        done = await task.wait(30)
        if done["status"] != "completed":
            raise RuntimeError(f"`true` ended {done['status']}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- 1. status


async def status_round_trips(svc: ServiceProcess, samples: int) -> tuple[list[float], int, int]:
    """Round-trip times of `status` over a raw WebSocket; reply size and task count."""
    headers = {"Authorization": f"Bearer {svc.token}"}
    ids = itertools.count(1)
    times: list[float] = []
    size = count = 0
    async with connect(
        svc.url, additional_headers=headers, compression=None, max_size=None, proxy=None
    ) as ws:
        for i in range(10 + samples):  # 10 warm-up calls
            rid = next(ids)
            frame = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "status"})
            t0 = time.perf_counter()
            await ws.send(frame, text=True)
            reply = await ws.recv(decode=False)
            elapsed = time.perf_counter() - t0
            if i >= 10:
                times.append(elapsed)
            if i == 0:
                body = orjson.loads(reply)
                assert body["id"] == rid, body
                size, count = len(reply), len(body["result"]["tasks"])
    return times, size, count


def status_row(label: str, times: list[float], size: int, count: int) -> Row:
    p50 = percentile(times, 50)
    return Row(
        f"1{label}, {count} records ({size / 1024:.0f} KB reply)",
        f"median {ms(p50)} / p90 {ms(percentile(times, 90))} (n={len(times)})",
        "-",
        "median <= 20 ms",
        p50 <= STATUS_TARGET_S,
    )


async def bench_status(records: int, samples: int) -> list[Row]:
    async with service_process(CC_EXECUTOR_LOG_LEVEL="WARNING") as svc:
        async with svc.client() as client:
            await run_true(client, records)
        rows = [status_row("a. status, records in memory", *await status_round_trips(svc, samples))]
        await svc.restart()
        rows.append(
            status_row("b. status after a restart", *await status_round_trips(svc, samples))
        )
    return rows


# ---------------------------------------------------------------------- 2. throughput


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its children not included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_throughput(tasks: int, block: int) -> list[Row]:
    """Wall-clock rates move with whatever else the machine runs; the CPU the service and
    this client spend per task say whether the work per task grew."""
    rates: list[float] = []
    cpu: list[float] = []  # service CPU seconds per task, per block
    async with service_process(CC_EXECUTOR_LOG_LEVEL="WARNING") as svc, svc.client() as client:
        await run_true(client, 50)  # warm-up, not counted
        for done in range(0, tasks, block):
            svc_cpu, own_cpu = cpu_seconds(svc.pid), time.process_time()
            seconds = await run_true(client, block)
            svc_cpu, own_cpu = cpu_seconds(svc.pid) - svc_cpu, time.process_time() - own_cpu
            rates.append(block / seconds)
            cpu.append(svc_cpu / block)
            print(
                f"  tasks {done + 1:>6}-{done + block:<6} {block / seconds:6.0f} tasks/s, "
                f"CPU per task: service {svc_cpu / block * 1e3:.2f} ms, "
                f"client {own_cpu / block * 1e3:.2f} ms (load {load_average()})",
                flush=True,
            )
    k = max(1, len(rates) // 4)  # medians of the first and the last quarter of the blocks
    first, last = statistics.median(rates[:k]), statistics.median(rates[-k:])
    cpu_first, cpu_last = statistics.median(cpu[:k]), statistics.median(cpu[-k:])
    return [
        Row(
            f"2. execute `true` -> completed, {tasks} in a row",
            f"{first:.0f}/s -> {last:.0f}/s; service CPU/task {cpu_first * 1e3:.2f} -> "
            f"{cpu_last * 1e3:.2f} ms ({cpu_last / cpu_first:.2f}x)",
            "-",
            f"CPU/task last <= {1 / FLAT_RATIO:.2f}x first",
            cpu_last * FLAT_RATIO <= cpu_first,
        )
    ]


# ---------------------------------------------------------------------- main

BENCHES = ("status", "throughput")


async def run(args: argparse.Namespace) -> list[Row]:
    plan: list[tuple[str, Bench]] = [
        ("status", lambda: bench_status(args.records, args.samples)),
        ("throughput", lambda: bench_throughput(args.tasks, args.block)),
    ]
    return await run_benches(plan, args.only)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=1000, help="finished tasks before `status`")
    p.add_argument("--samples", type=int, default=200, help="`status` calls timed")
    p.add_argument("--tasks", type=int, default=6000, help="tasks in the throughput series")
    p.add_argument("--block", type=int, default=500, help="tasks per throughput figure")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    args = p.parse_args()
    print_machine_info()
    print()
    return report(asyncio.run(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
