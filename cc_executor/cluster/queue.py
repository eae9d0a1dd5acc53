"""The cluster-wide queue: one FIFO in Redis, taken from by whichever node has a free slot.

The queue is a Redis list of task ids (`keys.QUEUE`); each task's hash holds its record
and its request (`q`: method and params), so the node that takes it builds the spec
itself, with its own allow-list, environment and paths. Taking is reliable: an id moves
(atomically) from the queue to the taker's `taken` list; claiming it (just before the
spawn) sets the task's node and drops it from `taken`. A node that dies leaves in
`taken` only what it had not claimed: a survivor puts those back at the front of the
queue (cluster/liveness.py); a claimed task is never re-queued, so nothing runs twice.

A task with no request (a session's turn, built by this node's session manager) or one
pinned to this node waits on this node alone, as on a single host (`Admission.WAIT`),
with its hash naming the node so the cluster can route a cancel to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis, forever
from cc_executor.engine.queue import Admission
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import record_to_row, row_to_record
from cc_executor.engine.task import RunningTask
from cc_executor.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """The request that made a task: enough for any node to build its spec again."""

    method: str
    params: dict[str, Any]
    pinned: bool = False  # `node` named this node: it may run nowhere else


REQUEST: contextvars.ContextVar[QueuedRequest | None] = contextvars.ContextVar(
    "cc_executor_cluster_request", default=None
)
"""Set by the cluster's `execute` routes around the engine call (cluster/routing.py)."""


# KEYS: task hash, TASKS, UNFINISHED, QUEUE, QUEUED_COUNT
# ARGV: task_id, created_at, record JSON, request JSON, max_queued
_ENQUEUE = """
local n = tonumber(redis.call('GET', KEYS[5]) or '0')
if n >= tonumber(ARGV[5]) then return {0, n} end
redis.call('HSET', KEYS[1], 's', 'queued', 'd', ARGV[3], 'q', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[1])
redis.call('INCR', KEYS[5])
redis.call('PUBLISH', 'cce:queue-wake', ARGV[1])
return {1, n + 1}
"""

# KEYS: QUEUE, taken(node); ARGV: how many
_TAKE = """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local id = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
  if not id then break end
  out[#out + 1] = id
end
return out
"""

# KEYS: task hash, taken(node), QUEUED_COUNT, node_tasks(node); ARGV: task_id, node
_CLAIM = """
redis.call('LREM', KEYS[2], 1, ARGV[1])
local s = redis.call('HGET', KEYS[1], 's')
local n = redis.call('HGET', KEYS[1], 'n')
if s ~= 'queued' or (n and n ~= '') then return 0 end
redis.call('HSET', KEYS[1], 'n', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('DECR', KEYS[3])
return 1
"""

# KEYS: task hash, QUEUE, QUEUED_COUNT, UNFINISHED; ARGV: task_id, final record JSON, status
_CANCEL = """
local s = redis.call('HGET', KEYS[1], 's')
local n = redis.call('HGET', KEYS[1], 'n')
if s ~= 'queued' or (n and n ~= '') then return {0, s or '', n or ''} end
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('HSET', KEYS[1], 's', ARGV[3], 'd', ARGV[2])
redis.call('HDEL', KEYS[1], 'q')
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('DECR', KEYS[3])
return {1, '', ''}
"""

# KEYS: taken(node), QUEUE; requeue what a node took but never claimed, at the front
_REQUEUE = """
local back = {}
while true do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  local h = 'cce:task:' .. id
  local owner = redis.call('HGET', h, 'n')
  if redis.call('HGET', h, 's') == 'queued' and (not owner or owner == '') then
    back[#back + 1] = id
  end
end
for i = #back, 1, -1 do redis.call('RPUSH', KEYS[2], back[i]) end
if #back > 0 then redis.call('PUBLISH', 'cce:queue-wake', 'requeued') end
return #back
"""

_CHECK_MARGIN = 64  # queued tasks under the limit below which no early check asks Redis
_POLL_S = 1.0  # the taker looks at the queue at least this often (a missed wake-up)

Starter = Callable[[str, TaskRecord, dict[str, Any]], Awaitable[None]]


