"""Turn latency of hot vs cold sessions, with the fake `claude`'s start-up delay.

    python benchmarks/bench_sessions.py                 # n=10 turns of each, delay 1.0 s
    python benchmarks/bench_sessions.py --n 20 --startup 2.5

cold  a session whose every turn is a fresh `claude -p ... --resume <id>`: each turn pays
      the CLI's start-up (FAKE_CLAUDE_STARTUP_DELAY, standing in for Node's 2-3 s).
hot   a `hot: true` session: one live `claude --input-format stream-json`, each turn one
      user message on its stdin. Its first turn starts the process (paid once, not timed).

Each sample is `session.send {wait: true}` over a WebSocket to an in-process service, until
the reply with the turn's result. Turns alternate between the two sessions so drift in
machine load hits both alike. A cold turn's start-up overhead is its p50 minus the hot p50
(the work of a turn itself is the same); the goal (issue 16) is a hot turn costing less
than 10% of that overhead. Scratch dirs (data, fake state) are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from _common import ROOT, Row, ms, percentile, print_machine_info, print_table, scratch_dir

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.logs import setup_logging
from cc_executor.server import ExecutorService

FAKE_CLAUDE = ROOT / "tests" / "fake_claude" / "claude"


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
    os.environ["FAKE_CLAUDE_STARTUP_DELAY"] = str(startup)
    with scratch_dir("cc-bench-sessions-") as root:
        os.environ["FAKE_CLAUDE_STATE_DIR"] = str(root / "fake-state")
        work = root / "work"
        work.mkdir()
        settings = Settings(
            data_dir=root / "data", port=0, claude_bin=str(FAKE_CLAUDE), log_format="json"
        )
        settings.data_dir.mkdir()
        setup_logging("INFO", "json", root / "service.log")
        service = ExecutorService(settings)
        await service.start()
        try:
            async with ExecutorClient(service.url, service.token) as client:
                made: dict[str, Any] = {}
                for kind in ("cold", "hot"):
                    s = await client.call(
                        "session.create", {"working_dir": str(work), "hot": kind == "hot"}
                    )
                    made[kind] = s["session_id"]
                await turn(client, made["cold"], "warm up")
                await turn(client, made["hot"], "warm up")  # starts the hot process
                cold: list[float] = []
                hot: list[float] = []
                for i in range(n):
                    order = ("cold", "hot") if i % 2 == 0 else ("hot", "cold")
                    for kind in order:
                        (cold if kind == "cold" else hot).append(
                            await turn(client, made[kind], f"turn {i}")
                        )
        finally:
            await service.stop()
    return cold, hot


def main() -> None:
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
        Row("cold turn p50", ms(c50), f"start-up {ms(args.startup)}", "-", None),
        Row("cold turn p95", ms(percentile(cold, 95)), "-", "-", None),
        Row("hot turn p50", ms(h50), "-", "-", None),
        Row("hot turn p95", ms(percentile(hot, 95)), "-", "-", None),
        Row("cold start-up overhead", ms(overhead), f"delay {ms(args.startup)}", "-", None),
        Row("hot turn / overhead", f"{h50 / overhead:.1%}", "-", f"< 10% ({ms(goal)})", h50 < goal),
    ]
    print(f"n={args.n} turns of each, interleaved; fake start-up delay {args.startup:g} s")
    print_table(rows)


if __name__ == "__main__":
    main()
