"""The service process reuses the memory of output chunks (cc_executor/allocator.py)."""

from __future__ import annotations

import os
from pathlib import Path

from cc_executor.client import ExecutorClient, output_bytes
from tests.support import ServiceProcess

PAGE = os.sysconf("SC_PAGE_SIZE")


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


async def stream(client: ExecutorClient, nbytes: int) -> None:
    h = await client.execute(["sh", "-c", f"head -c {nbytes} /dev/zero | tr '\\0' y"])
    got = 0
    async for ev in h.events():
        if ev["method"] == "process.output":
            got += len(output_bytes(ev["params"]))
    assert got == nbytes


async def test_streaming_output_does_not_fault_in_fresh_pages(tmp_path: Path) -> None:
    """With glibc's defaults each chunk landed on new pages: 65-88% of the pages streamed
    were faulted in anew, on every stream. Now a stream faults in a few pages at most,
    except one whose backlog of chunks peaks higher than any before it (the heap grows to
    the new peak once), so the fewest faults of three streams is what is asserted."""
    nbytes = 64 * 1024 * 1024
    svc = ServiceProcess(tmp_path / "data")
    await svc.start()
    faults = []
    try:
        async with ExecutorClient(svc.url, svc.token) as client:
            await stream(client, nbytes)  # the heap grows to its working size once
            for _ in range(3):
                before = minor_faults(svc.pid)
                await stream(client, nbytes)
                faults.append(minor_faults(svc.pid) - before)
    finally:
        await svc.stop_async()
    assert min(faults) < 0.1 * nbytes / PAGE, f"{faults} page faults for {nbytes // PAGE} pages"
