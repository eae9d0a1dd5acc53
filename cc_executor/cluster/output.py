"""Each task stream's output in a Redis stream, written as it is read, readable by offset.

Entry ids are offsets: the chunk that starts at byte `o` of the task stream is entry
`<o>-1` with one field, `d`, its bytes. So a reader finds the chunk holding any offset
with one XREVRANGE, and retention is trimmed by offset (`XTRIM MINID <end - retention>`):
Redis holds at most `output_retention_bytes` of each task stream. The node's log file
stays the full local copy; older ranges are read from the node that ran the task.

`OutputStreams` is the owner's `OutputSink` (the engine hands it every chunk; one writer
task sends them, coalesced and pipelined, so the loop never waits on Redis) and every
node's reader of these streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from redis.exceptions import RedisError, ResponseError

from cc_executor.cluster import keys
from cc_executor.cluster.connection import RECONNECT_DELAY, Redis
from cc_executor.protocol import Stream

log = logging.getLogger(__name__)

ENTRY_BYTES = 1024 * 1024  # contiguous chunks are joined (or cut) into entries of this size
MIN_ENTRY_BYTES = 64 * 1024  # (smaller entries under a small retention: see entry_bytes)
PENDING_LIMIT = 64 * 1024 * 1024  # unsent bytes kept while Redis is slow or away
FINISH_WAIT_S = 2.0  # how long a finishing task waits for its last chunks to reach Redis


class OutputStreams:
    def __init__(self, redis: Redis, retention: int, expiry_s: int = 0) -> None:
        self.redis = redis
        self.retention = retention
        self.expiry_s = expiry_s  # a finished task's streams expire after this (0: never)
        self._finished: list[str] = []  # tasks whose streams are to get their expiry
        self.entry_bytes = entry_size(retention)
        # (task, stream) -> chunks not yet sent, as (offset, bytes), in order
        self._pending: dict[tuple[str, Stream], list[tuple[int, bytes]]] = defaultdict(list)
        self._pending_bytes = 0
        self._sent_to: dict[tuple[str, Stream], int] = {}  # end of what Redis holds (ours)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.dropped_bytes = 0  # not sent: Redis was away too long (the log file has them)

    # ------------------------------------------------------------ the owner's side

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
            self._writer = None

    def append(self, task_id: str, stream: Stream, offset: int, data: bytes) -> None:
        self._pending[(task_id, stream)].append((offset, data))
        self._pending_bytes += len(data)
        if self._pending_bytes > PENDING_LIMIT:
            self._shed()
        self._wake.set()

    def _shed(self) -> None:
        """Redis is not keeping up: forget the oldest unsent chunks (readers will find a
        gap there and ask the owner's log file)."""
        for chunks in self._pending.values():
            while chunks and self._pending_bytes > PENDING_LIMIT // 2:
                _, data = chunks.pop(0)
                self._pending_bytes -= len(data)
                self.dropped_bytes += len(data)

    async def finish(self, task_id: str) -> None:
        if self.expiry_s:
            self._finished.append(task_id)  # set by the writer, after the last chunks
            self._wake.set()
        if not any(k[0] == task_id and v for k, v in self._pending.items()):
            self._forget(task_id)
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(fut)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, FINISH_WAIT_S)
        self._forget(task_id)

    def _forget(self, task_id: str) -> None:
        for stream in Stream:
            self._sent_to.pop((task_id, stream), None)
            chunks = self._pending.pop((task_id, stream), None)
            if chunks:  # given up on (Redis away): the owner's log file still has them
                n = sum(len(d) for _, d in chunks)
                self._pending_bytes -= n
                self.dropped_bytes += n

    async def _write_loop(self) -> None:
        while True:
            if not any(self._pending.values()):
                self._wake.clear()
                self._resolve_waiters()
                if self._finished:
                    await self._expire_finished()
                    continue
                await self._wake.wait()
                continue
            batch = {k: v for k, v in self._pending.items() if v}
            for k in batch:
                self._pending[k] = []
            try:
                await self._send(batch)
            except (RedisError, OSError):
                for k, chunks in batch.items():  # back in front, in order
                    self._pending[k] = chunks + self._pending.get(k, [])
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            self._pending_bytes -= sum(len(d) for v in batch.values() for _, d in v)
            for k in [k for k, v in self._pending.items() if not v]:
                del self._pending[k]
            self._resolve_waiters()

    async def _expire_finished(self) -> None:
        """Give finished tasks' streams their expiry (their last chunks are sent)."""
        done, self._finished = self._finished, []
        pipe = self.redis.pipeline(transaction=False)
        for task_id in done:
            for stream in Stream:
                pipe.expire(keys.output(task_id, stream), self.expiry_s)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            self._finished[:0] = done  # Redis is away: again once it is back
            await asyncio.sleep(RECONNECT_DELAY)

    def _resolve_waiters(self) -> None:
        for task_id in list(self._waiters):
            if not any(k[0] == task_id and v for k, v in self._pending.items()):
                for fut in self._waiters.pop(task_id):
                    if not fut.done():
                        fut.set_result(None)

    async def _send(self, batch: dict[tuple[str, Stream], list[tuple[int, bytes]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for (task_id, stream), chunks in batch.items():
            key = keys.output(task_id, stream)
            end = 0
            for offset, data in _coalesce(chunks, self.entry_bytes):
                pipe.xadd(key, {"d": data}, id=f"{offset}-1")
                end = offset + len(data)
            if self.retention and end > self.retention:
                pipe.xtrim(key, minid=f"{end - self.retention}-0", approximate=False)
            self._sent_to[(task_id, stream)] = end
        for res in await pipe.execute(raise_on_error=False):
            # An id at or below the top: sent before, by a pipeline cut short. Harmless.
            if isinstance(res, Exception) and not isinstance(res, ResponseError):
                raise res

    # ------------------------------------------------------------ every reader's side

    async def read(self, task_id: str, stream: Stream, start: int, limit: int) -> tuple[bytes, int]:
        """(up to `limit` bytes from `start`, retained): the bytes stop at a gap. When
        Redis lacks `start` they are empty and `retained` is the first offset it holds
        (-1: none of this stream); otherwise `retained` is `start`."""
        key = keys.output(task_id, stream)
        count = limit // self.entry_bytes + 2  # entries may be smaller: then more batches
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrevrange(key, f"{start}-1", "-", count=1)  # the entry holding `start`
        pipe.xrange(key, f"{start}-2", "+", count=count)  # and those after it
        before, batch = await pipe.execute()
        parts: list[bytes] = []
        got = 0
        pos = -1
        entries = [*before, *batch]
        while entries:
            for entry_id, fields in entries:
                offset, data = entry_offset(entry_id), fields[b"d"]
                if pos == -1:
                    if not offset <= start < offset + len(data):
                        break  # no entry holds `start`: Redis lacks it
                    piece = data[start - offset : start - offset + limit]
                elif offset != pos:
                    pos = -2  # a gap: what follows is not contiguous
                    break
                else:
                    piece = data[: limit - got]
                pos = offset + len(data)
                parts.append(piece)
                got += len(piece)
                if got >= limit:
                    break
            if pos < 0 or got >= limit or len(batch) < count:
                break
            batch = await self.redis.xrange(key, f"({batch[-1][0].decode()}", "+", count=count)
            entries = batch
        if parts:
            return b"".join(parts), start
        first = await self.redis.xrange(key, "-", "+", count=1)
        return b"", entry_offset(first[0][0]) if first else -1

    async def tail_end(self, task_id: str, stream: Stream) -> tuple[int, bytes]:
        """(end offset, id of the last entry) of what Redis holds of a stream (0, 0-0)."""
        last = await self.redis.xrevrange(keys.output(task_id, stream), "+", "-", count=1)
        if not last:
            return 0, b"0-0"
        entry_id, fields = last[0]
        return entry_offset(entry_id) + len(fields[b"d"]), entry_id


def entry_size(retention: int) -> int:
    """Trimming drops whole entries: with entries of at most 1/16 of the retention, Redis
    keeps at least 15/16 of it (and never more than all of it)."""
    return max(MIN_ENTRY_BYTES, min(ENTRY_BYTES, retention // 16))


def entry_offset(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _coalesce(chunks: list[tuple[int, bytes]], most: int) -> list[tuple[int, bytes]]:
    """Contiguous chunks as entries of at most `most` bytes (joined, or cut)."""
    out: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    start = size = 0
    for offset, data in chunks:
        if parts and offset != start + size:
            out.append((start, b"".join(parts)))
            parts = []
        if not parts:
            start, size = offset, 0
        view = memoryview(data)
        while view:
            room = most - size
            piece = view[:room]
            parts.append(bytes(piece))
            size += len(piece)
            view = view[room:]
            if size >= most:
                out.append((start, b"".join(parts)))
                parts = []
                start, size = start + size, 0
    if parts:
        out.append((start, b"".join(parts)))
    return out
