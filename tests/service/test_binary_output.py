"""Binary output frames (`/ws?output=binary`): each chunk's bytes as the process wrote them."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.protocol import Notification, split_binary_output
from cc_executor.server import ExecutorService
from tests.support import ServiceProcess

from .conftest import raw_connect

# Text split anywhere, invalid UTF-8, NULs: a binary frame carries all of it unchanged.
MIXED = ("aé€😀\n" * 4000).encode() + bytes(range(256)) * 64 + b"\xff\xfe\x00\x80"


def is_output(ev: dict[str, Any]) -> bool:
    return bool(ev["method"] == Notification.OUTPUT)


def writer(tmp_path: Path, data: bytes, chunk: int) -> list[str]:
    """A command that writes `data` to stdout in writes of `chunk` bytes."""
    src = tmp_path / "printed"
    src.write_bytes(data)
    code = (
        "import sys\n"
        f"data = open({str(src)!r}, 'rb').read()\n"
        f"for i in range(0, len(data), {chunk}):\n"
        f"    sys.stdout.buffer.write(data[i:i + {chunk}]); sys.stdout.flush()\n"
    )
    return [sys.executable, "-c", code]


async def test_the_wire_form_is_json_head_newline_bytes(
    service: ExecutorService, tmp_path: Path
) -> None:
    url = service.url + "?output=binary"
    async with raw_connect(url, service.token) as r:
        await r.send(
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "execute",
                    "params": {"command": writer(tmp_path, MIXED, 1001)},
                }
            )
        )
        got = bytearray()
        texts: list[dict[str, object]] = []
        while True:
            msg = await r.ws.recv()
            if isinstance(msg, bytes):
                head, data = split_binary_output(msg)
                note = orjson.loads(head)
                assert note["method"] == Notification.OUTPUT
                assert set(note["params"]) == {"task_id", "stream", "offset"}
                assert note["params"]["offset"] == len(got)  # in order, no gap
                got += data
                continue
            texts.append(orjson.loads(msg))  # replies and control events stay text
            if texts[-1].get("method") == Notification.COMPLETED:
                break
    assert bytes(got) == MIXED
    assert texts[0]["id"] == 1 and "result" in texts[0]
    assert [t.get("method") for t in texts[1:]] == [Notification.STARTED, Notification.COMPLETED]


async def test_a_connection_without_the_query_gets_text(service: ExecutorService) -> None:
    async with raw_connect(service.url, service.token) as r:
        await r.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "execute",
                "params": {"command": ["printf", "hi"]},
            }
        )
        frames = []
        while not frames or frames[-1].get("method") != Notification.COMPLETED:
            msg = await r.ws.recv()
            assert isinstance(msg, str)
            frames.append(orjson.loads(msg))
    outputs = [f["params"] for f in frames if f.get("method") == Notification.OUTPUT]
    assert outputs == [
        {"task_id": frames[0]["result"]["task_id"], "stream": "stdout", "offset": 0, "data": "hi"}
    ]


async def test_client_gets_bytes_and_a_text_client_the_same_bytes(
    client: ExecutorClient, text_client: ExecutorClient, tmp_path: Path
) -> None:
    h = await client.execute(writer(tmp_path, MIXED, 777))
    seen = await text_client.subscribe(h.task_id, from_offset=0)
    by_binary = [ev["params"]["data"] async for ev in h.events() if is_output(ev)]
    by_text = [output_bytes(ev["params"]) async for ev in seen.events() if is_output(ev)]
    assert all(isinstance(d, bytes) for d in by_binary)
    by_binary, by_text = b"".join(by_binary), b"".join(by_text)
    assert by_binary == MIXED and by_text == MIXED


async def test_a_large_output_arrives_whole_in_binary_frames(client: ExecutorClient) -> None:
    n = 64 * 1024 * 1024
    h = await client.execute(["sh", "-c", f"head -c {n} /dev/urandom | tee /dev/stderr"])
    digest = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
    pos = {"stdout": 0, "stderr": 0}
    async for ev in h.events():
        if ev["method"] == Notification.OUTPUT:
            p = ev["params"]
            assert isinstance(p["data"], bytes) and p["offset"] == pos[p["stream"]]
            pos[p["stream"]] += len(p["data"])
            digest[p["stream"]].update(p["data"])
    assert pos == {"stdout": n, "stderr": n}
    assert digest["stdout"].digest() == digest["stderr"].digest()


async def test_a_bulk_stream_is_read_in_large_chunks(tmp_path: Path) -> None:
    """Past its first 4 MiB a stream the pipe gives in small reads waits a moment between
    reads (engine/task.py, BULK_AFTER): a frame each 4-64 KiB was a wake-up each. The
    service runs as its own process, where it reads faster than one sharing our loop."""
    n = 96 * 1024 * 1024
    svc = ServiceProcess(tmp_path / "data")
    await svc.start()
    try:
        async with ExecutorClient(svc.url, svc.token) as client:
            h = await client.execute(["sh", "-c", f"head -c {n} /dev/zero | tr '\\0' y"])
            sizes = [len(ev["params"]["data"]) async for ev in h.events() if is_output(ev)]
    finally:
        await svc.stop_async()
    assert sum(sizes) == n
    bulk = sizes[len(sizes) // 4 :]  # the stream's first 4 MiB is read as it comes
    assert sorted(bulk)[len(bulk) // 2] >= 128 * 1024, f"{len(sizes)} frames for {n} bytes"
