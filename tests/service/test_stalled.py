"""A client that never reads: the log stays byte-exact, the service's memory stays bounded,
and once it reads it gets every byte, in order, read back from the log."""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable
from typing import Any

from cc_executor.client import ExecutorClient, output_bytes
from tests.support import ServiceProcess, happens_within

from .conftest import raw_connect

MB = 1024 * 1024
TOTAL = 50 * MB
SEED = 20240601

# Deterministic pseudo-random bytes, 1 MB at a time; the child reports their sha256.
CHILD = f"""
import hashlib, random, sys
rng = random.Random({SEED})
h = hashlib.sha256()
out = sys.stdout.buffer
for _ in range({TOTAL // MB}):
    block = rng.randbytes({MB})
    h.update(block)
    out.write(block)
out.flush()
sys.stderr.write(h.hexdigest())
"""


def expected_sha() -> str:
    rng = random.Random(SEED)
    h = hashlib.sha256()
    for _ in range(TOTAL // MB):
        h.update(rng.randbytes(MB))
    return h.hexdigest()


def file_sha(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MB):
            h.update(block)
    return h.hexdigest()


async def test_stalled_subscriber_50mb_log_exact_memory_bounded(
    service_process: Callable[..., Any],
) -> None:
    sp: ServiceProcess = await service_process(CC_EXECUTOR_SUBSCRIBER_QUEUE_BYTES=str(1 * MB))
    async with ExecutorClient(sp.url, sp.token) as ctl:
        await ctl.ping()
        rss_before = sp.vm("VmRSS")

        # max_queue=1: the client library stops reading the socket once one frame waits.
        async with raw_connect(sp.url, sp.token, max_queue=1) as stalled:
            started = await stalled.result("execute", {"command": [sys.executable, "-c", CHILD]})
            task_id = started["task_id"]
            # ... and from here on nobody reads this connection until the task is over.
            watch = await ctl.subscribe(task_id, keep_events=False)
            done = await watch.wait(120)
            assert done["status"] == "completed", done
            assert done["stdout_bytes"] == TOTAL

            growth = sp.vm("VmHWM") - rss_before
            # ~15 MB here; with an unbounded queue it is over 150 MB.
            assert growth < 40 * MB, f"service peak RSS grew by {growth / MB:.1f} MB"

            # The log is byte-identical to what the process printed.
            digest = (await ctl.output(task_id, "stderr"))["data"]
            log = sp.data_dir / "logs" / f"{task_id}.stdout"
            assert log.stat().st_size == TOTAL
            assert file_sha(log) == digest == expected_sha()

            # Now the stalled client reads: every byte, in order, no gap.
            events = list(stalled.notifications)
            while not events or events[-1]["method"] != "process.completed":
                events.append(await stalled.recv())
            h = hashlib.sha256()
            pos = 0
            for ev in events:
                p = ev["params"]
                assert ev["method"] != "process.dropped", p
                if ev["method"] == "process.output" and p["stream"] == "stdout":
                    data = output_bytes(p)
                    assert p["offset"] == pos
                    h.update(data)
                    pos += len(data)
            assert pos == TOTAL
            assert h.hexdigest() == digest
        log.unlink()


async def test_a_client_that_never_reads_replies_cannot_grow_the_service(
    service_process: Callable[..., Any],
) -> None:
    """Requests whose 1 MB replies are never read stop being served at the in-flight limit
    (TCP pushes back), instead of piling replies up in the service's memory."""
    sp: ServiceProcess = await service_process()
    async with ExecutorClient(sp.url, sp.token) as ctl:
        task = await ctl.execute([sys.executable, "-c", "print('x' * (1 << 20), end='')"])
        assert (await task.wait(60))["status"] == "completed"
        rss_before = sp.vm("VmRSS")
        request = {"task_id": task.task_id, "limit": 1 << 20}
        async with raw_connect(sp.url, sp.token, max_queue=1) as greedy:
            for i in range(400):  # 400 MB of replies if they were all kept
                await greedy.send(
                    {"jsonrpc": "2.0", "id": i, "method": "output", "params": request}
                )
            # Another client is still served meanwhile.
            assert (await ctl.ping())["pong"] is True
            # Unbounded, the service's peak RSS passes 100 MB within a second here; watch
            # it for 3 s: it must never get there.
            grew = await happens_within(lambda: sp.vm("VmHWM") - rss_before > 100 * MB, 3)
            growth = sp.vm("VmHWM") - rss_before
            assert not grew, f"service peak RSS grew by {growth / MB:.1f} MB"
            # Reading now, every reply arrives, complete.
            seen = set()
            while len(seen) < 400:
                msg = await greedy.recv(60)
                if "id" in msg:
                    assert msg["result"]["size"] == 1 << 20
                    seen.add(msg["id"])
