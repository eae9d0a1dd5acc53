"""Faults: the service killed and restarted, clients dropped, children that misbehave, a
full disk, and the MCP bridge across a service restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient, ExecutorConnectionError, TaskHandle
from tests.support import FAKE_CLAUDE, wait_until

from ..bridge.conftest import bridge_in_task
from .children import bulk_bytes, chatty_bytes
from .conftest import MakeSvc
from .support import (
    MB,
    REPORT,
    P,
    Wire,
    child,
    file_sha,
    leftovers,
    marked_processes,
    sha,
)

pytestmark = pytest.mark.stress


def _contiguous(wire: Wire, tid: str, stream: str = "stdout") -> int:
    end = 0
    for off, data in sorted(wire.pieces.get((tid, stream), [])):
        if off > end:
            break
        end = max(end, off + len(data))
    return end


# ------------------------------------------------------------------ kill -9 and restart


async def test_kill9_mid_run_then_restart(make_svc: MakeSvc, mark: str) -> None:
    """SIGKILL while tasks run and others are being started: after the restart every
    record of a task that was running says `lost`, no process of any of them survives
    (marker scan of the whole table), and clients that were retrying are back."""
    row = REPORT.row("kill -9 mid-run + restart")
    svc = await make_svc()
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    wire = Wire()
    clients = [svc.client(on_notification=wire) for _ in range(3)]
    for c in clients:
        await c.connect()
    kinds = ("ticker", "ignore_term", "sleep")
    handles: list[TaskHandle] = []
    for i in range(P.fault_tasks):
        kind = kinds[i % 3]
        argv = child("ticker", f"k{i}") if kind == "ticker" else child(kind)
        if kind == "sleep":
            argv = ["sleep", "300"]
        handles.append(await clients[i % 3].execute(argv, env=env, keep_events=False))
    for h in handles:
        if h.info["status"] != "running":
            raise AssertionError(f"{h.task_id} is {h.info['status']}")
    for h in handles[:2]:  # a ticker and an ignore_term: output is flowing
        await asyncio.wait_for(wire.first_output[h.task_id].wait(), 60)

    # A client keeps starting tasks: the kill lands while spawns are in flight.
    started: list[str] = []
    spawned_some = asyncio.Event()

    async def spawner() -> None:
        c = clients[0]
        with contextlib.suppress(ExecutorConnectionError):
            for i in range(10_000):
                h = await c.execute(child("ticker", f"late{i}"), env=env, keep_events=False)
                started.append(h.task_id)
                if len(started) >= 3:
                    spawned_some.set()

    spawning = asyncio.ensure_future(spawner())
    await asyncio.wait_for(spawned_some.wait(), 60)
    svc.kill9()
    await asyncio.wait_for(spawning, 30)
    orphans = marked_processes(mark)
    assert orphans, "the crash should leave the task processes behind (orphaned)"

    # Clients retry before the service is back; the restart reaps the orphans.
    again = [svc.client(retry_for=60, connect_timeout=5) for _ in range(3)]
    reconnecting = [asyncio.ensure_future(c.connect()) for c in again]
    await svc.start()
    await asyncio.wait_for(asyncio.gather(*reconnecting), 60)
    try:
        pgids = [h.pid for h in handles if h.pid]
        left = await leftovers(mark, pgids)
        problems: list[str] = []
        c = again[0]
        for tid in [h.task_id for h in handles] + started:
            rec = await c.status(tid)
            if rec["status"] != "lost":
                problems.append(f"{tid}: {rec['status']} after the restart")
            size, _ = file_sha(svc.log_path(tid))
            if rec["stdout_bytes"] != size:
                problems.append(f"{tid}: stdout_bytes {rec['stdout_bytes']} != log {size}")
            if size and len(await c.read_output(tid)) != size:
                problems.append(f"{tid}: output not readable after the restart")
        listing = await c.status()
        problems += [
            f"{t['task_id']}: still {t['status']} after the restart"
            for t in listing["tasks"]
            if t["status"] in ("running", "paused", "queued")
        ]
        assert listing["stats"]["running"] == 0
        for client in again:
            assert (await client.ping())["pong"] is True
        h = await again[1].execute(child("chatty", "after", 10), env=env)
        assert (await h.wait(60))["status"] == "completed"
        row.tasks = len(handles) + len(started) + 1
        row.failures = len(problems)
        row.leftovers = len(left)
        row.max_rss = svc.sample_rss()
        row.wall_s = time.monotonic() - t0
        row.note = (
            f"{len(orphans)} orphans after the kill, {len(started)} tasks started while "
            f"spawning, {listing['stats']['lost_on_start']} marked lost at start"
        )
        assert not problems, "\n".join(problems[:30])
        assert not left, left
    finally:
        for client in clients + again:
            await client.close()


# ------------------------------------------------------------------ dropped connections


async def test_connections_dropped_mid_stream(make_svc: MakeSvc, mark: str, tmp_path: Path) -> None:
    """Clients whose sockets are torn down mid-stream (no close handshake): their tasks go
    on, and a new connection subscribing from the last byte it had gets all the rest."""
    row = REPORT.row(f"dropped connections: {P.drop_clients} x {P.drop_rounds}")
    svc = await make_svc()
    t0 = time.monotonic()
    lines, phases = 400, P.drop_rounds + 1
    expected = {j: chatty_bytes(f"drop{j}", lines * phases) for j in range(P.drop_clients)}
    problems: list[str] = []

    async def one(j: int) -> int:
        wire = Wire()
        gate = tmp_path / f"gate{j}"
        c = svc.client(on_notification=wire)
        await c.connect()
        argv = child("phased", f"drop{j}", lines, phases, gate)
        h = await c.execute(argv, env={"CC_STRESS_MARK": mark}, keep_events=False)
        tid = h.task_id
        phase_len = len(expected[j]) // phases
        for k in range(P.drop_rounds):
            await wait_until(
                lambda k=k: _contiguous(wire, tid) >= (k + 1) * phase_len,
                60,
                f"phase {k} of drop{j}",
            )
            assert c._ws is not None
            c._ws.transport.abort()  # no close frame: the socket just goes
            await c.close()
            _touch(f"{gate}.{k}")  # the task prints its next phase, nobody listening
            c = svc.client(on_notification=wire)
            await c.connect()
            await c.subscribe(tid, from_offset=_contiguous(wire, tid), keep_events=False)
        await asyncio.wait_for(wire.done[tid].wait(), 60)
        got = await wire.assemble(c, tid)
        rec = await c.status(tid)
        await c.close()
        if got != expected[j]:
            problems.append(f"drop{j}: received {len(got)} B, expected {len(expected[j])} B")
        if rec["status"] != "completed":
            problems.append(f"drop{j}: {rec['status']}")
        if file_sha(svc.log_path(tid)) != (len(expected[j]), sha(expected[j])):
            problems.append(f"drop{j}: log differs")
        return rec["pgid"] or 0

    pgids = await asyncio.gather(*(one(j) for j in range(P.drop_clients)))
    await wait_until(lambda: _health(svc)["connections"] == 0, 30, "connections to be released")
    left = await leftovers(mark, pgids)
    row.tasks = P.drop_clients
    row.bytes = sum(len(e) for e in expected.values())
    row.failures = len(problems)
    row.leftovers = len(left)
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    row.note = f"{P.drop_clients * P.drop_rounds} sockets aborted mid-stream"
    assert not problems, problems
    assert not left, left


def _runs(items: list[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for x in items:
        if out and out[-1][0] == x:
            out[-1] = (x, out[-1][1] + 1)
        else:
            out.append((x, 1))
    return out


def _touch(path: str) -> None:
    Path(path).touch()


def _health(svc: Any) -> dict[str, Any]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{svc.port}/health", trust_env=False).json())


# ------------------------------------------------------------------ children that misbehave


async def test_misbehaving_children(make_svc: MakeSvc, mark: str, tmp_path: Path) -> None:
    """Children that ignore SIGTERM (killed after the grace period), that fork a grandchild
    and exit (the grandchild goes with the task, whether it holds the pipes or not), and
    that close stdout early but keep running (the task ends when they exit, no hang)."""
    row = REPORT.row("misbehaving children")
    svc = await make_svc()
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    wire = Wire()
    problems: list[str] = []
    pgids: list[int] = []
    latencies: list[float] = []
    async with svc.client(on_notification=wire) as c, svc.client() as c2:
        n = max(2, P.fault_tasks // 3)
        # 1. SIGTERM ignored, by the leader and its grandchild: CANCEL from two clients.
        stubborn = [await c.execute(child("ignore_term"), env=env) for _ in range(n)]
        for h in stubborn:
            await asyncio.wait_for(wire.first_output[h.task_id].wait(), 60)
            pgids.append(h.pid or 0)

        async def cancel(client: ExecutorClient, tid: str) -> Any:
            t = time.perf_counter()
            try:
                return (await client.control(tid, "CANCEL"))["status"]
            except Exception as exc:  # the other client's CANCEL may have won
                return getattr(exc, "code", repr(exc))
            finally:
                latencies.append(time.perf_counter() - t)

        outcomes = await asyncio.gather(
            *(cancel(cl, h.task_id) for h in stubborn for cl in (c, c2))
        )
        if any(o not in ("cancelled", -32003) for o in outcomes):
            problems.append(f"ignore_term CANCEL outcomes {outcomes}")
        for h in stubborn:
            rec = await c.status(h.task_id)
            if rec["status"] != "cancelled" or rec["signal"] != 9:
                problems.append(f"ignore_term: {rec['status']} signal {rec['signal']}")

        # 2. The leader forks a grandchild and exits.
        forked = [
            await c.execute(child("fork_exit", how), env=env)
            for how in ("hold", "close")
            for _ in range(n)
        ]
        for h in forked:
            done = await h.wait(60)
            pgids.append(h.pid or 0)
            out = await c.read_output(h.task_id)
            grandchild = int(out.split()[1])
            if done["status"] != "completed" or done["exit_code"] != 0:
                problems.append(f"fork_exit: {done['status']} exit {done['exit_code']}")
            if _alive(grandchild):
                problems.append(f"fork_exit: grandchild {grandchild} outlived its task")

        # 3. stdout (or both streams) closed early; the child goes on until the gate opens.
        closers: list[tuple[TaskHandle, Path]] = []
        for i, which in enumerate(("out", "both", "out", "both")):
            gate = tmp_path / f"fifo{i}"
            os.mkfifo(gate)
            h = await c.execute(child("close_stdout", gate, which), env=env)
            closers.append((h, gate))
        for i, (h, gate) in enumerate(closers):
            assert h.pid is not None
            pid = h.pid
            await wait_until(lambda pid=pid: not _has_fd(pid, 1), 30, "stdout to be closed")
            rec = await c.status(h.task_id)
            if rec["status"] != "running":
                problems.append(f"close_stdout: {rec['status']} while the child still runs")
            if i < 2:
                await asyncio.to_thread(_open_gate, gate)  # the child reads EOF and exits 0
                done = await h.wait(60)
                want = "completed"
            else:
                done = await c.control(h.task_id, "CANCEL")
                want = "cancelled"
            if done["status"] != want:
                problems.append(f"close_stdout: {done['status']}, expected {want}")
            if await c.read_output(h.task_id) != b"before close\n":
                problems.append("close_stdout: output lost")
            pgids.append(pid)
        left = await leftovers(mark, pgids)
        row.tasks = len(stubborn) + len(forked) + len(closers)
        row.failures = len(problems)
        row.leftovers = len(left)
        row.max_rss = svc.sample_rss()
        row.wall_s = time.monotonic() - t0
        lat = sorted(latencies)
        row.note = (
            f"CANCEL of SIGTERM-ignoring groups: {lat[0]:.3f}-{lat[-1]:.3f} s "
            "(the 1 s kill grace; kept out of the control latency column)"
        )
        assert not problems, problems
        assert not left, left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _has_fd(pid: int, fd: int) -> bool:
    try:
        os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return False
    return True


def _open_gate(gate: Path) -> None:
    with open(gate, "wb"):  # blocks until the child has it open for reading
        pass


# ------------------------------------------------------------------ disk full


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted where the service's logs go; unmounted after."""
    logs = tmp_path / "full" / "logs"
    logs.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(logs)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full test: {r.stderr.strip()}")
    try:
        yield logs
    finally:
        if subprocess.run(["umount", str(logs)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(logs)], capture_output=True)


