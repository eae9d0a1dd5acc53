"""The default policy: the service when it answers, else the engine in this process.

Tasks and sessions stay with whichever side runs them: a call naming one (`task_id`,
`session_id`) goes to its owner, also after the service is back; listings merge both.
The local engine applies the service's policy too (`transport/fallback.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from cc_executor.client import ExecutorConnectionError, ServiceUnavailable
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.transport import Transport
from cc_executor.transport.fallback import FallbackPolicy
from cc_executor.transport.inprocess import InProcessTransport
from cc_executor.transport.websocket import WebSocketTransport

log = logging.getLogger(__name__)

_OWNER_LIMIT = 100_000

_SESSION_METHODS = frozenset(m for m in Method if m.value.startswith("session."))

Key = tuple[str, str]
"""What a call names: ("task", task_id) or ("session", session_id or name)."""


def _key(method: Method, params: dict[str, Any]) -> Key | None:
    if method in _SESSION_METHODS:
        ref = params.get("session_id")
        return ("session", ref) if isinstance(ref, str) and ref else None
    ref = params.get("task_id", params.get("session_id"))  # `session_id`: a task id alias
    return ("task", ref) if isinstance(ref, str) and ref else None


def _not_here(exc: ProtocolError, key: Key) -> bool:
    """Whether the error says the named task or session is unknown on that side."""
    if key[0] == "task":
        return exc.code == ErrorCode.TASK_NOT_FOUND
    if exc.code != ErrorCode.SESSION_NOT_FOUND:
        return False
    data = exc.data
    return not isinstance(data, dict) or data.get("session_id") == key[1]


class AutoTransport:
    """The service when it answers, else the in-process engine; each task and session stays
    with its owner.

    While the service is down, new work runs locally at once (no connect attempt on the
    call's path) and a background loop retries the service with backoff; the first call
    after it answers goes to the service again. Every result says which side served it
    (`backend`: the side's name), and so does each entry of a merged listing.
    """

    name = "auto"

    def __init__(
        self,
        remote: WebSocketTransport,
        local: InProcessTransport,
        *,
        reconnect_max_wait: float = 0.5,
    ) -> None:
        self.remote = remote
        self.local = local
        # The local side never runs what the service would refuse (transport/fallback.py).
        local.fallback = FallbackPolicy(
            local.settings, local.settings.data_dir, lambda: remote.service_policy
        )
        self.reconnect_max_wait = reconnect_max_wait
        self.remote_up: bool | None = None  # None: not tried yet
        self.last_error: str | None = None  # why the service was last found unreachable
        self._owner: OrderedDict[Key, Transport] = OrderedDict()
        self._prober: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ reachability

    def _down(self, exc: BaseException) -> None:
        if self.remote_up is not False:
            log.warning("service unreachable (%s): running work locally until it is back", exc)
        self.remote_up = False
        self.last_error = str(exc)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.05, max=self.reconnect_max_wait),
            retry=retry_if_exception_type(ExecutorConnectionError),
        ):
            with attempt:
                await self.remote.connect()
        log.warning("service reachable again: new work goes to it")
        self.remote_up = True

    # ------------------------------------------------------------------ calls

    async def call(self, method: Method, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = params or {}
        key = _key(method, params)
        if key is None and method in (Method.STATUS, Method.SESSION_LIST):
            return await self._merged(method, params)
        if key is not None:
            return await self._to_owner(key, method, params)
        if self.remote_up is not False:
            try:
                result = await self.remote.call(method, params)
            except ServiceUnavailable as exc:
                self._down(exc)
            else:
                self.remote_up = True
                return self._served(result, self.remote)
        return self._served(await self.local.call(method, params), self.local)

    async def _to_owner(self, key: Key, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        owner = self._owner.get(key)
        if owner is not None:
            return self._served(await self._on(owner, method, params), owner)
        # Not seen yet: the service first (if it may answer), then the local engine (if
        # it runs, or the service does not answer: sessions persist in its data dir).
        unknown: Exception | None = None
        if self.remote_up is not False:
            try:
                result = await self._on(self.remote, method, params)
            except ServiceUnavailable as exc:
                unknown = exc
            except ProtocolError as exc:
                if not _not_here(exc, key):
                    raise
                unknown = exc
            else:
                return self._served(result, self.remote)
        if self.local.started or self.remote_up is False:
            try:
                return self._served(await self.local.call(method, params), self.local)
            except ProtocolError as exc:
                if unknown is None or not _not_here(exc, key):
                    raise
        assert unknown is not None
        raise unknown

    async def _on(self, side: Transport, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await side.call(method, params)
        except ServiceUnavailable as exc:
            if side is self.remote:
                self._down(exc)
            raise
        if side is self.remote:
            self.remote_up = True
        return result

    async def _merged(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        """A listing of both sides: the service's (when it answers) and the local one's
        (when it runs, or the service does not answer)."""
        parts: list[tuple[Transport, dict[str, Any]]] = []
        if self.remote_up is not False:
            try:
                parts.append((self.remote, await self._on(self.remote, method, params)))
            except ServiceUnavailable:
                pass
        if self.local.started or self.remote_up is False:
            parts.append((self.local, await self.local.call(method, params)))
        field = "tasks" if method == Method.STATUS else "sessions"
        merged: list[dict[str, Any]] = []
        for side, result in parts:
            for entry in result.get(field, ()):
                entry["backend"] = side.name
                merged.append(entry)
        merged.sort(key=lambda e: e.get("created_at") or 0, reverse=method == Method.STATUS)
        if method == Method.STATUS:
            limit = params.get("limit")
            return {
                "tasks": merged[:limit] if isinstance(limit, int) else merged,
                "stats": {side.name: result.get("stats") for side, result in parts},
            }
        return {
            "sessions": merged,
            "total": sum(int(result.get("total") or 0) for _, result in parts),
            "active": sum(int(result.get("active") or 0) for _, result in parts),
        }

    def _served(self, result: dict[str, Any], side: Transport) -> dict[str, Any]:
        """Tag the result with its side, and remember what it owns from now on."""
        for kind, field in (("task", "task_id"), ("session", "session_id")):
            ref = result.get(field)
            if isinstance(ref, str) and ref:
                self._own((kind, ref), side)
        result["backend"] = side.name
        return result

    def _own(self, key: Key, side: Transport) -> None:
        self._owner[key] = side
        self._owner.move_to_end(key)
        while len(self._owner) > _OWNER_LIMIT:
            self._owner.popitem(last=False)

    def info(self) -> dict[str, Any]:
        side_ready = self.remote.info() if self.remote_up is not False else self.local.info()
        return {
            "service_reachable": self.remote_up,
            "last_error": self.last_error,
            "websocket": self.remote.info(),
            "local": self.local.info(),
            "ready": bool(side_ready["ready"]),
        }

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober
        await self.remote.aclose()
        await self.local.aclose()
