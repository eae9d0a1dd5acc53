"""Overhead of `execute_claude` through the service, against the fake `claude` run bare.

    python benchmarks/bench_claude.py            # n=30 samples of each, interleaved
    python benchmarks/bench_claude.py --n 100

bare     asyncio.create_subprocess_exec of the same argv (built by `build_argv`, as the service
         builds it) with the same environment; read stdout and stderr to EOF, wait for exit.
service  `execute_claude` over a WebSocket to an in-process service, until the
         `process.completed` notification: spawn, stream-json parsing, claude.event
         notifications, record, persistence, completion notification.
         target: p50 overhead <= 10 ms

The fake is a Python script, so each run costs one Python start-up; the overhead is the
difference between the two columns. Samples alternate between the two so drift in machine
load hits both alike; the overhead rows are percentiles of the paired differences
(each service run minus the bare run of the same pair; which runs first alternates, with
a 50 ms pause before each run so the service's after-completion work does not land on the
next sample). The UUID hook variant adds the
verification check and a longer prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import Row, ms, percentile, print_machine_info, print_table

from cc_executor.claude.argv import build_argv, build_env
from cc_executor.client import ExecutorClient
from cc_executor.config import HooksConfig, Settings, UuidVerificationHook
from cc_executor.logs import setup_logging
from cc_executor.protocol import ExecuteClaudeParams
from cc_executor.server import ExecutorService

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "tests" / "fake_claude" / "claude"
PROMPT = "Summarise the benchmark FAKE_TOOL_USE"
TARGET_OVERHEAD_S = 0.010
SETTLE_S = 0.05


@contextlib.asynccontextmanager
async def in_process_service(**overrides: Any) -> AsyncIterator[ExecutorService]:
    data_dir = Path(tempfile.mkdtemp(prefix="cc-bench-claude-"))
    settings = Settings(
        data_dir=data_dir, port=0, claude_bin=str(FAKE_CLAUDE), kill_grace_seconds=1.0, **overrides
    )
    setup_logging("INFO", "json", data_dir / "service.log")  # as deployed, to a file
    service = ExecutorService(settings)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def bare_run(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    out, _ = await proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or b'"type":"result"' not in out:
        raise RuntimeError(f"bare fake claude exited {proc.returncode}")
    return elapsed


async def service_run(client: ExecutorClient, expect_verified: bool) -> float:
    t0 = time.perf_counter()
    task = await client.execute_claude(PROMPT, keep_events=False)
    done = await task.wait(60)
    elapsed = time.perf_counter() - t0
    if done["status"] != "completed" or done.get("error_kind") is not None:
        raise RuntimeError(f"execute_claude ended {done['status']}: {done.get('error')}")
    if expect_verified and done.get("verification") != "passed":
        raise RuntimeError(f"verification {done.get('verification')}")
    return elapsed


async def measure(n: int, uuid_hook: bool) -> tuple[list[float], list[float]]:
    hooks = HooksConfig(uuid_verification=UuidVerificationHook(enabled=uuid_hook))
    argv = build_argv(ExecuteClaudeParams(prompt=PROMPT), str(FAKE_CLAUDE))
    env = build_env(os.environ, None, strip_api_key=True)
    bare: list[float] = []
    served: list[float] = []
    async with (
        in_process_service(hooks=hooks) as svc,
        ExecutorClient(svc.url, svc.token) as client,
    ):
        for _ in range(3):  # warm-up: page cache, first connection, sqlite
            await bare_run(argv, env)
            await service_run(client, uuid_hook)
        for i in range(n):
            # Alternate which goes first, and let the service's after-completion work (store
            # flush, logs) settle, so neither side pays for the other.
            for first in ("bare", "service") if i % 2 == 0 else ("service", "bare"):
                await asyncio.sleep(SETTLE_S)
                if first == "bare":
                    bare.append(await bare_run(argv, env))
                else:
                    served.append(await service_run(client, uuid_hook))
    return bare, served


def signed_ms(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def rows_for(label: str, bare: list[float], served: list[float]) -> list[Row]:
    # Paired differences: each service run against the bare run of the same pair.
    diffs = [s - b for s, b in zip(served, bare, strict=True)]
    over50, over99 = percentile(diffs, 50), percentile(diffs, 99)
    return [
        Row(f"{label}: p50", ms(percentile(served, 50)), ms(percentile(bare, 50)), "", None),
        Row(f"{label}: p99", ms(percentile(served, 99)), ms(percentile(bare, 99)), "", None),
        Row(
            f"{label}: overhead p50",
            signed_ms(over50),
            "0",
            f"<= {ms(TARGET_OVERHEAD_S)}",
            over50 <= TARGET_OVERHEAD_S,
        ),
        Row(f"{label}: overhead p99", signed_ms(over99), "0", "", None),
    ]


async def run(n: int) -> list[Row]:
    rows: list[Row] = []
    for label, uuid_hook in (("execute_claude", False), ("execute_claude + UUID hook", True)):
        bare, served = await measure(n, uuid_hook)
        rows += rows_for(label, bare, served)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=30, help="samples of each (default 30)")
    args = p.parse_args()
    logging.getLogger("websockets").setLevel(logging.WARNING)
    print_machine_info()
    print(f"{'samples':>26}: {args.n} of each, interleaved; fake claude = {FAKE_CLAUDE}")
    print()
    rows = asyncio.run(run(args.n))
    print_table(rows)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