async def test_disk_full_on_the_log_directory(
    make_svc: MakeSvc, mark: str, small_tmpfs: Path
) -> None:
    """A task printing more than the log disk holds: a clear process.error, the record's
    log_errors, every byte still streamed live, the task itself unharmed; the service keeps
    serving, and logs work again once space is freed."""
    row = REPORT.row("disk full (2 MiB tmpfs logs)")
    svc = await make_svc(small_tmpfs.parent)
    t0 = time.monotonic()
    env = {"CC_STRESS_MARK": mark}
    wire = Wire()
    size = 4 * MB
    async with svc.client(on_notification=wire) as c, svc.client() as other:
        h = await c.execute(child("bulk", "full", size), env=env)
        done = await h.wait(60)
        rec = await c.status(h.task_id)
        errors = wire.errors.get(h.task_id, [])
        assert done["status"] == "completed" and done["exit_code"] == 0, done
        assert errors and "No space left" in errors[0]["error"], errors
        assert "No space left" in rec["log_errors"]["stdout"], rec
        assert rec["stdout_bytes"] == size
        live = b"".join(d for _, d in sorted(wire.pieces[(h.task_id, "stdout")]))
        assert live == bulk_bytes("full", size)  # the stream was not cut short
        logged, _ = file_sha(svc.log_path(h.task_id))
        assert 0 < logged < size
        # What the error says was logged is what the log holds: a short write is not lost.
        assert f"after {logged} bytes" in rec["log_errors"]["stdout"], (logged, rec)
        assert (await c.read_output(h.task_id)) == bulk_bytes("full", size)[:logged]
        page = await c.output(h.task_id, "stdout", 0, 16)
        assert page["size"] == 16
        # The service keeps serving: other connections, other methods, other tasks.
        assert (await other.ping())["pong"] is True
        small = await other.execute(child("chatty", "small", 10), env=env)
        assert (await small.wait(60))["status"] == "completed"
        assert (await other.status())["stats"]["running"] == 0
        # Space freed: logs are whole again.
        os.unlink(svc.log_path(h.task_id))
        again = await other.execute(child("chatty", "again", 100), env=env)
        assert (await again.wait(60))["status"] == "completed"
        want = chatty_bytes("again", 100)
        assert file_sha(svc.log_path(again.task_id)) == (len(want), sha(want))
        left = await leftovers(mark, [h.pid or 0, small.pid or 0, again.pid or 0])
        assert svc.alive()
    svc.stop()  # before the tmpfs goes: it holds no file there then
    row.tasks = 3
    row.bytes = size
    row.leftovers = len(left)
    row.max_rss = svc.max_rss
    row.wall_s = time.monotonic() - t0
    row.note = f"{logged} of {size} B fitted on the log disk; process.error: {errors[0]['error']}"
    assert not left, left


