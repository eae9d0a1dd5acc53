"""Load: many concurrent tasks of every kind across many WebSocket clients, nothing lost.

Guarantees checked: every task reaches a final status; every client receives the
`process.completed` of every task it started (exactly once); what each client received,
with any dropped range fetched back through `output`, is byte-for-byte what the child
printed; every log file has the size and sha256 of what the child printed; no process of
any task is left in the process table.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_executor.client import TaskHandle

from .children import bulk_bytes, chatty_bytes
from .conftest import MakeSvc
from .support import REPORT, P, Wire, child, file_sha, leftovers, sha

pytestmark = pytest.mark.stress

# The mix: quiet sleepers, chatty printers, bulk printers, fake-Claude runs.
KINDS = (
    "sleep",
    "chatty",
    "bulk",
    "claude",
    "chatty",
    "sleep",
    "claude",
    "chatty",
    "sleep",
    "bulk",
)


async def _peak_running(port: int, stop: asyncio.Event, seen: list[int]) -> None:
    """Sample /health for the report (how many tasks ran at once); asserts nothing."""
    async with httpx.AsyncClient(trust_env=False) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                r = await http.get(f"http://127.0.0.1:{port}/health", timeout=5)
                seen.append(int(r.json()["running"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


async def test_mixed_load_every_byte_and_every_completion(
    make_svc: MakeSvc, mark: str, tmp_path: Path
) -> None:
    row = REPORT.row(f"load: {P.load_tasks} tasks / {P.load_clients} clients")
    state = tmp_path / "fake-claude-state"
    state.mkdir()
    svc = await make_svc(FAKE_CLAUDE_STATE_DIR=str(state))
    t0 = time.monotonic()
    gate = tmp_path / "gate"
    env = {"CC_STRESS_MARK": mark, "STRESS_GATE": str(gate)}
    plan: list[tuple[int, str, int]] = [
        (i, KINDS[i % len(KINDS)], i % P.load_clients) for i in range(P.load_tasks)
    ]
    wires = [Wire() for _ in range(P.load_clients)]
    clients = [svc.client(on_notification=w, connect_timeout=30) for w in wires]
    stop_sampling = asyncio.Event()
    running_seen: list[int] = []
    sampler = asyncio.ensure_future(_peak_running(svc.port, stop_sampling, running_seen))
    try:
        await asyncio.gather(*(c.connect() for c in clients))

        async def start(i: int, kind: str, ci: int) -> TaskHandle:
            c = clients[ci]
            seed = f"load{i}"
            if kind == "sleep":
                argv = child("sleep", 1)
                return await c.execute(argv, env=env, name=seed, keep_events=False)
            if kind == "chatty":
                argv = child("chatty", seed, P.chatty_lines)
                return await c.execute(argv, env=env, name=seed, keep_events=False)
            if kind == "bulk":
                argv = child("bulk", seed, P.bulk_bytes)
                return await c.execute(argv, env=env, name=seed, keep_events=False)
            claude_env = {**env, "FAKE_CLAUDE_MODE": "FAKE_SLOW=0.2"}
            return await c.execute_claude(
                f"stress prompt {i}", env=claude_env, name=seed, keep_events=False
            )

        # Each client starts its tasks one after another; the clients all at once.
        async def start_all(ci: int) -> list[TaskHandle]:
            return [await start(i, kind, c) for i, kind, c in plan if c == ci]

        per_client = await asyncio.gather(*(start_all(ci) for ci in range(P.load_clients)))
        handles: dict[int, TaskHandle] = {}
        for ci, hs in enumerate(per_client):
            mine = [i for i, _, c in plan if c == ci]
            handles.update(zip(mine, hs, strict=True))
        # Every task is running (execute replies after the spawn): open the start barrier.
        assert all(h.info["status"] == "running" for h in handles.values())
        gate.touch()
        await asyncio.gather(*(h.wait(600) for h in handles.values()))
        stop_sampling.set()

        problems: list[str] = []
        total = 0
        pgids: list[int] = []
        for i, kind, ci in plan:
            h, c, wire = handles[i], clients[ci], wires[ci]
            tid = h.task_id
            before = len(problems)
            rec: dict[str, Any] = await c.status(tid)
            if rec["pgid"]:
                pgids.append(rec["pgid"])
            if len(wire.completed[tid]) != 1:
                problems.append(f"{kind} {i}: {len(wire.completed[tid])} completions on its client")
            for other in wires:
                if other is not wire and tid in other.completed:
                    problems.append(f"{kind} {i}: completion sent to a client that did not ask")
            if rec["status"] != "completed" or rec["exit_code"] != 0:
                problems.append(f"{kind} {i}: {rec['status']} exit {rec['exit_code']}")
            received = await wire.assemble(c, tid, "stdout")
            log_size, log_sha = file_sha(svc.log_path(tid, "stdout"))
            if kind == "sleep":
                expected: bytes | None = b""
            elif kind == "chatty":
                expected = chatty_bytes(f"load{i}", P.chatty_lines)
            elif kind == "bulk":
                expected = bulk_bytes(f"load{i}", P.bulk_bytes)
            else:
                expected = None
                result = rec.get("result") or ""
                if f"Fake Claude answer to: stress prompt {i}" not in result:
                    problems.append(f"claude {i}: result {result[:200]!r}")
            want = expected if expected is not None else received
            if (log_size, log_sha) != (len(want), sha(want)):
                problems.append(f"{kind} {i}: log {log_size} B, expected {len(want)} B")
            if received != want:
                problems.append(f"{kind} {i}: received {len(received)} B differ from the output")
            if rec["stdout_bytes"] != len(want):
                problems.append(f"{kind} {i}: stdout_bytes {rec['stdout_bytes']} != {len(want)}")
            err_received = await wire.assemble(c, tid, "stderr")
            err_size, err_sha = file_sha(svc.log_path(tid, "stderr"))
            if (err_size, err_sha) != (len(err_received), sha(err_received)) or rec[
                "stderr_bytes"
            ] != len(err_received):
                problems.append(f"{kind} {i}: stderr log differs from what was streamed")
            total += rec["stdout_bytes"] + rec["stderr_bytes"]
            row.failures += len(problems) > before

        left = await leftovers(mark, pgids)
        row.tasks = len(plan)
        row.bytes = total
        row.leftovers = len(left)
        row.max_rss = svc.sample_rss()
        row.wall_s = time.monotonic() - t0
        dropped = sum(b - a for w in wires for gaps in w.gaps.values() for a, b in gaps)
        row.note = f"peak running {max(running_seen, default=0)}, dropped-and-refetched {dropped} B"
        assert not problems, "\n".join(problems[:50])
        assert not left, left
        assert (await clients[0].ping())["pong"] is True
        assert not svc.errors(), svc.errors()[:3]
    finally:
        stop_sampling.set()
        await sampler
        for c in clients:
            await c.close()
