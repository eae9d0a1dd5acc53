"""The in-process engine as a backend: the service's own `Engine`, started on first use.

In `local` mode it also serves the `session.*` methods, through the service's own
`SessionManager` and handlers on this engine (sessions stored in the engine's slot).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from cc_executor import jsonrpc
from cc_executor.claude.runner import claude_spec
from cc_executor.config import Settings
from cc_executor.engine import CallbackSubscriber, DataDirLocked, Engine, TaskSpec
from cc_executor.protocol import (
    ControlParams,
    ErrorCode,
    ExecuteClaudeParams,
    OutputParams,
    ProtocolError,
    Stream,
)
from cc_executor.sessions import SessionManager
from cc_executor.sessions.handlers import SESSION_ROUTES
from cc_executor.tasks import command_spec
from cc_executor.workspaces.handlers import WORKSPACE_ROUTES
from mcp_bridge.backend.base import TaskParams, _Watching
from mcp_bridge.settings import BridgeSettings
from mcp_bridge.watch import TaskWatch

log = logging.getLogger(__name__)


class _Sink(CallbackSubscriber):
    """An engine subscriber that hands each event straight to a watch: no queue, no task."""

    def __init__(self, watch: TaskWatch) -> None:
        super().__init__(lambda event: watch.feed(event.method, event.params))
        self.watch = watch


class _EngineConn:
    """What the service's session handlers need of a connection: its engine."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def _started(rec: Any, backend: str) -> dict[str, Any]:
    d: dict[str, Any] = {"task_id": rec.task_id, "status": str(rec.status), "pid": rec.pid}
    if rec.name:
        d["name"] = rec.name
    if rec.error:
        d["error"] = rec.error
    d["backend"] = backend
    return d


class LocalBackend(_Watching):
    """The engine, in this process, started on first use with the service's settings.

    It keeps its records and logs apart from the service's, in `<data dir>/mcp-local/
    slot-N`: an engine owns its data dir exclusively, so each running bridge takes the
    first free slot, and a slot left by a crashed bridge is reconciled by the next one.
    """

    name = "local"

    def __init__(self, settings: BridgeSettings, service: Settings) -> None:
        super().__init__(settings)
        self.service = service
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()
        self._sinks: dict[str, _Sink] = {}
        self.data_dir: Path | None = None
        self._sessions: SessionManager | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    async def engine(self) -> Engine:
        """The local engine, started on first use in the first free slot."""
        if self._engine is not None:
            return self._engine
        async with self._lock:
            if self._engine is None:
                base = self.service.data_dir / "mcp-local"
                try:
                    for n in range(256):
                        data_dir = base / f"slot-{n}"
                        engine = Engine(self.service.model_copy(update={"data_dir": data_dir}))
                        try:
                            await engine.start()
                        except DataDirLocked:
                            continue  # another bridge's engine owns this slot
                        self._engine, self.data_dir = engine, data_dir
                        log.info("local engine started in %s", data_dir)
                        break
                    else:
                        raise ProtocolError(
                            ErrorCode.INTERNAL_ERROR, f"no free local engine slot under {base}"
                        )
                except OSError as exc:
                    raise ProtocolError(
                        ErrorCode.INTERNAL_ERROR, f"cannot start the local engine: {exc}"
                    ) from exc
        assert self._engine is not None
        return self._engine

    def spec(self, params: TaskParams, engine: Engine) -> TaskSpec:
        if isinstance(params, ExecuteClaudeParams):
            return claude_spec(params, engine.settings)
        return command_spec(params, engine.settings)

    async def execute(self, params: TaskParams, *, watch: bool = True) -> dict[str, Any]:
        engine = self._engine or await self.engine()
        spec = self.spec(params, engine)
        w = self._new_watch(None) if watch else None
        sink = _Sink(w) if w is not None else None
        rec = await engine.execute(spec, sink)
        if w is not None and sink is not None:
            w.task_id = rec.task_id
            self._watches[rec.task_id] = w
            self._sinks[rec.task_id] = sink
        return _started(rec, self.name)

    async def _follow(self, task_id: str, watch: TaskWatch) -> None:
        engine = await self.engine()
        sink = _Sink(watch)
        self._sinks[task_id] = sink
        if engine.subscribe(task_id, sink, 0, 0) is None:
            rec = await engine.get(task_id)
            engine.replay_finished(rec, sink, 0, 0)

    def _unwatch(self, task_id: str) -> None:
        self._watches.pop(task_id, None)
        sink = self._sinks.pop(task_id, None)
        if sink is not None and self._engine is not None:
            self._engine.unsubscribe(task_id, sink)

    async def status(self, task_id: str) -> dict[str, Any]:
        engine = await self.engine()
        rec = (await engine.get(task_id)).to_dict()
        rec["backend"] = self.name
        return rec

    async def tasks(self, limit: int = 100) -> dict[str, Any]:
        engine = await self.engine()
        recs = [r.to_dict() for r in await engine.list(limit)]
        for r in recs:
            r["backend"] = self.name
        return {"tasks": recs, "stats": engine.stats()}

    async def control(self, task_id: str, action: str) -> dict[str, Any]:
        p = ControlParams.model_validate({"task_id": task_id, "action": action})
        engine = await self.engine()
        rec = await engine.control(p.task_id, p.action)
        return {
            "task_id": rec.task_id,
            "action": p.action.value,
            "status": str(rec.status),
            "backend": self.name,
        }

    async def output(
        self, task_id: str, stream: str = "stdout", offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]:
        p = OutputParams.model_validate(
            {"task_id": task_id, "stream": stream, "offset": offset, "limit": limit}
        )
        engine = await self.engine()
        res = await engine.read_output(p.task_id, Stream(p.stream), p.offset, p.limit)
        res["backend"] = self.name
        return res

    async def session_manager(self) -> SessionManager:
        """The local SessionManager on the local engine, started on first use."""
        engine = await self.engine()
        if self._sessions is None:
            async with self._lock:
                if self._sessions is None:
                    manager = SessionManager(engine, engine.settings)
                    await manager.start()
                    self._sessions = manager
        return self._sessions

    async def call(
        self, method: str, params: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """`session.*` and `workspace.*` methods, run by the service's own handlers on
        this engine."""
        route = SESSION_ROUTES.get(method) or WORKSPACE_ROUTES.get(method)
        if route is None:
            return await super().call(method, params, idempotent=idempotent)
        manager = await self.session_manager()
        p = jsonrpc.validate_params(route.params_model, params)
        res: dict[str, Any] = await route.handler(_EngineConn(manager.engine), p)
        return res

    def call_ready(self) -> bool:
        return self._sessions is not None

    async def info(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "stats": self._engine.stats() if self._engine is not None else None,
        }

    async def close(self) -> None:
        if self._sessions is not None:
            await self._sessions.stop()
            self._sessions = None
        if self._engine is not None:
            await self._engine.close()
            self._engine = None
