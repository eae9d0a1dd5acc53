"""Cluster mode (issue 13's targets): nodes as processes on one private redis-server.

1. Throughput: 240 `sleep 1` tasks from one client (16 requests in flight, the most one
   connection may have), every completion delivered to it,
   on 1 node (a plain service, no Redis) vs 3 nodes of 40 slots each.
   Target: 3 nodes take <= 0.45x the 1-node time.
2. Output through the cluster: a task on node B printing `--mb` MB, its client on node A,
   vs the same on one plain service. Every byte checked in order.
   Target: >= 0.5x the 1-node rate.
3. PAUSE/RESUME of a task on node B sent to node C: p50/p99 beside the same sent to B.
   Target: p99 <= 20 ms.
4. Node loss: a node (in its own pid namespace) killed under running tasks; time until
   its tasks read `lost` at another node's client, against its TTL.

Each scenario gets a fresh redis-server and fresh nodes in a scratch dir, deleted after.
Throughput and output are measured in rounds, the two series interleaved in a new random
order each round; the figures are medians.
Run: `python benchmarks/bench_cluster.py [--mb 100] [--pauses 200] [--rounds 3]
[--output-rounds 7]` (as root for 4).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, ms, percentile, print_machine_info, print_table, scratch_dir

from tests.cluster.support import (
    Node,
    RedisServer,
    client,
    pid_namespaces_available,
    redis_available,
    start_node,
)


@contextlib.asynccontextmanager
async def cluster(
    names: list[str],
    isolate: set[str] | None = None,
    single: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[list[Node]]:
    """Nodes on a fresh redis-server; `single`: one plain service, no Redis (the baseline)."""
    with scratch_dir("cc-bench-cluster-") as root:
        redis = RedisServer(root / "redis")
        redis.start()
        url = "" if single else redis.url
        started: list[Node] = []
        try:
            for name in names:
                started.append(
                    await start_node(
                        root, url, name, isolate=name in (isolate or ()), **(env or {})
                    )
                )
            yield started
        finally:
            for n in started:
                n.stop()
            redis.stop()


async def throughput(n_nodes: int, tasks: int = 240, slots: int = 40) -> float:
    names = [f"node-{i}" for i in range(n_nodes)]
    env = {"CC_EXECUTOR_MAX_CONCURRENT_TASKS": str(slots)}
    async with cluster(names, single=n_nodes == 1, env=env) as nodes, client(nodes[0]) as cl:
        t0 = time.perf_counter()
        in_flight = asyncio.Semaphore(16)  # what one connection may have in flight

        async def submit() -> str:
            async with in_flight:
                return str((await cl.result("execute", {"command": "sleep 1"}))["task_id"])

        ids = await asyncio.gather(*(submit() for _ in range(tasks)))
        for tid in ids:
            done = await cl.until("process.completed", tid, timeout=120)
            assert done["status"] == "completed", done
        return time.perf_counter() - t0


async def output_rates(mb: int, rounds: int) -> tuple[list[float], list[float]]:
    """(one node, through the cluster) MB/s: a task printing `mb` MB, every byte checked,
    on a plain service and on node B with the client on node A, both set up once and
    measured in interleaved rounds (a new random order each round)."""
    nbytes = mb * 1024 * 1024
    argv = ["sh", "-c", f"head -c {nbytes} /dev/zero | tr '\\0' y"]
    rates: dict[str, list[float]] = {"single": [], "remote": []}
    async with (
        cluster(["node-s"], single=True) as (plain,),
        cluster(["node-a", "node-b"]) as (a, _b),
    ):
        for _ in range(rounds):
            order = ["single", "remote"]
            random.shuffle(order)
            for which in order:
                params: dict[str, Any] = {"command": argv}
                if which == "remote":
                    params["node"] = "node-b"
                async with client(plain if which == "single" else a) as cl:
                    t0 = time.perf_counter()
                    tid = (await cl.result("execute", params))["task_id"]
                    done = await cl.until("process.completed", tid, timeout=300)
                    elapsed = time.perf_counter() - t0
                    got = cl.output_of(tid)
                    assert len(got) == nbytes == done["stdout_bytes"]
                    assert got.count(b"y") == nbytes
                rates[which].append(mb / elapsed)
    return rates["single"], rates["remote"]


async def pause_latency(pairs: int) -> tuple[list[float], list[float]]:
    """(through another node, to the owner), each a list of PAUSE and RESUME seconds."""
    async with cluster(["node-b", "node-c"]) as (b, c):
        async with client(b) as cb, client(c) as cc:
            tid = (await cb.result("execute", {"command": "sleep 600"}))["task_id"]
            await cb.until("process.started", tid)
            results: dict[str, list[float]] = {"remote": [], "local": []}
            for i in range(pairs * 2):
                which, cl = ("remote", cc) if i % 2 else ("local", cb)
                for action in ("PAUSE", "RESUME"):
                    t0 = time.perf_counter()
                    await cl.result("control", {"task_id": tid, "action": action})
                    results[which].append(time.perf_counter() - t0)
            await cb.result("control", {"task_id": tid, "action": "CANCEL"})
            return results["remote"], results["local"]


async def loss_detection(ttl: float) -> float:
    env = {"CC_EXECUTOR_NODE_TTL": str(ttl)}
    async with cluster(["node-a", "node-b"], isolate={"node-b"}, env=env) as (a, b):
        async with client(a) as cl:
            ids = [
                (await cl.result("execute", {"command": "sleep 600", "node": "node-b"}))["task_id"]
                for _ in range(5)
            ]
            for tid in ids:
                await cl.until("process.started", tid)
            await asyncio.sleep(ttl)  # let the survivor settle (it waits a TTL after connecting)
            t0 = time.perf_counter()
            b.kill()
            for tid in ids:
                lost = await cl.until("process.completed", tid, timeout=ttl + 30)
                assert lost["status"] == "lost" and "node-b" in lost["error"], lost
            return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--pauses", type=int, default=200)
    ap.add_argument("--ttl", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (1 and 3 nodes)")
    ap.add_argument("--output-rounds", type=int, default=7)
    args = ap.parse_args()
    why = redis_available()
    if why:
        raise SystemExit(why)
    print_machine_info()
    rows: list[Row] = []

    times: dict[int, list[float]] = {1: [], 3: []}
    for _ in range(args.rounds):
        order = [1, 3]
        random.shuffle(order)
        for n in order:
            times[n].append(await throughput(n))
    one, three = statistics.median(times[1]), statistics.median(times[3])
    rows.append(
        Row(
            f"240 x sleep 1, 40 slots/node: 3 nodes vs 1 ({args.rounds} rounds)",
            f"median {three:.2f} s ({three / one:.2f}x; {min(times[3]):.2f}-{max(times[3]):.2f} s)",
            f"1 node {one:.2f} s",
            "<= 0.45x",
            three / one <= 0.45,
        )
    )

    single_r, remote_r = await output_rates(args.mb, args.output_rounds)
    single, remote = statistics.median(single_r), statistics.median(remote_r)
    rows.append(
        Row(
            f"output {args.mb} MB, task on B, client on A ({args.output_rounds} rounds)",
            f"median {remote:.0f} MB/s ({remote / single:.2f}x; "
            f"{min(remote_r):.0f}-{max(remote_r):.0f} MB/s)",
            f"1 node {single:.0f} MB/s",
            ">= 0.5x",
            remote / single >= 0.5,
        )
    )

    remote_t, local_t = await pause_latency(args.pauses)
    p99 = percentile(remote_t, 99)
    rows.append(
        Row(
            f"PAUSE/RESUME via another node ({len(remote_t)} calls)",
            f"p50 {ms(percentile(remote_t, 50))}, p99 {ms(p99)}",
            f"owner p50 {ms(percentile(local_t, 50))}, p99 {ms(percentile(local_t, 99))}",
            "p99 <= 20 ms",
            p99 <= 0.020,
        )
    )

    why = pid_namespaces_available()
    if why:
        rows.append(Row("node loss to lost", f"skipped: {why}", "-", "-", None))
    else:
        took = await loss_detection(args.ttl)
        rows.append(
            Row(
                f"node loss to its 5 tasks lost (ttl {args.ttl:g} s)",
                f"{took:.2f} s",
                f"ttl {args.ttl:g} s",
                "<= ttl + 5 s",
                took <= args.ttl + 5,
            )
        )
    print_table(rows)


if __name__ == "__main__":
    asyncio.run(main())
