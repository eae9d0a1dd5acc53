"""Output over the wire: `output` paging byte-exact, encodings, subscribe/replay/reconnect."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path
from typing import Any

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.protocol import Stream
from cc_executor.server import ExecutorService
from tests.support import live_members, wait_until

from .conftest import MakeService, raw_connect

TEXT = ("aé€😀\n" * 40).encode()
BINARY = bytes(range(256)) * 8 + b"\xff\xfe\x00\x80"


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_file(path: Path) -> str:
    return f"import os, time\nwhile not os.path.exists({str(path)!r}): time.sleep(0.005)\n"


async def page_all(client: ExecutorClient, task_id: str, stream: str, limit: int) -> list[Any]:
    pages, offset = [], 0
    while True:
        page = await client.output(task_id, stream, offset, limit)
        assert page["offset"] == offset
        pages.append(page)
        offset += page["size"]
        if page["eof"]:
            return pages
        assert page["size"] > 0


async def test_output_paging_is_byte_exact(client: ExecutorClient) -> None:
    code = f"import sys\nsys.stdout.buffer.write({TEXT!r})\nsys.stderr.buffer.write({BINARY!r})\n"
    h = await client.execute(py(code))
    done = await h.wait(30)
    assert done["stdout_bytes"] == len(TEXT) and done["stderr_bytes"] == len(BINARY)

    # Text in tiny pages: never cut inside a character, so every page stays text.
    pages = await page_all(client, h.task_id, "stdout", 7)
    assert all(p["encoding"] == "utf-8" for p in pages)
    assert all(p["size"] <= 7 for p in pages)
    assert b"".join(output_bytes(p) for p in pages) == TEXT
    assert {p["total"] for p in pages} == {len(TEXT)}

    # Binary: base64, every byte back.
    pages = await page_all(client, h.task_id, "stderr", 777)
    assert any(p["encoding"] == "base64" for p in pages)
    got = b"".join(output_bytes(p) for p in pages)
    assert got == BINARY
    for p in pages:
        if p["encoding"] == "base64":
            assert base64.b64decode(p["data"]) == output_bytes(p)

    # Past the end: empty, eof. A zero limit: empty, not eof.
    end = await client.output(h.task_id, "stdout", len(TEXT) + 10, 100)
    assert end["size"] == 0 and end["data"] == "" and end["eof"] is True
    zero = await client.output(h.task_id, "stdout", 0, 0)
    assert zero["size"] == 0 and zero["eof"] is False
    # The whole stream at once through the client helper.
    assert await client.read_output(h.task_id, "stderr") == BINARY


async def test_output_of_a_running_task(client: ExecutorClient, tmp_path: Path) -> None:
    go = tmp_path / "go"
    h = await client.execute(py(f"print('first', flush=True)\n{wait_file(go)}print('second')"))
    seen = 0
    async for ev in h.events():
        if ev["method"] == "process.output":
            seen += len(output_bytes(ev["params"]))
            if seen == 6:
                break
    page = await client.output(h.task_id)
    assert page["data"] == "first\n" and page["eof"] is False and page["status"] == "running"
    go.touch()
    await h.wait(30)
    page = await client.output(h.task_id)
    assert page["data"] == "first\nsecond\n" and page["eof"] is True


async def test_utf8_split_across_reads_stays_text(
    text_client: ExecutorClient, service: ExecutorService, tmp_path: Path
) -> None:
    client = text_client
    go = tmp_path / "go"
    euro = "€".encode()
    code = (
        f"import sys\nsys.stdout.buffer.write({euro[:2]!r}); sys.stdout.flush()\n"
        f"{wait_file(go)}sys.stdout.buffer.write({euro[2:]!r} + b'ok')\n"
        "sys.stderr.buffer.write(bytes([0xff, 0xfe]))\n"
    )
    h = await client.execute(py(code))
    log = service.engine.log_path(h.task_id, Stream.STDOUT)
    # The first two bytes reached the service (and its log) on their own.
    assert await wait_until(lambda: log.exists() and log.stat().st_size == 2)
    go.touch()
    outputs = [e["params"] async for e in h.events() if e["method"] == "process.output"]
    stdout = [p for p in outputs if p["stream"] == "stdout"]
    stderr = [p for p in outputs if p["stream"] == "stderr"]
    # The two bytes were held back, then sent whole with the rest: text all along.
    assert [(p["offset"], p["data"], p.get("encoding")) for p in stdout] == [(0, "€ok", None)]
    # Invalid UTF-8 goes as base64, and says so.
    assert [(p.get("encoding"), output_bytes(p)) for p in stderr] == [("base64", b"\xff\xfe")]


async def test_reconnect_and_subscribe_resumes_exactly(
    service: ExecutorService, tmp_path: Path
) -> None:
    sizes = {"A": 20_000, "B": 30_000, "C": 10_000}  # lines of 9 bytes
    part = {n: b"".join(f"{n}{i:07d}\n".encode() for i in range(k)) for n, k in sizes.items()}
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    gen = "b''.join(f'{n}{i:07d}\\n'.encode() for i in range(k))"
    code = (
        "import sys\nw = sys.stdout.buffer\n"
        "def part(n, k): return " + gen + "\n"
        f"w.write(part('A', {sizes['A']})); w.flush()\n{wait_file(go1)}"
        f"w.write(part('B', {sizes['B']})); w.flush()\n{wait_file(go2)}"
        f"w.write(part('C', {sizes['C']})); w.flush()\n"
    )
    full = part["A"] + part["B"] + part["C"]

    # Client A starts the task, reads part A live, then goes away.
    got_a: dict[int, bytes] = {}
    async with ExecutorClient(service.url, service.token) as a:
        h = await a.execute(py(code))
        task_id, pid = h.task_id, h.pid
        async for ev in h.events():
            if ev["method"] == "process.output":
                got_a[ev["params"]["offset"]] = output_bytes(ev["params"])
                if sum(map(len, got_a.values())) == len(part["A"]):
                    break
    seen = b"".join(got_a[k] for k in sorted(got_a))
    assert seen == part["A"]

    # The task keeps running without its client.
    assert pid is not None and live_members(pid)
    go1.touch()
    log = service.engine.log_path(task_id, Stream.STDOUT)
    assert await wait_until(lambda: log.stat().st_size == len(part["A"]) + len(part["B"]))

    # Client B picks up where A left: part B replayed from the log, part C live.
    async with ExecutorClient(service.url, service.token) as b:
        assert (await b.status(task_id))["status"] == "running"
        hb = await b.subscribe(task_id, from_offset=len(seen))
        assert hb.info["status"] == "running"
        go2.touch()
        got_b: list[tuple[int, bytes]] = []
        async for ev in hb.events():
            if ev["method"] == "process.output":
                got_b.append((ev["params"]["offset"], output_bytes(ev["params"])))
        done = await hb.wait(10)
        assert done["status"] == "completed" and done["stdout_bytes"] == len(full)
        # Contiguous from where A stopped, no gap, no overlap.
        pos = len(seen)
        for off, data in got_b:
            assert off == pos
            pos += len(data)
        assert seen + b"".join(d for _, d in got_b) == full
        assert await b.read_output(task_id) == full


async def test_subscribe_after_the_end_replays(client: ExecutorClient) -> None:
    h = await client.execute(
        py("import sys; sys.stdout.write('x' * 5000); print('E', file=sys.stderr)")
    )
    await h.wait(30)
    async with ExecutorClient(client.url, client.token) as other:
        hs = await other.subscribe(h.task_id, from_offset=1000, stderr_from_offset=0)
        assert hs.info["status"] == "completed" and hs.info["stdout_bytes"] == 5000
        events = [e async for e in hs.events()]
        assert events[-1]["method"] == "process.completed"
        outs = [e["params"] for e in events if e["method"] == "process.output"]
        stdout = b"".join(output_bytes(p) for p in outs if p["stream"] == "stdout")
        stderr = b"".join(output_bytes(p) for p in outs if p["stream"] == "stderr")
        assert stdout == b"x" * 4000 and stderr == b"E\n"
        # Without offsets: just the completion.
        async with ExecutorClient(client.url, client.token) as third:
            ht = await third.subscribe(h.task_id)
            assert [e["method"] async for e in ht.events()] == ["process.completed"]


async def test_replay_larger_than_the_queue_is_lossless(make_service: MakeService) -> None:
    """A replay bigger than the subscriber's budget is read back from the log, in order."""
    svc = await make_service(subscriber_queue_bytes=64 * 1024)
    async with ExecutorClient(svc.url, svc.token) as c:
        total = 3_000_000
        h = await c.execute(["sh", "-c", f"head -c {total} /dev/zero | tr '\\0' z"])
        await h.wait(30)
    async with ExecutorClient(svc.url, svc.token) as c2:
        hs = await c2.subscribe(h.task_id, from_offset=10)
        events = [e async for e in hs.events()]
    assert not [e for e in events if e["method"] == "process.dropped"]
    data = b""
    for e in events:
        if e["method"] == "process.output":
            assert e["params"]["offset"] == 10 + len(data)
            data += output_bytes(e["params"])
    assert data == b"z" * (total - 10)
    assert events[-1]["method"] == "process.completed"


