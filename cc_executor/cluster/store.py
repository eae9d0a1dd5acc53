"""Task records in Redis: the cluster's one view of every task (a `TaskStore`).

As with SQLite, the event loop never waits on a write: `save` keeps the latest snapshot
of each record (a later save of the same task replaces an unwritten earlier one) and one
writer task sends them, pipelined, in the order they came. While Redis is unreachable the
snapshots wait and are sent once it is back: the records catch up. Reads see unwritten
snapshots first, so a caller reads its own writes.

A record is one hash (`keys.task`): s=status, n=node, d=the record as JSON. The save is a
Lua script so that a final status is final cluster-wide: once a task is `lost` (declared
by a survivor) or completed, no late write from anyone makes it running again, and a
`queued` snapshot never overwrites a record that already moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from cc_executor.cluster import keys
from cc_executor.cluster.connection import RECONNECT_DELAY, Redis
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import record_to_row, row_to_record
from cc_executor.protocol import FINAL_STATUSES, TaskStatus

log = logging.getLogger(__name__)

_FINAL = " ".join(sorted(str(s) for s in FINAL_STATUSES))

# KEYS: task hash, TASKS, UNFINISHED, node_tasks(node)
# ARGV: task_id, created_at, status, record JSON, node ('' for none), final ('1'/'0')
SAVE_LUA = f"""
local final = {{}}
for s in string.gmatch("{_FINAL}", "%S+") do final[s] = true end
local cur = redis.call('HGET', KEYS[1], 's')
if cur then
  if final[cur] then return 0 end
  if ARGV[3] == 'queued' then return 0 end
end
redis.call('HSET', KEYS[1], 's', ARGV[3], 'd', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'n', ARGV[5]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[6] == '1' then
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[1], 'q')
  if ARGV[5] ~= '' then redis.call('SREM', KEYS[4], ARGV[1]) end
else
  redis.call('SADD', KEYS[3], ARGV[1])
  if ARGV[5] ~= '' then redis.call('SADD', KEYS[4], ARGV[1]) end
end
return 1
"""

_VISIBLE_WAIT_S = 1.0  # how long an `execute` reply waits for Redis to hold its record
_FLUSH_TIMEOUT = 5.0  # close() waits this long for Redis to take the last snapshots


class _Row:
    __slots__ = ("blob", "created_at", "final", "node", "status", "task_id")

    def __init__(self, rec: TaskRecord) -> None:
        self.task_id, self.created_at, self.status, self.blob = record_to_row(rec)
        self.node = rec.node or ""
        self.final = rec.status.is_final


class RedisTaskStore:
    """The cluster's task records; see the module docstring."""

    shared = True  # every node's records: recovery touches only this node's

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._save = redis.register_script(SAVE_LUA)  # its sha, for pipelined EVALSHA
        self._pending: dict[str, _Row] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.write_errors = 0
        self._visible: dict[str, asyncio.Future[None]] = {}  # waiters of `visible`

    async def open(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def save(self, record: TaskRecord) -> None:
        row = _Row(record)
        self._pending.pop(row.task_id, None)  # to the back: writes keep their order
        self._pending[row.task_id] = row
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._pending.values())
            try:
                await self.write_rows(batch)
            except (RedisError, OSError) as exc:
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 100 == 0:
                    log.warning("task records wait for Redis (%s)", type(exc).__name__)
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            for row in batch:
                if self._pending.get(row.task_id) is row:  # not replaced meanwhile
                    del self._pending[row.task_id]
                waiter = self._visible.pop(row.task_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def write_rows(self, rows: Iterable[_Row]) -> list[Any]:
        # EVALSHA straight into the pipeline: a Script object in a pipeline asks Redis
        # SCRIPT EXISTS first, a round trip per batch. Redis restarted: load it again.
        rows = list(rows)
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for r in rows:
                pipe.evalsha(
                    self._save.sha,
                    4,
                    keys.task(r.task_id),
                    keys.TASKS,
                    keys.UNFINISHED,
                    keys.node_tasks(r.node),
                    r.task_id,
                    r.created_at,
                    r.status,
                    r.blob,
                    r.node,
                    "1" if r.final else "0",
                )
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(SAVE_LUA)
        raise AssertionError("unreachable")

    async def save_now(self, record: TaskRecord) -> bool:
        """Write one record before returning; False if the store kept an earlier final one."""
        self._pending.pop(record.task_id, None)
        (written,) = await self.write_rows([_Row(record)])
        return bool(written)

    async def get(self, task_id: str) -> TaskRecord | None:
        row = self._pending.get(task_id)
        if row is not None:
            return row_to_record(row.blob)
        blob = await self.redis.hget(keys.task(task_id), "d")
        return row_to_record(blob) if blob else None

    async def get_many(self, task_ids: list[str]) -> list[TaskRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for tid in task_ids:
            pipe.hget(keys.task(tid), "d")
        out = []
        for tid, blob in zip(task_ids, await pipe.execute(), strict=True):
            row = self._pending.get(tid)
            if row is not None:
                out.append(row_to_record(row.blob))
            elif blob:
                out.append(row_to_record(blob))
        return out

    async def list(
        self, limit: int = 1000, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]:
        if statuses is None:
            ids = [i.decode() for i in await self.redis.zrevrange(keys.TASKS, 0, limit - 1)]
        else:
            ids = [i.decode() for i in await self.redis.smembers(keys.UNFINISHED)]
        known = set(ids)
        ids.extend(tid for tid in self._pending if tid not in known)
        recs = await self.get_many(ids)
        if statuses is not None:
            want = set(statuses)
            recs = [r for r in recs if r.status in want]
        recs.sort(key=lambda r: r.created_at, reverse=True)
        return recs[:limit]

    async def visible(self, task_id: str) -> None:
        if task_id not in self._pending:
            return
        waiter = self._visible.get(task_id)
        if waiter is None:
            waiter = self._visible[task_id] = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):  # Redis away: the record follows later
            await asyncio.wait_for(asyncio.shield(waiter), _VISIBLE_WAIT_S)

    async def flush(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), _FLUSH_TIMEOUT)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
            self._writer = None
        if self._pending:
            log.warning("%d task records could not be written to Redis", len(self._pending))

    def resave(self, records: Iterable[TaskRecord]) -> None:
        """Write these records again (Redis lost its data): they catch up."""
        for rec in records:
            self.save(rec)
