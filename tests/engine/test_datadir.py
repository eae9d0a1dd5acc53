"""The data dir is private: 0700 dirs, 0600 files, an open one tightened at start."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskSpec, command_env
from cc_executor.server import ExecutorService


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_an_open_data_dir_is_tightened_and_every_file_is_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    settings = Settings(data_dir=data, port=0, log_format="text")
    service = ExecutorService(settings)
    with caplog.at_level(logging.WARNING):
        await service.start()
    try:
        engine: Engine = service.engine
        rec = await engine.execute(
            TaskSpec(
                command="x", argv=["sh", "-c", "echo out; echo err >&2"], env=command_env(None)
            )
        )
        await engine.wait(rec.task_id, 10)
        await engine.store.flush()
        assert mode(data) == 0o700 and mode(data / "logs") == 0o700
        assert "tightened to 0700" in caplog.text
        files = [p for p in data.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {
            "token",
            "tasks.sqlite3",
            "spawned.jsonl",
            "engine.lock",
            f"{rec.task_id}.stdout",
            f"{rec.task_id}.stderr",
        }
        assert {p.name: oct(mode(p)) for p in files if mode(p) & 0o077} == {}
    finally:
        await service.stop()