async def test_unsubscribe_stops_the_stream(service: ExecutorService) -> None:
    async with raw_connect(service.url, service.token) as r:
        started = await r.result("execute", {"command": ["sleep", "300"]})
        tid = started["task_id"]
        res = await r.result("unsubscribe", {"task_id": tid})
        assert res == {"task_id": tid, "unsubscribed": True}
        assert (await r.result("unsubscribe", {"task_id": tid}))["unsubscribed"] is False
        r.notifications.clear()
        assert (await r.result("control", {"task_id": tid, "action": "CANCEL"}))["status"] == (
            "cancelled"
        )
        await r.result("ping")
        assert [n for n in r.notifications if n["params"].get("task_id") == tid] == []
        reply = await r.call("unsubscribe", {"task_id": "nope"})
        assert reply["error"]["code"] == -32001


async def test_tasks_keep_running_after_the_client_disconnects(
    service: ExecutorService, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    async with ExecutorClient(service.url, service.token) as c:
        h = await c.execute(py(f"{wait_file(go)}print('done')"))
        task_id, pid = h.task_id, h.pid
    assert await wait_until(lambda: service.health()["connections"] == 0)
    assert pid is not None and pid in live_members(pid)
    go.touch()
    async with ExecutorClient(service.url, service.token) as c:
        hs = await c.subscribe(task_id)
        done = await hs.wait(30)
        assert done["status"] == "completed"
        assert await c.read_output(task_id) == b"done\n"
    assert await wait_until(lambda: not live_members(pid))


async def test_subscribers_at_different_speeds_each_get_every_byte(
    make_service: MakeService, tmp_path: Path
) -> None:
    """One task, three connections at their own pace (one reads nothing until the task
    has ended): each gets the whole stream in order; the task waits for none of them."""
    svc = await make_service(subscriber_queue_bytes=256 * 1024)
    total = 12_000_000
    gate = tmp_path / "go"
    script = (
        f"{wait_file(gate)}import sys\n"
        f"sys.stdout.buffer.write(bytes(range(256)) * {total // 256})\n"
    )
    ended = asyncio.Event()
    async with ExecutorClient(svc.url, svc.token) as ctl:
        h = await ctl.execute(py(script), keep_events=False)

        async def reader(pause_every: int, pause: float, wait_for_end: bool) -> bytes:
            async with raw_connect(svc.url, svc.token, max_queue=1) as raw:
                await raw.result("subscribe", {"task_id": h.task_id, "from_offset": 0})
                if wait_for_end:
                    await ended.wait()
                got = bytearray()
                n = 0
                while True:
                    msg = await raw.recv(60)
                    p = msg.get("params", {})
                    assert msg.get("method") != "process.dropped", p
                    if msg.get("method") == "process.output" and p["stream"] == "stdout":
                        assert p["offset"] == len(got)
                        got += output_bytes(p)
                        n += 1
                        if pause and n % pause_every == 0:
                            await asyncio.sleep(pause)  # a slow consumer, on purpose
                    elif msg.get("method") == "process.completed":
                        return bytes(got)

        readers = [
            asyncio.create_task(reader(1, 0.0, False)),
            asyncio.create_task(reader(4, 0.01, False)),
            asyncio.create_task(reader(1, 0.0, True)),
        ]
        gate.touch()
        done = await h.wait(60)  # while the third connection has read nothing
        ended.set()
        assert done["status"] == "completed" and done["stdout_bytes"] == total
        results = await asyncio.wait_for(asyncio.gather(*readers), 120)
    expected = bytes(range(256)) * (total // 256)
    assert all(r == expected for r in results)


async def test_subscribe_reply_comes_before_what_it_reads(
    client: ExecutorClient, service: ExecutorService, tmp_path: Path
) -> None:
    """As for `execute`: a raw client learns it is subscribed before any byte arrives,
    even when the log already holds output to read back (and for a finished task)."""
    go = tmp_path / "go"
    h = await client.execute(py(f"print('x' * 300000, flush=True)\n{wait_file(go)}"))
    log = service.engine.log_path(h.task_id, Stream.STDOUT)
    assert await wait_until(lambda: log.exists() and log.stat().st_size == 300001)
    for _ in range(2):
        for _round in range(5):
            async with raw_connect(service.url, service.token) as raw:
                rid = 77
                await raw.send(
                    {
                        "jsonrpc": "2.0",
                        "id": rid,
                        "method": "subscribe",
                        "params": {"task_id": h.task_id, "from_offset": 0},
                    }
                )
                first = await raw.recv()
                assert first.get("id") == rid, f"a notification came first: {str(first)[:200]}"
                got = await raw.recv()
                assert got["method"] == "process.output" and got["params"]["offset"] == 0
        go.touch()
        await h.wait(30)
