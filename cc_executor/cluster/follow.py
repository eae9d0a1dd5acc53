"""Subscribers on this node of tasks that run on another: cursors into Redis streams.

Exactly the cursor model of engine/events.py, over a `RemoteLog` whose reads come from
the task stream's Redis stream (`aread`). One tailer per node reads (XREAD, blocking) the
streams of every task followed here and offers each new chunk to the subscribers as a
live event, as the owner's engine does with its pipes; a cursor that fell behind reads
back from Redis at its client's pace, so a slow client loses nothing. Ranges Redis no
longer holds are read from the owner (`output` over RPC); if it is gone, the cursor gets
`process.dropped` for them.

Control events come from the bus (cluster/bus.py). `process.completed` carries the final
byte counts: from then on each log's end is known, the cursors read whatever the tailer
had not yet seen from Redis, and the completion follows their last byte (as it does for
a local task). Completions missed (the task ended before the follow began, or the bus
dropped them during a Redis outage) are found by re-reading the followed records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis, forever
from cc_executor.cluster.output import OutputStreams, entry_offset
from cc_executor.cluster.store import RedisTaskStore
from cc_executor.engine.events import Event, OutputEvent, Subscriber
from cc_executor.engine.output import OutputLog
from cc_executor.protocol import Method, Notification, ProtocolError, Stream

log = logging.getLogger(__name__)

_BLOCK_MS = 1000
_TAIL_ENTRIES = 4  # per stream per read
_RECHECK_S = 2.0  # how often followed records are re-read (a completion the bus lost)

# owner node, method, params -> result (cluster/rpc.py)
Forward = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class RemoteLog(OutputLog):
    """One stream of a task on another node, as a cursor sees it: its end is what the
    tailer has seen in Redis (or, once the task completed, its final size)."""

    def __init__(self, follower: Followed, stream: Stream) -> None:
        super().__init__(Path(keys.output(follower.task_id, stream)), None)  # a name only
        self.follower = follower
        self.stream = stream
        self.closed = False
        self.raw_end = 0  # bytes seen in Redis (notify_end holds back a split character)
        self.tail_id = b"0-0"

    def read(self, start: int, limit: int) -> bytes | None:
        raise RuntimeError("a remote log is read with aread")

    async def aread(self, start: int, limit: int) -> bytes | None:
        return await self.follower.registry.read(self.follower, self, start, limit)

    def seen(self, offset: int, data: bytes) -> tuple[int, bytes] | None:
        """The tailer read a chunk from Redis: what to offer live, like OutputLog.append."""
        self.raw_end = offset + len(data)
        notify = self._whole_chars(data)
        self.offset = self.notify_end
        return notify

    def ended(self, size: int) -> None:
        """The task completed with `size` bytes here: the end is known, no more live."""
        self._pending = b""
        self.notify_end = self.offset = max(size, 0)
        self.closed = True


class Followed:
    """A remote task followed by some of this node's subscribers."""

    def __init__(self, registry: Followers, task_id: str) -> None:
        self.registry = registry
        self.task_id = task_id
        self.subscribers: set[Subscriber] = set()
        self.logs = {s: RemoteLog(self, s) for s in Stream}
        self.owner: str | None = None
        self.completed = False
        self.final: dict[str, Any] | None = None  # the completion's params, once known
        self.started_to: set[Subscriber] = set()  # those given process.started
        self.tail = True  # its streams are read live (a queued task's only once it starts)
        self.ready = asyncio.Event()  # the tail positions are known


