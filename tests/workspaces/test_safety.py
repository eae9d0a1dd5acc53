"""A lock another git holds is waited for, never raced; a worktree whose task was lost in
a crash is listed and can be removed."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.engine import Engine
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.server import ExecutorService
from tests.support import pid_alive, wait_until
from tests.workspaces.conftest import assert_clean, ccx_branches, git, gone, worktrees


def _ref_lock(repo: Path, branch: str) -> Path:
    lock = repo / ".git" / "refs" / "heads" / f"{branch}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")  # what a git creating this ref holds while it does
    return lock


async def test_a_lock_held_by_another_git_is_waited_for(
    engine: Engine, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = _ref_lock(repo, "ccx/patient")
    caplog.set_level(logging.INFO, logger="cc_executor.workspaces.git")
    creating = asyncio.ensure_future(
        engine.workspaces.create(
            "task", "t1", name="patient", cwd=str(repo), base_ref=None, keep="on_change"
        )
    )
    assert await wait_until(lambda: any("waiting for" in r.message for r in caplog.records))
    assert not creating.done() and lock.exists()  # waiting, and the lock was not touched
    lock.unlink()  # the other git is done
    ws = await asyncio.wait_for(creating, 10)
    assert ws.state == "active" and worktrees(repo) == [str(repo), ws.path]
    assert ccx_branches(repo) == ["ccx/patient"]
    await engine.workspaces.remove(ws)
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []


async def test_a_lock_that_stays_is_an_error_that_leaves_nothing(
    settings: Settings, repo: Path
) -> None:
    eng = Engine(settings.model_copy(update={"workspace_lock_wait_seconds": 0.3}))
    await eng.start()
    try:
        lock = _ref_lock(repo, "ccx/stuck")
        with pytest.raises(ProtocolError) as info:
            await eng.workspaces.create(
                "task", "t2", name="stuck", cwd=str(repo), base_ref=None, keep="on_change"
            )
        assert info.value.code == ErrorCode.WORKSPACE_FAILED
        assert info.value.message.startswith("the repository is locked by another git process")
        assert lock.exists()
        lock.unlink()
        assert_clean(repo, settings.data_dir)
    finally:
        await eng.close()


_CRASHING_ENGINE = textwrap.dedent(
    """
    import asyncio, sys
    from cc_executor.config import Settings
    from cc_executor.engine import Engine
    from cc_executor.protocol import ExecuteParams
    from cc_executor.tasks import command_spec

    async def main():
        s = Settings(data_dir=sys.argv[1], port=0, log_format="text")
        engine = Engine(s)
        await engine.start()
        p = ExecuteParams(
            command=["sh", "-c", "echo work > work.txt; exec sleep 300"],
            cwd=sys.argv[2],
            workspace="worktree",
        )
        rec = await engine.execute(command_spec(p, s))
        print(rec.task_id, rec.cwd, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_worktree_of_a_task_lost_in_a_crash_is_listed_and_removable(
    settings: Settings, repo: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASHING_ENGINE,
        str(settings.data_dir),
        str(repo),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    task_id, cwd = line.decode().split()
    assert await wait_until(lambda: not gone(Path(cwd) / "work.txt"))
    proc.send_signal(signal.SIGKILL)  # the engine dies; its task's sleep is orphaned
    await proc.wait()

    svc = ExecutorService(settings)
    await svc.start()  # recovery: the task is lost and its group killed
    try:
        async with ExecutorClient(svc.url, svc.token) as client:
            rec = await client.status(task_id)
            assert rec["status"] == "lost" and rec["workspace"]["path"] == cwd
            [entry] = (await client.call(Method.WORKSPACE_LIST, {}))["workspaces"]
            assert entry["id"] == task_id and entry["task_status"] == "lost"
            assert entry["state"] == "active" and entry["exists"] is True
            diff = await client.call(Method.WORKSPACE_DIFF, {"task_id": task_id})
            assert "+work" in diff["data"]
            res = await client.call(Method.WORKSPACE_REMOVE, {"task_id": task_id})
            assert res["removed"] is True and res["branch_deleted"] is True
        assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []
        assert gone(cwd)
        assert git(repo, "status", "--porcelain") == ""
        assert rec["pid"] is not None and not pid_alive(rec["pid"])
    finally:
        await svc.stop()


async def test_a_worktree_removed_by_hand_is_still_removed_cleanly(
    engine: Engine, repo: Path
) -> None:
    """git still lists a worktree whose directory someone deleted; removing the workspace
    makes git forget it, and its branch goes (it holds no commit)."""
    ws = await engine.workspaces.create(
        "task", "t3", name=None, cwd=str(repo), base_ref=None, keep="always"
    )
    await asyncio.to_thread(shutil.rmtree, ws.path)
    assert worktrees(repo) == [str(repo), ws.path]  # git does not know yet
    ws = await engine.workspaces.finish(ws)  # its "task" ended: recording fails, it is kept
    assert ws.state == "kept" and ws.error and "is gone" in ws.error
    ws = await engine.workspaces.remove(ws)
    assert ws.state == "removed" and ws.branch_deleted
    assert worktrees(repo) == [str(repo)] and ccx_branches(repo) == []


async def test_many_tasks_at_once_on_one_repository(
    client: ExecutorClient, repo: Path, settings: Settings
) -> None:
    """Six worktree tasks sent at once to one repository, two of them with the same name:
    five worktrees and branches, one clear refusal, and nothing of the refused one left."""
    names = ["w1", "w2", "w3", "w4", "same", "same"]
    sent = await asyncio.gather(
        *(
            client.execute(
                ["sh", "-c", f"echo {n} > {n}.txt"], cwd=str(repo), workspace="worktree", name=n
            )
            for n in names
        ),
        return_exceptions=True,
    )
    refused = [r for r in sent if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], ProtocolError), sent
    assert refused[0].message.startswith("name 'same' cannot name the branch: branch ccx/same")
    for h in sent:
        if not isinstance(h, BaseException):
            assert (await h.wait(30))["status"] == "completed"
    assert sorted(ccx_branches(repo)) == sorted(f"ccx/{n}" for n in set(names))
    assert len(worktrees(repo)) == 6 and len((await client.status())["tasks"]) == 5
    listed = (await client.call(Method.WORKSPACE_LIST, {"include_removed": True}))["workspaces"]
    assert sorted(w["branch"] for w in listed) == sorted(f"ccx/{n}" for n in set(names))
    assert len(list((settings.data_dir / "worktrees").iterdir())) == 5
