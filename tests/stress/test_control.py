"""Control under load: PAUSE/RESUME/CANCEL storms from several clients at once.

Guarantees checked: a control call either succeeds with the status its action promises
(PAUSE -> paused, RESUME -> running, CANCEL -> cancelled) or fails with -32003 (invalid
state), nothing else; the service applies them one at a time per task, so each task's
final status is the one of the last action applied (the order a `listen` connection saw);
every process of a paused group is stopped in /proc and none of a running one; after the
final CANCEL storm every task is `cancelled`, its log holds whole lines in order, and no
process of any task group, nor any carrying the test's marker, is left.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import TaskHandle
from cc_executor.engine import process
from cc_executor.protocol import ProtocolError

from .children import bulk_bytes, ticker_line
from .conftest import MakeSvc
from .support import REPORT, P, Wire, child, file_sha, leftovers, sha

pytestmark = pytest.mark.stress

ACTIONS = ("PAUSE", "RESUME", "CANCEL")
PROMISED = {"PAUSE": "paused", "RESUME": "running", "CANCEL": "cancelled"}


def _ticker_lines_ok(seed: str, data: bytes) -> int:
    """The number of lines when data is exactly ticks 0..n-1 of this seed, else -1."""
    lines = data.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line != ticker_line(seed, i):
            return -1
    return len(lines)


async def test_pause_resume_cancel_storm(make_svc: MakeSvc, mark: str, tmp_path: Path) -> None:
    row = REPORT.row(f"control storm: {P.storm_tasks} tasks / {P.storm_clients} clients")
    svc = await make_svc()
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    starter_wire, listen_wire = Wire(), Wire()
    starter = svc.client(on_notification=starter_wire)
    listener = svc.client(on_notification=listen_wire)
    stormers = [svc.client() for _ in range(P.storm_clients)]
    latencies: list[float] = []
    replies: dict[str, list[tuple[str, str | int]]] = defaultdict(list)
    problems: list[str] = []
    try:
        for c in (starter, listener, *stormers):
            await c.connect()
        await listener.call("listen", {"enabled": True})
        tickers: dict[str, TaskHandle] = {}
        for i in range(P.storm_tasks):
            h = await starter.execute(child("ticker", f"tick{i}"), env=env, keep_events=False)
            tickers[f"tick{i}"] = h
        # Output pressure while the storm runs: bulk printers, checked byte for byte.
        bulk = [
            await starter.execute(child("bulk", f"storm{i}", 4 * P.bulk_bytes), env=env)
            for i in range(2)
        ]
        # Every ticker is running and printing (its first line reached the client).
        for h in tickers.values():
            await asyncio.wait_for(starter_wire.first_output[h.task_id].wait(), 60)
        ids = [h.task_id for h in tickers.values()]

        async def one(c: Any, tid: str, action: str) -> None:
            t = time.perf_counter()
            try:
                res = await c.control(tid, action)
            except ProtocolError as exc:
                replies[tid].append((action, exc.code))
            else:
                replies[tid].append((action, res["status"]))
            latencies.append(time.perf_counter() - t)

        async def storm(ci: int) -> None:
            rng = random.Random(ci)
            c = stormers[ci]
            for _ in range(P.storm_rounds):
                picks = [
                    (rng.choice(ids), rng.choices(ACTIONS, weights=(48, 48, 2))[0])
                    for _ in range(3)
                ]
                await asyncio.gather(*(one(c, tid, act) for tid, act in picks))

        await asyncio.gather(*(storm(ci) for ci in range(P.storm_clients)))
        # Every call has returned; a status call on the listener's connection is answered
        # after every event queued before it, so its view of the order is complete.
        await listener.status()

        for tid in ids:
            got = replies[tid]
            for action, outcome in got:
                if isinstance(outcome, int):
                    if outcome != -32003:
                        problems.append(f"{tid}: {action} failed with code {outcome}")
                elif outcome != PROMISED[action]:
                    problems.append(f"{tid}: {action} replied status {outcome}")
            events = [m for m, p in listen_wire.events if p["task_id"] == tid]
            ok = Counter(a for a, o in got if isinstance(o, str))
            seen = Counter(events)
            if ok["PAUSE"] != seen["process.paused"] or ok["RESUME"] != seen["process.resumed"]:
                problems.append(f"{tid}: replies {dict(ok)} but events {dict(seen)}")
            last = events[-1] if events else "process.resumed"
            want = {
                "process.paused": "paused",
                "process.resumed": "running",
                "process.completed": "cancelled",
            }[last]
            rec = await starter.status(tid)
            if rec["status"] != want:
                problems.append(f"{tid}: status {rec['status']}, last event {last}")
            if rec["status"] in ("paused", "running"):
                states = {s for s in process.group_members(rec["pgid"]).values() if s not in "ZX"}
                stopped = states <= {"T", "t"}
                if rec["status"] == "paused" and not (states and stopped):
                    problems.append(f"{tid}: paused but group states {states}")
                if rec["status"] == "running" and states & {"T", "t"}:
                    problems.append(f"{tid}: running but group states {states}")

        # The last action for everyone: CANCEL, from every stormer at once.
        await asyncio.gather(*(one(c, tid, "CANCEL") for c in stormers for tid in ids))
        for tid in ids:
            for action, outcome in replies[tid][-len(stormers) :]:
                if outcome not in ("cancelled", -32003):
                    problems.append(f"{tid}: final {action} -> {outcome}")
        pgids = []
        total = 0
        for seed, h in tickers.items():
            rec = await starter.status(h.task_id)
            pgids.append(rec["pgid"])
            if rec["status"] != "cancelled":
                problems.append(f"{h.task_id}: ended {rec['status']} after the final CANCEL")
            data = svc.log_path(h.task_id).read_bytes()
            total += len(data)
            if _ticker_lines_ok(seed, data) < 1 or len(data) != rec["stdout_bytes"]:
                problems.append(f"{h.task_id}: log is not whole ticks in order")
            if await starter_wire.assemble(starter, h.task_id) != data:
                problems.append(f"{h.task_id}: streamed output differs from the log")
        for i, h in enumerate(bulk):
            done = await h.wait(120)
            expected = bulk_bytes(f"storm{i}", 4 * P.bulk_bytes)
            total += len(expected)
            if done["status"] != "completed":
                problems.append(f"bulk {i}: {done['status']}")
            if file_sha(svc.log_path(h.task_id)) != (len(expected), sha(expected)):
                problems.append(f"bulk {i}: log differs from what it printed")
            pgids.append(h.pid or 0)
        left = await leftovers(mark, pgids)
        row.tasks = len(tickers) + len(bulk)
        row.bytes = total
        row.latencies = latencies
        row.failures = len({p.split(":")[0] for p in problems})
        row.leftovers = len(left)
        row.max_rss = svc.sample_rss()
        row.wall_s = time.monotonic() - t0
        n_ok = sum(1 for r in replies.values() for _, o in r if isinstance(o, str))
        row.note = f"{len(latencies)} control calls, {n_ok} applied, the rest -32003"
        assert not problems, "\n".join(problems[:40])
        assert not left, left
        assert not svc.errors(), svc.errors()[:3]
    finally:
        for c in (starter, listener, *stormers):
            await c.close()
