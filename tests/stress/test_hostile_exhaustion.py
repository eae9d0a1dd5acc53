"""Exhaustion: idle sockets, huge replies from small requests, replays, fat records.

Guarantees checked, each against the real service as a process:
- 1,100 idle TCP sockets from a client with no token, on a service whose file limit is
  1024 (soft and hard, so raising it cannot help): `/health` answers, an authenticated
  client connects and runs a task, the log holds a handful of lines, not thousands.
- Batches of 8 `output` calls of 16 MiB each, pipelined, on a service under a 2 GB
  address-space limit: every element gets its reply or a -32008 error of its own, the
  service stays up and its peak RSS stays far below what the replies would weigh.
- 2,000 `subscribe {from_offset: 0}` in one batch: the elements past the in-flight limit
  get -32004, the replays are read back at the client's pace, and another client's
  `ping` meanwhile stays fast.
- Tasks with a 1 MB command: a plain `status` reply stays small (long values cut, `cut`
  says which), `status {task_id}` still gives the whole command.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as aconnect

from cc_executor.protocol import ErrorCode
from tests.support import ServiceProcess

from .conftest import MakeSvc
from .support import MB, PY, REPORT, P, child

pytestmark = pytest.mark.stress


class LimitedService(ServiceProcess):
    """The service under `prlimit` limits (e.g. `--nofile=1024:1024`, `--as=2G`)."""

    def __init__(self, data_dir: Path, log: Path, limits: list[str], **env: str) -> None:
        super().__init__(data_dir, log, **env)
        self.limits = limits

    def spawn(self) -> None:
        assert not self.alive(), "the service is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["prlimit", *self.limits, PY, "-m", "cc_executor.server", "--port", str(self.port)]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env
            )
        self.pids.append(self.proc.pid)


async def _limited(tmp_path: Path, limits: list[str], **env: str) -> LimitedService:
    svc = LimitedService(tmp_path / "data", tmp_path / "svc.log", limits, **env)
    await svc.start()
    return svc


def _own_fd_room(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"this test needs {n} file descriptors; the hard limit here is {hard}")
    if soft != resource.RLIM_INFINITY and soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


async def test_idle_sockets_cannot_starve_the_service(tmp_path: Path, mark: str) -> None:
    n = 1100
    _own_fd_room(n + 200)
    row = REPORT.row(f"idle sockets: {n} without a token, fd limit 1024")
    svc = await _limited(tmp_path, ["--nofile=1024:1024"])
    t0 = time.monotonic()
    try:
        lines_before = len(svc.log_records())

        async def idle() -> asyncio.StreamWriter | None:
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", svc.port), 10)
                return w
            except (OSError, TimeoutError):
                return None

        writers = await asyncio.gather(*(idle() for _ in range(n)))
        opened = sum(w is not None for w in writers)
        # While they are open: /health answers, a real client connects and runs a task.
        t = time.perf_counter()
        async with httpx.AsyncClient(trust_env=False) as http:
            health = (await http.get(f"http://127.0.0.1:{svc.port}/health", timeout=5)).json()
        health_s = time.perf_counter() - t
        async with svc.client() as c:
            h = await c.execute(child("chatty", "idle", 10), env={"CC_STRESS_MARK": mark})
            done = await h.wait(30)
        for w in writers:
            if w is not None:
                w.close()
        log_lines = len(svc.log_records()) - lines_before
        evicted = health.get("handshakes_evicted")
        row.tasks = 1
        row.failures = (done["status"] != "completed") + (health["status"] != "ok")
        row.max_rss = svc.sample_rss()
        row.note = (
            f"{opened} sockets opened; /health in {health_s:.2f} s; "
            f"{evicted} idle handshakes evicted; {log_lines} log lines"
        )
        assert svc.alive()
        assert done["status"] == "completed", done
        assert health["status"] == "ok"
        assert log_lines < 50, svc.log_records()[-5:]
        assert evicted, health
    finally:
        row.wall_s = time.monotonic() - t0
        svc.stop()
    assert not svc.errors(), svc.errors()[:3]


async def test_fd_limit_is_raised_at_start(tmp_path: Path) -> None:
    svc = await _limited(tmp_path, ["--nofile=1024:8192"])
    try:
        # prlimit(1) execs the command: the service is that very process.
        assert _open_files_limit(svc.pid) == ("8192", "8192")
    finally:
        svc.stop()


def _open_files_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max open files" of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no open files limit for pid {pid}")


async def test_batches_of_huge_outputs_under_an_address_space_limit(
    tmp_path: Path, mark: str
) -> None:
    batches = 8 if P.name == "short" else 32
    row = REPORT.row(f"output batches: {batches} x 8 x 16 MiB, 2 GB address space")
    svc = await _limited(tmp_path, ["--as=2147483648"])
    t0 = time.monotonic()
    try:
        async with svc.client() as c:
            h = await c.execute(child("bulk", "huge", 16 * MB), env={"CC_STRESS_MARK": mark})
            assert (await h.wait(60))["status"] == "completed"
        rss_before = svc.sample_rss()
        call = {"task_id": h.task_id, "offset": 0, "limit": 16 * MB}
        results = errors = 0
        async with aconnect(
            svc.url, additional_headers={"Authorization": f"Bearer {svc.token}"}, max_size=None
        ) as ws:
            for b in range(batches):
                batch = [
                    {"jsonrpc": "2.0", "id": b * 8 + i, "method": "output", "params": call}
                    for i in range(8)
                ]
                await ws.send(json.dumps(batch))
            for _ in range(batches):
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), 120))
                assert isinstance(reply, list) and len(reply) == 8
                for r in reply:
                    if "result" in r:
                        assert r["result"]["size"] == 16 * MB
                        results += 1
                    else:
                        assert r["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE, r
                        errors += 1
            await ws.send('{"jsonrpc":"2.0","id":"p","method":"ping"}')
            assert orjson.loads(await ws.recv())["result"]["pong"] is True
        growth = svc.sample_rss() - rss_before
        row.tasks = batches * 8
        row.bytes = results * 16 * MB
        row.max_rss = svc.sample_rss()
        row.note = (
            f"{results} replies of 16 MiB, {errors} refused (-32008); "
            f"peak RSS grew {growth / MB:.0f} MB (the replies weigh {batches * 8 * 16} MB)"
        )
        assert svc.alive()
        assert results >= batches  # each batch gets at least its first element
        assert growth < 400 * MB, f"peak RSS grew by {growth / MB:.0f} MB"
    finally:
        row.wall_s = time.monotonic() - t0
        svc.stop()
    assert not svc.errors(), svc.errors()[:3]


async def test_a_batch_of_replays_does_not_stall_others(make_svc: MakeSvc, mark: str) -> None:
    row = REPORT.row("2,000 subscribe from_offset 0 in one batch")
    svc = await make_svc()
    t0 = time.monotonic()
    async with svc.client() as c:
        handles = [
            await c.execute(child("bulk", f"r{i}", MB), env={"CC_STRESS_MARK": mark})
            for i in range(20)
        ]
        for h in handles:
            assert (await h.wait(60))["status"] == "completed"
        pings: list[float] = []
        stop = asyncio.Event()

        async def ping_meanwhile() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await c.ping()
                pings.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)

        pinger = asyncio.create_task(ping_meanwhile())
        async with aconnect(
            svc.url, additional_headers={"Authorization": f"Bearer {svc.token}"}, max_size=None
        ) as ws:
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "subscribe",
                    "params": {"task_id": handles[i % 20].task_id, "from_offset": 0},
                }
                for i in range(2000)
            ]
            await ws.send(json.dumps(batch))
            reply: Any = None
            replayed = 0
            completed = 0
            # Each subscription that was admitted ends with its own process.completed.
            while reply is None or completed < sum("result" in r for r in reply):
                msg = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if isinstance(msg, list):
                    reply = msg
                elif msg.get("method") == "process.output":
                    replayed += 1
                elif msg.get("method") == "process.completed":
                    completed += 1
        stop.set()
        await pinger
    ok = sum("result" in r for r in reply)
    refused = [r for r in reply if "error" in r]
    row.tasks = 20
    row.latencies = pings
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    row.note = (
        f"{ok} subscribed, {len(refused)} refused (-32004), {replayed} output frames replayed; "
        f"the other client's ping: max {max(pings) * 1000:.0f} ms over {len(pings)}"
    )
    assert len(reply) == 2000
    assert ok == 64 and all(r["error"]["code"] == ErrorCode.CAPACITY_EXCEEDED for r in refused)
    assert max(pings) < 2.0, f"a ping took {max(pings):.2f} s during the replay"


async def test_fat_records_keep_list_replies_small(make_svc: MakeSvc, mark: str) -> None:
    n = 60 if P.name == "short" else 200
    row = REPORT.row(f"{n} tasks with a 1 MB command: status replies")
    svc = await make_svc()
    t0 = time.monotonic()
    fat = ["true", *(["x" * 200_000] * 5)]  # each argument past exec's limit: spawn fails
    async with svc.client() as c:
        rss_before = svc.sample_rss()
        ids = []
        for _ in range(n):
            h = await c.execute(fat, env={"CC_STRESS_MARK": mark})
            ids.append(h.task_id)
            await h.wait(30)
        async with aconnect(
            svc.url, additional_headers={"Authorization": f"Bearer {svc.token}"}, max_size=None
        ) as ws:
            await ws.send('{"jsonrpc":"2.0","id":1,"method":"status"}')
            listed = await ws.recv()
        one = await c.status(ids[0])
    rows = orjson.loads(listed)["result"]["tasks"]
    row.tasks = n
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    row.note = (
        f"plain status reply {len(listed) / 1024:.0f} KB for {len(rows)} tasks "
        f"(whole records: {n} MB); RSS {rss_before / MB:.0f} -> {svc.sample_rss() / MB:.0f} MB"
    )
    assert len(listed) < 4 * MB, len(listed)
    assert all("command[1]" in r["cut"] for r in rows if r["task_id"] in ids)
    assert one["command"] == fat  # the whole record, by id
