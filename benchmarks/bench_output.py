"""Output delivery through the service (issue 12's targets), as deployed.

The service runs as its own process; each series is interleaved with its raw baseline in
shuffled rounds; every byte is required in order.

1. Fast client: `head -c 200000000 /dev/zero | tr '\\0' y` streamed to an `ExecutorClient`
   vs a raw asyncio pipe read of the same command. Target: median ratio >= 0.6.
2. Slow client (reads at most ~20 MB/s, a raw WebSocket with a one-frame queue): every byte
   of 200 MB in order with no gap; the task ends in under 3 s as without a client; the
   service's RSS grows <= 64 MB.

Run: `python benchmarks/bench_output.py [--rounds 9] [--mb 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, Row, ServiceProcess, print_machine_info, print_table, vm_status

from cc_executor.client import ExecutorClient, output_bytes

READ_CHUNK = 256 * 1024


def printer(nbytes: int) -> list[str]:
    return ["sh", "-c", f"head -c {nbytes} /dev/zero | tr '\\0' y"]


async def raw_pipe_read(argv: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    total = 0
    while chunk := await proc.stdout.read(READ_CHUNK):
        total += len(chunk)
    await proc.wait()
    return total, time.perf_counter() - t0


async def client_stream(client: ExecutorClient, argv: list[str], expected: int) -> float:
    """Seconds from `execute` until process.completed, with every byte checked in order."""
    t0 = time.perf_counter()
    task = await client.execute(argv)
    pos = 0
    async for ev in task.events():
        method, params = ev["method"], ev["params"]
        if method == "process.output" and params["stream"] == "stdout":
            if params["offset"] != pos:
                raise RuntimeError(f"gap at {pos}: got offset {params['offset']}")
            pos += len(output_bytes(params))
        elif method == "process.dropped":
            raise RuntimeError(f"bytes dropped: {params}")
    elapsed = time.perf_counter() - t0
    if pos != expected:
        raise RuntimeError(f"received {pos} of {expected} bytes")
    return elapsed


async def fast_client(rounds: int, nbytes: int) -> Row:
    argv = printer(nbytes)
    data_dir = Path(tempfile.mkdtemp(prefix="cc-bench-out-"))
    svc = ServiceProcess(data_dir)
    raw_s: list[float] = []
    svc_s: list[float] = []
    try:
        await svc.start()
        async with ExecutorClient(svc.url, svc.token) as client:
            await raw_pipe_read(printer(10 * MB))  # warm-up
            await client_stream(client, printer(10 * MB), 10 * MB)
            for _ in range(rounds):
                order = ["raw", "svc"]
                random.shuffle(order)
                for side in order:
                    if side == "raw":
                        got, s = await raw_pipe_read(argv)
                        assert got == nbytes
                        raw_s.append(s)
                    else:
                        svc_s.append(await client_stream(client, argv, nbytes))
    finally:
        await svc.stop_async()
        shutil.rmtree(data_dir, ignore_errors=True)
    ratios = [r / s for r, s in zip(raw_s, svc_s, strict=True)]
    ratio = statistics.median(ratios)
    rate = nbytes / statistics.median(svc_s) / MB
    raw_rate = nbytes / statistics.median(raw_s) / MB
    return Row(
        f"stdout -> client, {nbytes // 1_000_000} MB, {rounds} paired rounds",
        f"{rate:.0f} MB/s, median ratio {ratio:.2f}x (min {min(ratios):.2f}, "
        f"max {max(ratios):.2f}), lossless",
        f"{raw_rate:.0f} MB/s",
        ">= 0.6x raw, every byte",
        ratio >= 0.6,
    )


async def slow_reader(url: str, token: str, argv: list[str], rate: float) -> tuple[str, int]:
    """Start the task on a raw WebSocket whose reading is throttled to `rate` bytes/s."""
    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=1,
        max_size=None,
        compression=None,
        proxy=None,
    ) as ws:
        await ws.send(
            orjson.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"command": argv}}
            )
        )
        task_id = ""
        pos = 0
        t0 = time.perf_counter()
        while True:
            msg = orjson.loads(await ws.recv())
            if msg.get("id") == 1:
                task_id = msg["result"]["task_id"]
                continue
            method, p = msg.get("method"), msg.get("params", {})
            if method == "process.dropped":
                raise RuntimeError(f"bytes dropped: {p}")
            if method == "process.output" and p["stream"] == "stdout":
                if p["offset"] != pos:
                    raise RuntimeError(f"gap at {pos}: got {p['offset']}")
                pos += len(output_bytes(p))
                ahead = pos / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if method == "process.completed":
                return task_id, pos


async def slow_client(rounds: int, nbytes: int) -> list[Row]:
    argv = printer(nbytes)
    rate = 20 * MB
    rows: list[Row] = []
    durations: list[float] = []
    bare: list[float] = []
    growths: list[int] = []
    ok = True
    for _ in range(rounds):
        data_dir = Path(tempfile.mkdtemp(prefix="cc-bench-slow-"))
        svc = ServiceProcess(data_dir)
        try:
            await svc.start()
            async with ExecutorClient(svc.url, svc.token) as ctl:
                # Without a client: the same task, nobody following it.
                h = await ctl.execute(argv, keep_events=False)
                await h.wait(60)
                bare.append((await ctl.status(h.task_id))["duration_s"])
                before = vm_status(svc.pid, "VmHWM")["VmHWM"]
                task_id, got = await slow_reader(svc.url, svc.token, argv, rate)
                rec = await ctl.status(task_id)
                durations.append(rec["duration_s"])
                growths.append(vm_status(svc.pid, "VmHWM")["VmHWM"] - before)
                ok = ok and got == nbytes and rec["stdout_bytes"] == nbytes
        finally:
            await svc.stop_async()
            shutil.rmtree(data_dir, ignore_errors=True)
    worst = max(durations)
    rows.append(
        Row(
            f"slow client (<= 20 MB/s), {nbytes // 1_000_000} MB: task duration",
            f"median {statistics.median(durations):.2f} s, worst {worst:.2f} s"
            + (", every byte in order" if ok else ", BYTES MISSING"),
            f"no client: median {statistics.median(bare):.2f} s",
            "< 3 s, every byte",
            ok and worst < 3.0,
        )
    )
    rows.append(
        Row(
            "slow client: service peak RSS growth",
            f"max {max(growths) / MB:.1f} MB",
            "-",
            "<= 64 MB",
            max(growths) <= 64 * MB,
        )
    )
    return rows


async def main_async(args: argparse.Namespace) -> None:
    print_machine_info()
    nbytes = args.mb * 1_000_000
    rows = [await fast_client(args.rounds, nbytes)]
    rows += await slow_client(args.slow_rounds, nbytes)
    print()
    print_table(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--slow-rounds", type=int, default=3)
    p.add_argument("--mb", type=int, default=200)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