class ClusterQueue:
    """A `TaskQueue` for one node of a cluster: see the module docstring."""

    shared = True

    def __init__(self, redis: Redis, node: str, max_running: int, max_queued: int) -> None:
        self.redis = redis
        self.node = node
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self.cluster_queued = 0  # the last count seen (stats); Redis holds the real one
        self._waiting: deque[RunningTask] = deque()  # waiting on this node alone
        self._enqueue = redis.register_script(_ENQUEUE)
        self._take = redis.register_script(_TAKE)
        self._claim = redis.register_script(_CLAIM)
        self._cancel = redis.register_script(_CANCEL)
        self._requeue = redis.register_script(_REQUEUE)
        self._wake = asyncio.Event()
        self.on_shared: Callable[[RunningTask], None] | None = None  # handed to the cluster
        self.starter: Starter | None = None  # runs what this node takes (ClusterNode)
        self.accepting: Callable[[], bool] = lambda: True  # False: the node is closing

    # ------------------------------------------------------------ the engine's side

    async def check_capacity(self) -> None:
        if self.running < self.max_running and not self._waiting:
            return
        if self.cluster_queued < self.max_queued - _CHECK_MARGIN:
            return  # far from the limit (as last seen): the enqueue itself enforces it
        queued = int(await self.redis.get(keys.QUEUED_COUNT) or 0)
        self.cluster_queued = queued
        if queued >= self.max_queued:
            raise self._full(queued)

    def _full(self, queued: int) -> ProtocolError:
        return ProtocolError(
            ErrorCode.CAPACITY_EXCEEDED,
            f"{queued} tasks queued in the cluster: at capacity",
            {"max_concurrent_tasks": self.max_running, "max_queued": self.max_queued},
        )

    async def admit(self, task: RunningTask) -> Admission:
        req = REQUEST.get()
        if self.running < self.max_running and not self._waiting:
            self.running += 1  # reserved before the await: no two admits share a slot
            if req is None or req.pinned or not await self.redis.llen(keys.QUEUE):
                return Admission.START
            self.running -= 1  # others wait before it: first come, first served
        if req is None or req.pinned:
            self._waiting.append(task)
            await self.redis.hset(keys.task(task.task_id), "n", self.node)
            await self.redis.sadd(keys.node_tasks(self.node), task.task_id)
            return Admission.WAIT
        _, _, _, blob = record_to_row(task.record)
        request = orjson.dumps({"method": req.method, "params": req.params})
        ok, queued = await self._enqueue(
            keys=[
                keys.task(task.task_id),
                keys.TASKS,
                keys.UNFINISHED,
                keys.QUEUE,
                keys.QUEUED_COUNT,
            ],
            args=[task.task_id, task.record.created_at, blob, request, self.max_queued],
        )
        self.cluster_queued = int(queued)
        if not ok:
            raise self._full(int(queued))
        if self.on_shared is not None:
            self.on_shared(task)
        return Admission.SHARED

    def release(self) -> None:
        self.running -= 1
        self._wake.set()

    def next_startable(self) -> RunningTask | None:
        if self._waiting and self.running < self.max_running:
            self.running += 1
            return self._waiting.popleft()
        return None

    def remove(self, task: RunningTask) -> bool:
        with contextlib.suppress(ValueError):
            self._waiting.remove(task)
            return True
        return False

    def __len__(self) -> int:
        return len(self._waiting) + self.cluster_queued

    # ------------------------------------------------------------ the cluster's side

    def wake(self) -> None:
        """Work was queued somewhere (the bus told us): look for it now."""
        self._wake.set()

    async def cancel_queued(self, record: TaskRecord) -> tuple[bool, str]:
        """Take a task out of the shared queue as `record` (final) says. Returns (done,
        owner): owner is the node that already claimed it (route the cancel there)."""
        _, _, status, blob = record_to_row(record)
        done, _, owner = await self._cancel(
            keys=[keys.task(record.task_id), keys.QUEUE, keys.QUEUED_COUNT, keys.UNFINISHED],
            args=[record.task_id, blob, status],
        )
        return bool(done), owner.decode() if isinstance(owner, bytes) else str(owner)

    async def requeue_taken(self, node: str) -> int:
        """Put back at the front of the queue what `node` took and never claimed."""
        return int(await self._requeue(keys=[keys.taken(node), keys.QUEUE]))

    async def run_taker(self, stopping: asyncio.Event) -> None:
        """Take work while this node has free slots, until `stopping`."""
        await forever("queue taker", lambda: self._take_step(stopping), stopping)

    async def _take_step(self, stopping: asyncio.Event) -> None:
        self._wake.clear()
        free = self.max_running - self.running - len(self._waiting)
        if free > 0 and self.accepting():
            ids = [
                i.decode()
                for i in await self._take(keys=[keys.QUEUE, keys.taken(self.node)], args=[free])
            ]
            if ids:
                await self._claim_and_start(ids)
                return  # look again at once: more may be waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), _POLL_S)

    async def _claim_and_start(self, ids: list[str]) -> None:
        """Claim what was taken, in one round trip for all, and start it all at once: a
        node with 40 free slots fills them in one go, not one task after another."""
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), ["d", "q"])
            await self._claim(  # on a pipeline: queued, sent with the rest
                keys=[
                    keys.task(task_id),
                    keys.taken(self.node),
                    keys.QUEUED_COUNT,
                    keys.node_tasks(self.node),
                ],
                args=[task_id, self.node],
                client=pipe,
            )
        replies = await pipe.execute()
        starts = []
        assert self.starter is not None
        for (blob, request), claimed in zip(replies[::2], replies[1::2], strict=True):
            if not claimed or blob is None or request is None:
                continue  # cancelled meanwhile, or another node has it
            self.running += 1
            req = orjson.loads(request)
            starts.append(self.starter(req["method"], row_to_record(blob), req["params"]))
        for result in await asyncio.gather(*starts, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("a taken task could not be started: %s", result, exc_info=result)