# ------------------------------------------------------------------ the bridge across a restart


async def test_bridge_falls_back_and_returns_across_a_restart(
    make_svc: MakeSvc, mark: str, tmp_path: Path
) -> None:
    """kill -9 of the service under a bridge: calls run locally at once, then go back to
    the service when it is up again; the task that was running remotely is `lost` and gone."""
    row = REPORT.row("bridge across a service restart")
    svc = await make_svc()
    t0 = time.monotonic()
    state = tmp_path / "fake-claude-bridge"
    state.mkdir()
    bridge_dir = tmp_path / "bridge-data"
    bridge_dir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CC_EXECUTOR_DATA_DIR": str(bridge_dir),
        "CC_EXECUTOR_WEBSOCKET_URL": svc.url,
        "CC_EXECUTOR_TOKEN": svc.token,
        "CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE),
        "CC_EXECUTOR_KILL_GRACE_SECONDS": "1",
        "CC_EXECUTOR_BRIDGE_LOG_LEVEL": "INFO",
        "FAKE_CLAUDE_STATE_DIR": str(state),
    }
    marked = f"CC_STRESS_MARK={mark} "
    backends: list[str] = []

    async def run(bridge: Any, command: str) -> dict[str, Any] | None:
        r = await asyncio.wait_for(bridge.call_tool("execute_task", {"command": command}), 60)
        if r.is_error:
            return None  # a call crossing the crash may report the lost connection
        out: dict[str, Any] = r.structured_content
        backends.append(out["backend"])
        return out

    async def until_backend(bridge: Any, command: str, backend: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            out = await run(bridge, command)
            if out is not None and out["backend"] == backend:
                return out
            assert time.monotonic() < deadline, f"never reached backend {backend}"

    log = tmp_path / "bridge.log"
    async with bridge_in_task(env, log) as bridge:
        first = await run(bridge, marked + "echo one")
        assert first is not None and first["backend"] == "websocket"
        r = await bridge.call_tool("execute_task", {"command": marked + "sleep 300", "wait": False})
        remote_long = r.structured_content
        assert remote_long["backend"] == "websocket"
        svc.kill9()
        local = await until_backend(bridge, marked + "echo two", "local")
        assert local["output"] == "two\n"
        more = await asyncio.gather(*(run(bridge, marked + f"echo l{i}") for i in range(5)))
        assert all(m is not None and m["backend"] == "local" for m in more)
        await svc.start()
        back = await until_backend(bridge, marked + "echo three", "websocket")
        assert back["output"] == "three\n"
        r = await bridge.call_tool("get_execution_status", {"task_id": remote_long["task_id"]})
        assert r.structured_content["status"] == "lost", r.structured_content
        left = await leftovers(mark, [remote_long["pid"]])
        row.tasks = len(backends) + 1
        row.leftovers = len(left)
        row.max_rss = svc.sample_rss()
        row.wall_s = time.monotonic() - t0
        row.note = "backends in call order: " + " ".join(f"{b}x{n}" for b, n in _runs(backends))
        assert not left, left
