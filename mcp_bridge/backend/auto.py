"""The default policy: the service when it answers, else the local engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from cc_executor.client import ExecutorConnectionError
from cc_executor.config import Settings
from cc_executor.protocol import ErrorCode, ProtocolError
from mcp_bridge.backend.base import Backend, ProgressFn, ServiceUnavailable, T, TaskParams, Waited
from mcp_bridge.backend.local import LocalBackend
from mcp_bridge.backend.remote import RemoteBackend
from mcp_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

_OWNER_LIMIT = 100_000


class AutoBackend(Backend):
    """The service when it answers, else the local engine; each task stays with its owner.

    While the service is down, new tasks run locally at once (no connect attempt on the
    call's path) and a background loop retries the service with backoff; the first call
    after it answers goes to the service again.
    """

    name = "auto"

    def __init__(
        self, settings: BridgeSettings, remote: RemoteBackend, local: LocalBackend
    ) -> None:
        self.settings = settings
        self.remote = remote
        self.local = local
        self.remote_up: bool | None = None  # None: not tried yet
        self.last_error: str | None = None  # why the service was last found unreachable
        self._owner: OrderedDict[str, Backend] = OrderedDict()
        self._prober: asyncio.Task[None] | None = None

    def _own(self, task_id: str, backend: Backend) -> None:
        self._owner[task_id] = backend
        while len(self._owner) > _OWNER_LIMIT:
            self._owner.popitem(last=False)

    def _down(self, exc: BaseException) -> None:
        if self.remote_up is not False:
            log.warning("service unreachable (%s): running tasks locally until it is back", exc)
        self.remote_up = False
        self.last_error = str(exc)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.05, max=self.settings.reconnect_max_wait),
            retry=retry_if_exception_type(ExecutorConnectionError),
        ):
            with attempt:
                await self.remote.connect_one()
        log.warning("service reachable again: new tasks go to it")
        self.remote_up = True

    async def execute(self, params: TaskParams, *, watch: bool = True) -> dict[str, Any]:
        if self.remote_up is not False:
            try:
                info = await self.remote.execute(params, watch=watch)
            except ServiceUnavailable as exc:
                self._down(exc)
            else:
                self.remote_up = True
                self._own(info["task_id"], self.remote)
                return info
        info = await self.local.execute(params, watch=watch)
        self._own(info["task_id"], self.local)
        return info

    async def _route(self, task_id: str, op: Callable[[Backend], Awaitable[T]]) -> T:
        owner = self._owner.get(task_id)
        if owner is not None:
            return await op(owner)
        candidates: list[Backend] = []
        if self.remote_up is not False:
            candidates.append(self.remote)
        candidates.append(self.local)
        last: Exception | None = None
        for backend in candidates:
            try:
                result = await op(backend)
            except ServiceUnavailable as exc:
                self._down(exc)
                last = exc
                continue
            except ProtocolError as exc:
                if exc.code != ErrorCode.TASK_NOT_FOUND:
                    raise
                last = exc
                continue
            self._own(task_id, backend)
            return result
        assert last is not None
        raise last

    async def wait(
        self,
        task_id: str,
        timeout: float | None,
        on_progress: ProgressFn | None = None,
        *,
        full_record: bool = False,
    ) -> Waited:
        return await self._route(
            task_id, lambda b: b.wait(task_id, timeout, on_progress, full_record=full_record)
        )

    async def status(self, task_id: str) -> dict[str, Any]:
        return await self._route(task_id, lambda b: b.status(task_id))

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        return await self._route(task_id, lambda b: b.control(task_id, action))

    async def output(
        self, task_id: str, stream: str = "stdout", offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]:
        return await self._route(task_id, lambda b: b.output(task_id, stream, offset, limit))

    async def tasks(self, limit: int = 100) -> dict[str, Any]:
        merged: list[dict[str, Any]] = []
        stats: dict[str, Any] = {}
        if self.remote_up is not False:
            try:
                res = await self.remote.tasks(limit)
            except ServiceUnavailable as exc:
                self._down(exc)
            else:
                merged += res["tasks"]
                stats["websocket"] = res.get("stats")
        if self.local.started or self.remote_up is False:
            res = await self.local.tasks(limit)
            merged += res["tasks"]
            stats["local"] = res.get("stats")
        merged.sort(key=lambda t: t.get("created_at") or 0, reverse=True)
        return {"tasks": merged[:limit], "stats": stats}

    async def call(
        self, method: str, params: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Service methods (sessions) go to the service only: they never fall back.

        Sessions are shared by every agent that talks to the service; a private copy in
        this process would split them. So the service is tried even while it is marked
        down (connection refused answers at once), and its being unreachable is the error.
        """
        try:
            res = await self.remote.call(method, params, idempotent=idempotent)
        except ServiceUnavailable as exc:
            self._down(exc)
            raise
        self.remote_up = True
        return res

    def call_ready(self) -> bool:
        return self.remote.call_ready()

    async def info(self) -> dict[str, Any]:
        return {
            "service_reachable": self.remote_up,
            "last_error": self.last_error,
            "websocket": await self.remote.info(),
            "local": await self.local.info(),
        }

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober
        await self.remote.close()
        await self.local.close()


def make_backend(settings: BridgeSettings, service: Settings | None = None) -> Backend:
    """The backend the settings ask for (`bridge_mode`)."""
    service = service or settings.service_settings()
    mode = settings.bridge_mode
    if mode == "local":
        return LocalBackend(settings, service)
    if mode == "websocket":
        return RemoteBackend(
            settings,
            service,
            connect_timeout=max(settings.connect_timeout, 5.0),
            retry_for=settings.connect_retry_for,
        )
    return AutoBackend(settings, RemoteBackend(settings, service), LocalBackend(settings, service))
