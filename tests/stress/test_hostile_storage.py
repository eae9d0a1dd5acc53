"""Issue 17: a full disk and a deleted data dir under a running service.

- The whole data dir on a 2 MiB tmpfs, filled by a file: a task acknowledged then (its
  record too big for what is left) runs to `completed`; its record writes fail, are kept
  and retried; `/health` says `degraded` naming the reason, and `execute` is refused
  naming it too; the record says its log is incomplete (`log_errors`). Once the file is
  deleted the kept writes go through, `/health` is `ok` and tasks run again; after a
  restart the task acknowledged on the full disk is still `completed`, not `lost`.
- `rm -rf` of the data dir of a running service: `/health` degraded, `execute` refused
  with a clear error, a running task can still be cancelled, the service stops cleanly
  and logs no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_executor.protocol import ErrorCode, ProtocolError
from tests.support import ServiceProcess, eventually

from .conftest import MakeSvc
from .support import REPORT, leftovers

pytestmark = pytest.mark.stress


async def _health(svc: ServiceProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(svc.health_url, timeout=5)
    assert r.status_code == 200, r.text  # degraded, but up: a probe must not restart it
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def tmpfs_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs that is the whole data dir; unmounted after."""
    data = tmp_path / "data"
    data.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {r.stderr.strip()}")
    try:
        yield data
    finally:
        if subprocess.run(["umount", str(data)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(data)], capture_output=True)


def _fill(path: Path) -> int:
    """Write `path` until the disk refuses another byte; its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    size += os.write(fd, b"\0" * chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    return size


async def test_full_disk_keeps_acknowledged_records_and_recovers(
    make_svc: MakeSvc, mark: str, tmpfs_data_dir: Path
) -> None:
    row = REPORT.row("disk full (2 MiB tmpfs data dir)")
    svc = await make_svc(tmpfs_data_dir)
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    words = ["a" * 20_000, "b" * 20_000, "c" * 20_000]  # a 120 KB record: more than is left
    async with svc.client() as c:
        first = await c.execute(["echo", "before"], env=env)
        assert (await first.wait(30))["status"] == "completed"
        await c.status()  # a listing reads the store after every earlier write: all written
        filler = tmpfs_data_dir / "filler"
        filled = _fill(filler)
        acked = await c.execute(["echo", *words], env=env)  # acknowledged on the full disk
        done = await acked.wait(30)
        assert done["status"] == "completed", done
        health = await eventually(lambda: _health(svc), lambda h: h["status"] == "degraded")
        assert any("task records cannot be written" in p for p in health["problems"]), health
        assert any("full" in p for p in health["problems"]), health
        with pytest.raises(ProtocolError) as refused:
            await c.execute(["echo", "refused"], env=env)
        assert refused.value.code == ErrorCode.SERVICE_UNAVAILABLE
        assert "refusing new tasks: task records cannot be written" in refused.value.message
        assert (await c.ping())["pong"] is True  # everything else is served
        rec = await c.status(acked.task_id)
        assert rec["status"] == "completed" and "No space left" in rec["log_errors"]["stdout"]
        waited = time.monotonic()
        filler.unlink()  # space again
        await eventually(lambda: _health(svc), lambda h: h["status"] == "ok")
        recovered_s = time.monotonic() - waited
        after = await c.execute(["echo", "after"], env=env)
        assert (await after.wait(30))["status"] == "completed"
        assert await c.read_output(after.task_id) == b"after\n"
    await svc.restart()
    async with svc.client() as c:
        rec = await c.status(acked.task_id)
        assert rec["status"] == "completed", rec  # not lost: the kept writes went through
        assert rec["exit_code"] == 0 and "No space left" in rec["log_errors"]["stdout"], rec
        assert rec["stdout_bytes"] == len(" ".join(words)) + 1
        assert (await c.status(after.task_id))["status"] == "completed"
    left = await leftovers(mark, [])
    svc.stop()  # before the tmpfs goes
    row.tasks = 4
    row.leftovers = len(left)
    row.max_rss = svc.max_rss
    row.wall_s = time.monotonic() - t0
    row.note = f"filled with {filled} B; records written {recovered_s:.2f} s after space returned"
    assert not left, left


async def test_deleted_data_dir_is_reported_and_refuses_new_tasks(
    make_svc: MakeSvc, mark: str, tmp_path: Path
) -> None:
    row = REPORT.row("data dir deleted under the service")
    data = tmp_path / "doomed"
    svc = await make_svc(data)
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    async with svc.client() as c:
        long = await c.execute(["sleep", "300"], env=env)
        assert (await _health(svc))["status"] == "ok"
        shutil.rmtree(data)
        health = await _health(svc)
        assert health["status"] == "degraded", health
        assert f"the data dir {data} was deleted" in health["problems"][0], health
        with pytest.raises(ProtocolError) as refused:
            await c.execute(["echo", "x"], env=env)
        assert refused.value.code == ErrorCode.SERVICE_UNAVAILABLE
        assert f"refusing new tasks: the data dir {data} was deleted" in refused.value.message
        with pytest.raises(ProtocolError):
            await c.execute_claude("hi")  # no way around it
        data.mkdir()  # recreated: still not the dir the engine locked
        assert "was replaced" in (await _health(svc))["problems"][0]
        cancelled = await long.cancel()
        assert cancelled["status"] == "cancelled"
        assert (await c.ping())["pong"] is True
    left = await leftovers(mark, [long.pid or 0])
    assert svc.stop() == 0  # a clean stop; the fixture checks the log for tracebacks
    row.tasks = 1
    row.leftovers = len(left)
    row.wall_s = time.monotonic() - t0
    assert not left, left
