"""`execute`, `status` and the queue, over the real service with the Python client."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.protocol import ErrorCode, ProtocolError
from cc_executor.server import ExecutorService

from .conftest import MakeService, raw_connect


async def test_string_runs_through_the_shell(client: ExecutorClient) -> None:
    h = await client.execute("echo $((6*7)) | tr 4 X; echo err >&2")
    assert h.info["status"] == "running" and isinstance(h.info["pid"], int)
    done = await h.wait(30)
    assert done["status"] == "completed" and done["exit_code"] == 0 and done["signal"] is None
    assert done["stdout_bytes"] == 3 and done["stderr_bytes"] == 4
    assert done["duration_s"] >= 0
    assert await client.read_output(h.task_id) == b"X2\n"
    assert await client.read_output(h.task_id, "stderr") == b"err\n"


async def test_list_is_execd_without_a_shell(client: ExecutorClient) -> None:
    h = await client.execute(["echo", "$((6*7))", "|", "cat", ";", "`id`"])
    assert (await h.wait(30))["status"] == "completed"
    assert await client.read_output(h.task_id) == b"$((6*7)) | cat ; `id`\n"


async def test_cwd_env_name(client: ExecutorClient, tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['CC_T_FOO'])"
    h = await client.execute(
        [sys.executable, "-c", code], cwd=str(tmp_path), env={"CC_T_FOO": "bar baz"}, name="job-1"
    )
    assert h.info["name"] == "job-1"
    assert (await h.wait(30))["status"] == "completed"
    out = (await client.read_output(h.task_id)).decode().splitlines()
    assert out == [str(tmp_path), "bar baz"]
    rec = await client.status(h.task_id)
    assert rec["name"] == "job-1" and rec["cwd"] == str(tmp_path)
    assert rec["command"] == [sys.executable, "-c", code]
    assert rec["status"] == "completed" and rec["exit_code"] == 0
    assert rec["pid"] == rec["pgid"] == h.pid
    assert rec["started_at"] <= rec["ended_at"]


async def test_bad_cwd_is_invalid_params(client: ExecutorClient, tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        await client.execute(["true"], cwd=str(tmp_path / "absent"))
    assert info.value.code == ErrorCode.INVALID_PARAMS


async def test_exit_code_and_spawn_failure(client: ExecutorClient) -> None:
    h = await client.execute("exit 3")
    done = await h.wait(30)
    assert done["status"] == "failed" and done["exit_code"] == 3
    h2 = await client.execute(["/no/such/program"])
    done2 = await h2.wait(30)
    assert done2["status"] == "failed" and "spawn failed" in done2["error"]


async def test_stdin_is_dev_null_and_new_session(client: ExecutorClient) -> None:
    code = (
        "import os, sys; print(sys.stdin.read() == ''); "
        "print(os.getsid(0) == os.getpid() == os.getpgid(0)); "
        "print(os.readlink('/proc/self/fd/0'))"
    )
    h = await client.execute([sys.executable, "-c", code])
    assert (await h.wait(30))["status"] == "completed"
    assert (await client.read_output(h.task_id)).decode().splitlines() == [
        "True",
        "True",
        "/dev/null",
    ]


async def test_many_tasks_on_one_connection(client: ExecutorClient) -> None:
    handles = [await client.execute(["sh", "-c", f"echo {i}"]) for i in range(20)]
    for i, h in enumerate(handles):
        assert (await h.wait(30))["status"] == "completed"
        assert await client.read_output(h.task_id) == f"{i}\n".encode()


async def test_events_in_order(client: ExecutorClient) -> None:
    h = await client.execute(["sh", "-c", "echo one; echo two >&2"])
    events = [ev async for ev in h.events()]
    methods = [e["method"] for e in events]
    assert methods[0] == "process.started" and methods[-1] == "process.completed"
    assert set(methods[1:-1]) == {"process.output"}
    got = {e["params"]["stream"]: e["params"]["data"] for e in events[1:-1]}
    assert got == {"stdout": b"one\n", "stderr": b"two\n"}  # binary frames: the bytes
    started = events[0]["params"]
    assert started["task_id"] == h.task_id and started["pid"] == h.pid


async def test_status_of_all_tasks_with_stats(client: ExecutorClient) -> None:
    a = await client.execute(["true"])
    b = await client.execute(["sleep", "30"])
    await a.wait(30)
    res = await client.status()
    ids = [t["task_id"] for t in res["tasks"]]
    assert set(ids) == {a.task_id, b.task_id}
    assert ids[0] == b.task_id  # newest first
    stats = res["stats"]
    for key in (
        "running",
        "queued",
        "tasks_started",
        "uptime_s",
    ):
        assert key in stats
    assert stats["running"] == 1 and stats["tasks_started"] == 2
    assert (await client.status(limit=1))["tasks"][0]["task_id"] == b.task_id
    await b.cancel()


async def test_status_accepts_session_id_alias(service: ExecutorService) -> None:
    async with raw_connect(service.url, service.token) as r:
        tid = (await r.result("execute", {"command": ["true"]}))["task_id"]
        await r.until("process.completed", tid)
        assert (await r.result("status", {"session_id": tid}))["task_id"] == tid
        assert (await r.result("output", {"session_id": tid}))["eof"] is True
        reply = await r.call("status", {"task_id": "nope"})
        assert reply["error"]["code"] == ErrorCode.TASK_NOT_FOUND


async def test_queued_beyond_the_limit_then_run_in_order(
    make_service: MakeService, tmp_path: Path
) -> None:
    svc = await make_service(max_concurrent_tasks=1)
    order = tmp_path / "order"
    go = tmp_path / "go"
    async with ExecutorClient(svc.url, svc.token) as c:
        first = await c.execute(
            f"while [ ! -e {go} ]; do sleep 0.02; done; echo A >> {order}", name="A"
        )
        assert first.info["status"] == "running"
        queued = [await c.execute(f"echo {n} >> {order}", name=n) for n in "BC"]
        for h in queued:
            assert h.info["status"] == "queued" and h.info["pid"] is None
            rec = await c.status(h.task_id)
            assert rec["status"] == "queued" and rec["pid"] is None
        stats = (await c.status())["stats"]
        assert stats["running"] == 1 and stats["queued"] == 2
        health = svc.health()
        assert health["running"] == 1 and health["queued"] == 2

        go.touch()
        for h in (first, *queued):
            assert (await h.wait(30))["status"] == "completed"
        assert order.read_text() == "A\nB\nC\n"
        recs = [await c.status(h.task_id) for h in (first, *queued)]
        # Each started only after the one before it ended.
        for prev, nxt in itertools.pairwise(recs):
            assert nxt["started_at"] >= prev["ended_at"]
        # The queued task's events: started came only when it ran.
        events = [e["method"] async for e in queued[1].events()]
        assert events[0] == "process.started" and events[-1] == "process.completed"


async def test_cancel_a_queued_task(make_service: MakeService) -> None:
    svc = await make_service(max_concurrent_tasks=1)
    async with ExecutorClient(svc.url, svc.token) as c:
        running = await c.execute(["sleep", "30"])
        queued = await c.execute(["echo", "never"])
        assert queued.info["status"] == "queued"
        res = await queued.cancel()
        assert res["status"] == "cancelled"
        done = await queued.wait(10)
        assert done["status"] == "cancelled" and done["exit_code"] is None
        rec = await c.status(queued.task_id)
        assert rec["pid"] is None and rec["started_at"] is None
        assert (await c.status())["stats"]["queued"] == 0
        # The running one is untouched, and when it ends nothing else starts.
        assert (await c.status(running.task_id))["status"] == "running"
        await running.cancel()
        stats = (await c.status())["stats"]
        assert stats["tasks_started"] == 1 and stats["running"] == 0
        assert (await c.output(queued.task_id))["total"] == 0


async def test_capacity_exceeded(make_service: MakeService) -> None:
    svc = await make_service(max_concurrent_tasks=1, max_queued_tasks=1)
    async with ExecutorClient(svc.url, svc.token) as c:
        a = await c.execute(["sleep", "30"])
        b = await c.execute(["sleep", "30"])
        assert b.info["status"] == "queued"
        with pytest.raises(ProtocolError) as info:
            await c.execute(["sleep", "30"])
        assert info.value.code == ErrorCode.CAPACITY_EXCEEDED
        await b.cancel()
        await a.cancel()


async def test_max_timeout_enforced(make_service: MakeService) -> None:
    svc = await make_service(max_timeout=5.0)
    async with ExecutorClient(svc.url, svc.token) as c:
        with pytest.raises(ProtocolError) as info:
            await c.execute(["true"], timeout=10)
        assert info.value.code == ErrorCode.INVALID_PARAMS
        h = await c.execute(["true"], timeout=4)
        assert (await h.wait(30))["status"] == "completed"
