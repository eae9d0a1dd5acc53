"""JSON-RPC calls forwarded to the node that owns a task or a session, over Redis.

Each node pops calls from its inbox list (`keys.rpc_inbox`) and runs them through the
same ROUTES as a WebSocket frame, with a connection context of its own; the reply goes
to a list named for the call, which the caller pops with a timeout. While it waits, the
caller checks the callee's heartbeat: a call to a node that is gone fails at once with
an error naming that node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from cc_executor import jsonrpc
from cc_executor.cluster import keys
from cc_executor.cluster.connection import Redis, forever
from cc_executor.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

_POP_S = 1.0  # how long one wait for a call or a reply blocks before looking around
_REPLY_TTL_S = 60


def node_gone(node: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.SERVICE_UNAVAILABLE,
        f"node {node} is gone (no heartbeat): it cannot answer",
        {"node": node},
    )


class Rpc:
    def __init__(self, redis: Redis, blocking: Redis, node: str) -> None:
        self.redis = redis
        self.blocking = blocking  # a pool for the blocking pops
        self.node = node
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._running: set[asyncio.Task[None]] = set()
        # (method, params) -> reply, run on this node: set by the ClusterNode
        self.serve: Callable[[jsonrpc.Request], Any] | None = None

    async def call(
        self, node: str, method: str, params: dict[str, Any], timeout: float = 120.0
    ) -> Any:
        """Run `method` on `node`; its result, or its error raised as a ProtocolError."""
        call_id = f"{self._prefix}-{next(self._ids)}"
        reply_key = keys.rpc_reply(self.node, call_id)
        msg = orjson.dumps({"id": call_id, "r": reply_key, "m": method, "p": params})
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(keys.heartbeat(node))
        pipe.lpush(keys.rpc_inbox(node), msg)
        alive, _ = await pipe.execute()
        if not alive:
            await self.redis.lrem(keys.rpc_inbox(node), 1, msg)
            raise node_gone(node)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self.blocking.blpop([reply_key], timeout=_POP_S)
            if got is not None:
                reply = orjson.loads(got[1])
                break
            if not await self.redis.exists(keys.heartbeat(node)):
                raise node_gone(node)
            if loop.time() > deadline:
                raise ProtocolError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    f"node {node} did not answer {method} in {timeout:g}s",
                    {"node": node},
                )
        if "error" in reply:
            err = reply["error"]
            raise ProtocolError(err["code"], err["message"], err.get("data"))
        return reply.get("result")

    async def run(self, stopping: asyncio.Event) -> None:
        """Serve the calls other nodes forward to this one, until `stopping`."""
        await forever("rpc inbox", self._serve_step, stopping)
        for t in list(self._running):
            t.cancel()

    async def _serve_step(self) -> None:
        got = await self.blocking.brpop([keys.rpc_inbox(self.node)], timeout=_POP_S)
        if got is None:
            return
        msg = orjson.loads(got[1])
        t = asyncio.get_running_loop().create_task(self._answer(msg))
        self._running.add(t)
        t.add_done_callback(self._running.discard)

    async def _answer(self, msg: dict[str, Any]) -> None:
        assert self.serve is not None
        req = jsonrpc.Request(method=msg["m"], params=msg["p"], id=msg["id"])
        reply = await self.serve(req)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(msg["r"], jsonrpc.encode(reply))
        pipe.expire(msg["r"], _REPLY_TTL_S)
        with contextlib.suppress(Exception):
            await pipe.execute()
