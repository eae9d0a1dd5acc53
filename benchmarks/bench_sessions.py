"""Turn latency of hot vs cold sessions, with the fake `claude`'s start-up delay.

    python benchmarks/bench_sessions.py                 # n=10 turns of each, delay 1.0 s
    python benchmarks/bench_sessions.py --n 20 --startup 2.5

cold  a session whose every turn is a fresh `claude -p ... --resume <id>`: each turn pays
      the CLI's start-up (FAKE_CLAUDE_STARTUP_DELAY, standing in for Node's 2-3 s).
hot   a `hot: true` session: one live `claude --input-format stream-json`, each turn one
      user message on its stdin. Its first turn starts the process (paid once, not timed).

Each sample is `session.send {wait: true}` from the project's client over a WebSocket to
the service as deployed (`python -m cc_executor.server`, a process of its own), until the
reply with the turn's result. Each round times one turn of each session in a shuffled
order, so drift in machine load hits both alike. A cold turn's start-up overhead is its
median minus the hot median (the work of a turn itself is the same); the goal (issue 16)
is a hot turn costing less than 10% of that overhead. Scratch dirs (data, fake state,
work) are removed at the end; the exit status is 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from _common import Row, ms, percentile, print_machine_info, report, scratch_dir, service_process

from cc_executor.client import ExecutorClient

KINDS = ("cold", "hot")


async def turn(client: ExecutorClient, session_id: str, message: str) -> float:
    t0 = time.perf_counter()
    res = await client.call(
        "session.send", {"session_id": session_id, "message": message, "wait": True}
    )
    elapsed = time.perf_counter() - t0
    if res["status"] != "completed":
        raise RuntimeError(f"turn ended {res['status']}: {res.get('error')}")
    return elapsed


async def measure(n: int, startup: float) -> tuple[list[float], list[float]]:
    rng = random.Random(16)
    with scratch_dir("cc-bench-sessions-") as root:
        work = root / "work"
        work.mkdir()
        env = {
            "FAKE_CLAUDE_STARTUP_DELAY": str(startup),  # the children inherit the service's env
            "FAKE_CLAUDE_STATE_DIR": str(root / "fake-state"),
            "CC_EXECUTOR_LOG_LEVEL": "WARNING",
        }
        async with service_process(**env) as svc, svc.client() as client:
            made: dict[str, str] = {}
            for kind in KINDS:
                s = await client.call(
                    "session.create", {"working_dir": str(work), "hot": kind == "hot"}
                )
                made[kind] = s["session_id"]
            for kind in KINDS:
                await turn(client, made[kind], "warm up")  # hot: starts its process
            times: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for i in range(n):
                order = list(KINDS)
                rng.shuffle(order)
                for kind in order:
                    times[kind].append(await turn(client, made[kind], f"turn {i}"))
    return times["cold"], times["hot"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--startup", type=float, default=1.0, help="fake start-up delay, seconds")
    args = ap.parse_args()
    print_machine_info()
    cold, hot = asyncio.run(measure(args.n, args.startup))
    c50, h50 = percentile(cold, 50), percentile(hot, 50)
    overhead = c50 - h50
    goal = 0.10 * overhead
    rows = [
        Row("cold turn median", ms(c50), f"start-up {ms(args.startup)}", "-", None),
        Row("cold turn p95", ms(percentile(cold, 95)), "-", "-", None),
        Row("hot turn median", ms(h50), "-", "-", None),
        Row("hot turn p95", ms(percentile(hot, 95)), "-", "-", None),
        Row("cold start-up overhead", ms(overhead), f"delay {ms(args.startup)}", "-", None),
        Row("hot turn / overhead", f"{h50 / overhead:.1%}", "-", f"< 10% ({ms(goal)})", h50 < goal),
    ]
    print(f"n={args.n} rounds (one turn of each, shuffled); fake start-up delay {args.startup:g} s")
    return report(rows)


if __name__ == "__main__":
    sys.exit(main())
