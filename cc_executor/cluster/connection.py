"""The connection to the cluster's Redis, and what a Redis failure means to a caller.

One `redis.asyncio` client (a pool) per node. Commands are retried briefly on a dropped
connection; loops that must survive a Redis restart (heartbeat, bus, queue taker, RPC
inbox) catch `RedisError` themselves and try again after `RECONNECT_DELAY`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from cc_executor.cluster.keys import redact
from cc_executor.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

# The client, as the cluster's modules see it. redis-py types every reply as a union
# (bytes | str | ...) whatever the call; with decode_responses=False they are bytes, and
# each module treats them so.
Redis = Any

RECONNECT_DELAY = 0.2  # between attempts of a background loop while Redis is down
_SOCKET_TIMEOUT = 10.0  # a command with no answer for this long fails (blocking ones: less)


def connect(url: str) -> Redis:
    """A client for `url` (credentials stay inside the client; nothing logs the URL)."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=_SOCKET_TIMEOUT,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        health_check_interval=5,
        max_connections=256,
    )


def unavailable(url: str, exc: BaseException) -> ProtocolError:
    """The error a client sees when Redis cannot be reached (no credentials in it)."""
    return ProtocolError(
        ErrorCode.SERVICE_UNAVAILABLE,
        f"the cluster's Redis ({redact(url)}) is unreachable: {type(exc).__name__}",
    )


async def forever(name: str, step: Callable[[], Awaitable[Any]], stopping: asyncio.Event) -> None:
    """Run `step` again and again until `stopping` is set, riding out Redis outages.

    A step that raises RedisError is retried after RECONNECT_DELAY (logged once per
    outage); any other exception is a bug: logged, and the loop goes on.
    """
    down = False
    while not stopping.is_set():
        try:
            await step()
            if down:
                log.info("%s: Redis is back", name)
                down = False
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if not down:
                log.warning("%s: Redis unreachable (%s); retrying", name, type(exc).__name__)
                down = True
            await _pause(stopping, RECONNECT_DELAY)
        except Exception:
            log.exception("%s failed; going on", name)
            await _pause(stopping, RECONNECT_DELAY)


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
