"""The runtime: one engine and its session manager, built from `Settings` in one place.

Every face that runs tasks in this process (the service, the in-process transport under the
bridge's local fallback and the Python API) gets its engine from `build_runtime`, so the
engine is constructed here and nowhere else. A runtime owns its data dir alone: the
engine locks it (`engine.lock`), and `start_runtime` takes the first of several candidate
dirs that no other engine holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cc_executor.config import Settings
from cc_executor.engine import DataDirLocked, Engine, build_engine
from cc_executor.sessions import SessionManager


@dataclass(eq=False)
class Runtime:
    """An engine and the session manager driving it; `start` before use, `close` after."""

    settings: Settings
    engine: Engine
    sessions: SessionManager

    async def start(self) -> None:
        """Open the engine (recovery included), then the sessions stored beside it."""
        await self.engine.start()
        try:
            await self.sessions.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.engine.close()
            raise

    async def close(self) -> None:
        """End the sessions' turns, then every task's group, and close both stores."""
        await self.sessions.stop()
        await self.engine.close()


def build_runtime(settings: Settings) -> Runtime:
    """The engine and session manager of these settings, not started yet."""
    engine = build_engine(settings)  # the engine's own parts are chosen there
    return Runtime(settings, engine, SessionManager(engine, settings))


async def start_runtime(settings: Settings, data_dirs: Iterable[Path]) -> Runtime:
    """A started runtime in the first of `data_dirs` that no other engine holds.

    Raises DataDirLocked when every one is taken.
    """
    tried: list[str] = []
    for data_dir in data_dirs:
        # An in-process engine (the API, the bridge's fallback) runs on this host alone,
        # never as a cluster node: a node is a service (docs/cluster.md).
        runtime = build_runtime(
            settings.model_copy(update={"data_dir": data_dir, "redis_url": None})
        )
        try:
            await runtime.start()
        except DataDirLocked:
            tried.append(str(data_dir))
            continue  # another process's engine owns it
        return runtime
    raise DataDirLocked(f"every data dir is held by another engine: {', '.join(tried)}")