class Followers:
    def __init__(
        self,
        redis: Redis,
        node: str,
        outputs: OutputStreams,
        store: RedisTaskStore,
        forward: Forward,
    ) -> None:
        self.redis = redis
        self.node = node
        self.outputs = outputs
        self.store = store
        self.forward = forward
        self.tasks: dict[str, Followed] = {}
        self._wake_key = f"{keys.PREFIX}wake:{node}"
        self._background: set[asyncio.Task[Any]] = set()
        self._wake_pending = False

    # ------------------------------------------------------------ following

    async def follow(
        self,
        task_id: str,
        subscriber: Subscriber,
        offsets: Mapping[Stream, int | None],
    ) -> None:
        """`subscriber` follows a remote task from these offsets (None: from the live end;
        a stream not named: live output of it from whenever it is first seen)."""
        f = self.tasks.get(task_id)
        if f is None:
            f = self.tasks[task_id] = Followed(self, task_id)
            try:
                for stream, rlog in f.logs.items():
                    end, last = await self.outputs.tail_end(task_id, stream)
                    if not f.completed:
                        rlog.raw_end = rlog.notify_end = rlog.offset = end
                        rlog.tail_id = last
            finally:
                f.ready.set()
            self._wake_tailer()
        await f.ready.wait()
        self._attach(f, subscriber, offsets)
        self._spawn(self._check_done(f))

    def _attach(self, f: Followed, sub: Subscriber, offsets: Mapping[Stream, int | None]) -> None:
        for stream, pos in offsets.items():
            sub.follow(f.task_id, stream, f.logs[stream], pos)
        f.subscribers.add(sub)
        if f.final is not None:  # it completed while we got ready
            for stream in Stream:
                sub.fall_behind(f.task_id, stream)
            sub.push(Event(Notification.COMPLETED, f.final))

    def follow_from_start(self, task_id: str, subscribers: Iterable[Subscriber]) -> None:
        """A task this node queued for the cluster: its creator's subscriber gets all of it
        (nothing is in Redis yet, so the tail starts at the beginning)."""
        subs = list(subscribers)
        if not subs:
            return
        f = self.tasks.get(task_id)
        if f is None:
            f = self.tasks[task_id] = Followed(self, task_id)
            f.tail = False  # until it starts somewhere (process.started, or a recheck)
            f.ready.set()
        for sub in subs:
            self._attach(f, sub, {Stream.STDOUT: 0, Stream.STDERR: 0})

    def _wake_tailer(self) -> None:
        """The set of streams to tail changed: end the tailer's blocking read now."""
        if not self._wake_pending:
            self._wake_pending = True
            self._spawn(self.redis.xadd(self._wake_key, {"w": b"1"}, maxlen=16))

    def announce_started(self, params: dict[str, Any]) -> None:
        """A task that started before its caller followed it (forwarded to its node and
        started there at once): `process.started` as its caller would have had it."""
        f = self.tasks.get(params["task_id"])
        if f is not None:
            self._started(f, params)

    @staticmethod
    def _started(f: Followed, params: dict[str, Any]) -> None:
        """`process.started` to each subscriber once (the bus and the forwarded reply may
        both say it, in either order)."""
        ev = Event(Notification.STARTED, params)
        for sub in tuple(f.subscribers - f.started_to):
            f.started_to.add(sub)
            sub.push(ev)

    def adopt(self, task_id: str) -> list[Subscriber]:
        """This node takes a task it was following (it queued it): its subscribers become
        the running task's own, as on a single host. Nothing has been delivered yet."""
        f = self.tasks.pop(task_id, None)
        if f is None:
            return []
        subs = list(f.subscribers)
        f.subscribers.clear()  # a tail read or a recheck still under way finds nobody
        f.completed = True
        for rlog in f.logs.values():
            rlog.closed = True
        for sub in subs:
            sub.forget(task_id)
        return subs

    def unfollow(self, task_id: str, subscriber: Subscriber) -> bool:
        f = self.tasks.get(task_id)
        if f is None or subscriber not in f.subscribers:
            return False
        f.subscribers.discard(subscriber)
        subscriber.forget(task_id)
        if not f.subscribers:
            self.tasks.pop(task_id, None)
        return True

    def detach(self, subscriber: Subscriber) -> None:
        for task_id in [t for t, f in self.tasks.items() if subscriber in f.subscribers]:
            self.unfollow(task_id, subscriber)

    # ------------------------------------------------------------ events and completion

    def on_event(self, method: str, params: dict[str, Any], node: str | None) -> None:
        """A task's control event from the bus (published by `node`)."""
        f = self.tasks.get(params.get("task_id", ""))
        if f is None or f.completed:
            return
        if node:
            f.owner = node
        if method == Notification.STARTED:
            if not f.tail:
                f.tail = True
                self._wake_tailer()
            self._started(f, params)
            return
        if method == Notification.COMPLETED:
            self._complete(f, params)
            return
        ev = Event(method, params)
        for sub in tuple(f.subscribers):
            sub.push(ev)

    def _complete(self, f: Followed, params: dict[str, Any]) -> None:
        f.completed = True
        f.final = params
        if self.tasks.get(f.task_id) is f:
            del self.tasks[f.task_id]
        for stream, rlog in f.logs.items():
            rlog.ended(int(params.get(f"{stream.value}_bytes") or 0))
        ev = Event(Notification.COMPLETED, params)
        for sub in tuple(f.subscribers):
            for stream in Stream:
                sub.fall_behind(f.task_id, stream)  # read the rest from Redis, then this
            sub.push(ev)

    async def _check_done(self, f: Followed) -> None:
        rec = await self.store.get(f.task_id)
        if rec is not None:
            f.owner = rec.node or f.owner
            if rec.status.is_final and not f.completed:
                self._complete(f, rec.completed_params())

    async def recheck(self) -> None:
        """Re-read every followed record: complete those whose completion we missed."""
        pending = [f for f in self.tasks.values() if not f.completed]
        if not pending:
            return
        recs = await self.store.get_many([f.task_id for f in pending])
        by_id = {r.task_id: r for r in recs}
        for f in pending:
            rec = by_id.get(f.task_id)
            if rec is not None:
                f.owner = rec.node or f.owner
                if rec.status.is_final and not f.completed:
                    self._complete(f, rec.completed_params())
                elif rec.node is not None and not f.tail:  # its start went unheard
                    f.tail = True
                    self._wake_tailer()

    # ------------------------------------------------------------ the tailer

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.gather(
            forever("output tailer", self._tail_step, stopping),
            forever("follow recheck", lambda: self._recheck_step(stopping), stopping),
        )

    async def _recheck_step(self, stopping: asyncio.Event) -> None:
        await self.recheck()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), _RECHECK_S)

    async def _tail_step(self) -> None:
        self._wake_pending = False
        streams: dict[Any, Any] = {self._wake_key: "$"}
        logs: dict[bytes, RemoteLog] = {}
        for f in list(self.tasks.values()):
            if f.completed or not f.tail or not f.ready.is_set():
                continue
            for stream, rlog in f.logs.items():
                key = keys.output(f.task_id, stream)
                streams[key] = rlog.tail_id
                logs[key.encode()] = rlog
        # A few entries at a time: what a subscriber's queue cannot take now it reads back
        # from Redis later anyway, so there is no point in fetching much more than that.
        res = await self.redis.xread(streams, count=_TAIL_ENTRIES, block=_BLOCK_MS)
        for key, entries in res or ():
            target = logs.get(key)
            if target is None or target.closed:
                continue
            for entry_id, fields in entries:
                self._offer(target, entry_offset(entry_id), fields[b"d"])
                target.tail_id = entry_id

    def _offer(self, rlog: RemoteLog, offset: int, data: bytes) -> None:
        f = rlog.follower
        if offset != rlog.raw_end:
            # A gap (trimmed before we read it, or never sent): the cursors read it back
            # (from the owner) rather than be handed a chunk that does not follow theirs.
            rlog.raw_end = offset + len(data)
            rlog._pending = b""
            rlog.notify_end = rlog.offset = rlog.raw_end
            for sub in tuple(f.subscribers):
                sub.fall_behind(f.task_id, rlog.stream)
            return
        chunk = rlog.seen(offset, data)
        if chunk is None or not f.subscribers:
            return
        ev = OutputEvent(f.task_id, rlog.stream, chunk[0], chunk[1])
        for sub in tuple(f.subscribers):
            if sub.closed:
                f.subscribers.discard(sub)
            else:
                sub.offer(ev, rlog)

    # ------------------------------------------------------------ reads

    async def read(self, f: Followed, rlog: RemoteLog, start: int, limit: int) -> bytes | None:
        """Bytes of a remote stream from Redis, else from its owner; None if nobody has them."""
        try:
            data, lo = await self.outputs.read(f.task_id, rlog.stream, start, limit)
        except Exception:
            log.exception("reading output of %s from Redis", f.task_id)
            data, lo = b"", -1
        if data:
            return data
        got = await self.read_from_owner(f.task_id, f.owner, rlog.stream, start, limit)
        if got is None:
            # Nobody has [start, first retained): a cursor skips to what Redis still holds.
            rlog.failed_at = start
            rlog._base = lo if lo > start else rlog.notify_end
        return got

    async def read_from_owner(
        self, task_id: str, owner: str | None, stream: Stream, start: int, limit: int
    ) -> bytes | None:
        if owner is None:
            rec = await self.store.get(task_id)
            owner = rec.node if rec is not None else None
        if owner is None:
            return None
        try:
            res = await self.forward(
                owner,
                str(Method.OUTPUT),
                {"task_id": task_id, "stream": stream.value, "offset": start, "limit": limit},
            )
        except ProtocolError:
            return None
        data = res.get("data", "")
        return base64.b64decode(data) if res.get("encoding") == "base64" else data.encode()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        t.add_done_callback(lambda f: f.cancelled() or f.exception())
