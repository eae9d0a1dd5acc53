"""The engine in this process, reached through the very handlers the service runs.

Each call is validated and dispatched through `handlers.ROUTES` by `jsonrpc.call`, as the
service does for a frame, on a `Conn` of this transport's runtime (engine and session
manager, see `cc_executor.runtime`). The connection's subscriber hands every event to the
sink as it happens, no queue: a `CallbackSubscriber`. So the bridge's local fallback and
the Python API get the service's replies, errors and notifications, not a copy of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cc_executor import jsonrpc
from cc_executor.config import Settings
from cc_executor.engine import CallbackSubscriber, DataDirLocked, Event
from cc_executor.engine.events import holds_of_this_request
from cc_executor.handlers import ROUTES, Conn
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.runtime import Runtime, start_runtime
from cc_executor.service_policy import PolicyUnknown, ServicePolicy
from cc_executor.transport import NotificationSink, sigterm
from cc_executor.transport.fallback import HARMLESS, FallbackPolicy

log = logging.getLogger(__name__)


class InProcessTransport:
    """The handlers on an in-process engine, started on first use.

    The runtime takes the first of `data_dirs` (default: the settings' data dir) that no
    other engine holds. A task's notifications reach the sink only after its `execute`
    result has been handed back: the engine holds them (`Subscriber.hold`), and they are
    released once the caller has resumed with the result, as the service releases them
    once the reply frame is queued; each call releases only the tasks it created.
    """

    name = "local"

    def __init__(
        self,
        settings: Settings,
        on_notification: NotificationSink | None = None,
        *,
        data_dirs: Iterable[Path] | None = None,
    ) -> None:
        self.settings = settings
        self._sink = on_notification
        self._data_dirs = list(data_dirs) if data_dirs is not None else [settings.data_dir]
        self.runtime: Runtime | None = None
        self._conn: Conn | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self._sigterm_loop: asyncio.AbstractEventLoop | None = None
        self.fallback: FallbackPolicy | None = None
        """Set by `AutoTransport`: the service's policy, applied before each call."""
        self._applied: ServicePolicy | None = None
        self._terminating: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        return self._conn is not None

    async def start(self) -> Runtime:
        """Start the runtime now (calls do it on first use); it is returned."""
        if self._conn is None:
            async with self._starting:
                if self._conn is None:
                    await self._open()
        assert self.runtime is not None
        return self.runtime

    async def _open(self) -> None:
        if self._closed:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the local engine has been closed")
        try:
            runtime = await start_runtime(self.settings, self._data_dirs)
        except (DataDirLocked, OSError) as exc:
            raise ProtocolError(
                ErrorCode.INTERNAL_ERROR, f"cannot start the local engine: {exc}"
            ) from exc
        sub = CallbackSubscriber(self._deliver, name="in-process")
        sub.hold_new_tasks = True  # a task's events follow the result that names it
        # The per-connection start limit guards the service from its clients; here the
        # one client is this process.
        unlimited = runtime.settings.model_copy(update={"max_tasks_per_minute_per_connection": 0})
        self._conn = Conn(
            runtime.engine, unlimited, sub, peer="in-process", sessions=runtime.sessions
        )
        self.runtime = runtime
        self._take_sigterm()
        log.info("local engine started in %s", runtime.settings.data_dir)

    def _take_sigterm(self) -> None:
        """SIGTERM ends this engine's groups, then the process (`transport/sigterm.py`)."""
        if not sigterm.default_here():
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):
            return
        self._sigterm_loop = loop

    def _on_sigterm(self) -> None:
        if self._terminating is None:
            log.warning("SIGTERM: ending the local engine's tasks, then this process")
            self._terminating = asyncio.ensure_future(self._end_then_die())

    async def _end_then_die(self) -> None:
        runtime = self.runtime
        try:
            await self.aclose()
        finally:
            if runtime is not None:  # the close was cut short (cancelled): no group survives
                runtime.engine.kill_now()
            sigterm.die_of_sigterm()

    def _deliver(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event.method, event.params)
        except Exception:  # the engine is mid-stream: a consumer's bug must not stop it
            log.exception("notification sink failed on %s", event.method)

    async def call(self, method: Method, params: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = self._conn
        if conn is None:
            await self.start()
            conn = self._conn
            assert conn is not None
        if self.fallback is not None:
            self._apply_fallback_policy(method, conn)
        req = jsonrpc.Request(str(method), params if params is not None else {}, next(self._ids))
        loop = asyncio.get_running_loop()
        with holds_of_this_request() as held:
            try:
                reply = await jsonrpc.call(ROUTES, req, conn)
            finally:
                # Run once the caller has resumed with the result: its next line may start
                # following the new task, before any notification of it arrives.
                loop.call_soon(conn.subscriber.release_held, held)
        assert reply is not None  # a request with an id always gets one
        if "error" in reply:
            err = reply["error"]
            raise ProtocolError(err["code"], err["message"], err.get("data"))
        result: dict[str, Any] = reply["result"]
        return result

    def _apply_fallback_policy(self, method: Method, conn: Conn) -> None:
        """The strictest known policy, applied to the engine's settings (read at each
        request); ProtocolError(COMMAND_NOT_ALLOWED) when it cannot be known."""
        assert self.fallback is not None and self.runtime is not None
        try:
            policy = self.fallback.current()
        except PolicyUnknown as exc:
            if method in HARMLESS:
                return  # starts nothing; the last policy applied stays
            raise ProtocolError(
                ErrorCode.COMMAND_NOT_ALLOWED,
                str(exc),
                {"rule": "service_policy", "file": str(self.fallback.path)},
            ) from None
        if policy is not self._applied:  # the same object while nothing changed
            for settings in (self.settings, self.runtime.settings, conn.settings):
                policy.apply_to(settings)
            self._applied = policy

    def info(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "started": runtime is not None,
            "data_dir": str(runtime.settings.data_dir) if runtime is not None else None,
            "stats": runtime.engine.stats() if runtime is not None else None,
            "ready": runtime is not None,
        }

    async def aclose(self) -> None:
        """Stop the runtime: every task's group ends (the sink still hears of it)."""
        self._closed = True
        loop, self._sigterm_loop = self._sigterm_loop, None
        if loop is not None and self._terminating is None:
            with contextlib.suppress(Exception):  # SIGTERM is the default's again
                loop.remove_signal_handler(signal.SIGTERM)
        async with self._starting:
            runtime, conn = self.runtime, self._conn
            self.runtime = self._conn = None
        if runtime is not None:
            await runtime.close()
        if conn is not None:
            conn.subscriber.close()
