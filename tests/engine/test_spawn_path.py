"""Helper children (hooks) through engine/process.py: stdin from a file, TERM then KILL of
the whole group at the time limit, back only once the group is gone, journaled, and reaped
by the next start after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cc_executor.config import Settings
from cc_executor.engine import Engine, TaskRecord, process
from cc_executor.engine.journal import TASK_ENV, HelperSpawn, SpawnJournal
from tests.support import live_members, pid_alive, wait_until

# The leader logs a TERM and goes on; its child ignores TERM (an ignored signal stays
# ignored across exec). `wait` returns at a trapped signal, so the loop waits again.
STUBBORN = """
trap 'echo TERM >> "$DIR/marks"' TERM
sh -c 'trap "" TERM; echo $$ > "$DIR/child.pid"; exec sleep 60' &
until [ -s "$DIR/child.pid" ]; do sleep 0.01; done
echo ready > "$DIR/ready"
while :; do wait; done
"""

# The leader dies of TERM; its child ignores TERM.
LEAVES_A_STUBBORN_CHILD = """
sh -c 'trap "" TERM; echo $$ > "$DIR/child.pid"; exec sleep 60' &
until [ -s "$DIR/child.pid" ]; do sleep 0.01; done
echo ready > "$DIR/ready"
wait
"""


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Groups a test started; SIGKILLed at the end whatever the test did to them."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:  # not reaped yet: its pid, and so its group id, are ours
            process.kill_group_now(proc.pid)
            proc.wait()


def start(
    spawned: list[subprocess.Popen[bytes]], script: str, directory: Path, **env: str
) -> subprocess.Popen[bytes]:
    proc = process.spawn(
        ["/bin/sh", "-c", script],
        None,
        {**os.environ, "DIR": str(directory), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    spawned.append(proc)
    return proc


async def ready(directory: Path) -> int:
    """Wait for the script's ready gate; the pid of its stubborn child."""
    assert await wait_until(lambda: (directory / "ready").exists())
    return int((directory / "child.pid").read_text())


async def test_a_helper_reads_its_stdin_from_a_file_in_its_own_group(tmp_path: Path) -> None:
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out:
        stdin.write(b'{"phase": "pre_execute"}')
        stdin.seek(0)
        proc = process.spawn(
            ["/bin/sh", "-c", 'cat; echo " $(cut -d" " -f5 /proc/$$/stat) $CC_EXECUTOR_TASK_ID"'],
            None,
            {**os.environ, TASK_ENV: "t1.pre_execute-0"},
            stdin=stdin,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is None and proc.stdin is None
        assert await process.run_to_end(proc, timeout=10, grace=1) is False
        assert proc.returncode == 0
        out.seek(0)
        echoed, pgid, tag = out.read().decode().rsplit(" ", 2)
    assert echoed == '{"phase": "pre_execute"}'
    assert int(pgid) == proc.pid  # its own group, led by itself
    assert tag.strip() == "t1.pre_execute-0"


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "waiter-thread"])
async def test_past_its_time_limit_the_group_gets_term_then_kill(
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    pidfd: bool,
) -> None:
    if not pidfd:  # as on a kernel without pidfds: the exit is learnt by a thread

        def no_pidfd(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    proc = start(spawned, STUBBORN, tmp_path)
    child = await ready(tmp_path)
    began = time.monotonic()
    assert await process.run_to_end(proc, timeout=0.2, grace=1.0) is True
    took = time.monotonic() - began
    assert (tmp_path / "marks").read_text() == "TERM\n"  # TERM came first, and was survived
    assert proc.returncode == -signal.SIGKILL
    assert took >= 1.2  # SIGKILL only after the grace period
    # Back only once the whole group is gone, the TERM-ignoring child too: no polling here.
    assert not live_members(proc.pid) and not pid_alive(child)


async def test_a_leader_dead_of_term_takes_its_group_along_at_once(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    proc = start(spawned, LEAVES_A_STUBBORN_CHILD, tmp_path)
    child = await ready(tmp_path)
    began = time.monotonic()
    assert await process.run_to_end(proc, timeout=0.2, grace=60) is True
    assert time.monotonic() - began < 30  # no grace period once the leader is gone
    assert proc.returncode == -signal.SIGTERM
    assert not live_members(proc.pid) and not pid_alive(child)


async def test_what_a_helper_leaves_in_its_group_ends_with_it(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    script = 'sleep 60 & echo $! > "$DIR/child.pid"; echo ready > "$DIR/ready"; exit 3'
    proc = start(spawned, script, tmp_path)
    assert await process.run_to_end(proc, timeout=30, grace=1) is False
    assert proc.returncode == 3
    child = int((tmp_path / "child.pid").read_text())
    assert not live_members(proc.pid) and not pid_alive(child)


async def test_a_cancelled_run_still_ends_the_group_before_it_unwinds(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    proc = start(spawned, STUBBORN, tmp_path)
    child = await ready(tmp_path)
    run = asyncio.create_task(process.run_to_end(proc, timeout=60, grace=60))
    await asyncio.sleep(0)  # let it start waiting
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert proc.returncode == -signal.SIGKILL  # cancelled: no grace
    assert not live_members(proc.pid) and not pid_alive(child)


# ------------------------------------------------------------------ the journal


def helper(tag: str, pid: int | None = None, ticks: int | None = None) -> HelperSpawn:
    return HelperSpawn(tag, tag.split(".")[0], "post_execute", f"hook {tag}", pid, ticks)


def test_the_journal_names_the_helpers_that_did_not_end_across_a_compaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spawned.jsonl"
    journal = SpawnJournal(path)
    journal.open()
    running, finished = helper("t1.post_execute-0"), helper("t2.post_execute-0")
    for h in (running, finished):
        journal.append_helper(h)  # before the spawn
        h.pid, h.start_ticks = 4242, 99
        journal.append_helper(h)  # with its pid
    journal.helper_ended(finished)
    for i in range(1100):  # finished tasks, enough to compact
        journal.append(TaskRecord(task_id=f"done{i}", command="x", argv=["x"], pid=7))
    size = path.stat().st_size
    journal.maybe_compact(live=[])
    assert path.stat().st_size < size // 100  # rewritten: only the live helper is left
    journal.append(TaskRecord(task_id="later", command="y", argv=["y"], pid=8))
    # What the next start reads, without a clean close (a crash):
    after_crash = SpawnJournal(path)
    assert after_crash.stale_helpers() == [running]
    assert list(after_crash.read()) == ["later"]


async def test_the_next_start_reaps_hook_groups_a_crash_left_and_spares_a_reused_pid(
    settings: Settings, spawned: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    dirs = [tmp_path / name for name in ("ours", "stranger", "cut_short")]
    for d in dirs:
        d.mkdir()
    ours_dir, stranger_dir, cut_dir = dirs
    # Three groups, as a killed service would leave them: a hook it journaled with its pid,
    # a process that got a journaled hook's pid after that hook ended (other start ticks),
    # and a hook whose spawn the crash cut short (no pid written, only its tag in its env).
    ours = start(spawned, STUBBORN, ours_dir)
    stranger = start(spawned, STUBBORN, stranger_dir)
    cut = start(spawned, STUBBORN, cut_dir, **{TASK_ENV: "t3.pre_execute-0"})
    children = [await ready(d) for d in dirs]
    journal = SpawnJournal(settings.data_dir / "spawned.jsonl")
    journal.open()
    journal.append_helper(helper("t1.post_execute-0", ours.pid, process.start_ticks(ours.pid)))
    ticks = process.start_ticks(stranger.pid)
    assert ticks is not None
    journal.append_helper(helper("t2.post_execute-0", stranger.pid, ticks - 1))
    journal.append_helper(helper("t3.pre_execute-0"))

    engine = Engine(settings)
    await engine.start()
    try:
        # Reaped during start-up, whole groups: gone by the time start() returns.
        assert not live_members(ours.pid) and not pid_alive(children[0])
        assert not live_members(cut.pid) and not pid_alive(children[2])
        assert pid_alive(stranger.pid) and pid_alive(children[1])  # not ours: spared
    finally:
        await engine.close()


def test_a_childs_start_ticks_from_the_clock_are_what_proc_says() -> None:
    """A spawn within one clock tick knows its child's start time without reading /proc
    (a read that waits for the child's exec); the value is /proc's own, exactly."""
    from_clock = 0
    for _ in range(60):
        proc = process.spawn(["sleep", "5"], None, {"PATH": os.environ["PATH"]})
        try:
            known = process._spawned_at.get(proc)
            from_clock += known is not None
            assert process.leader_start_ticks(proc) == process.start_ticks(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    assert from_clock >= 30, f"only {from_clock} of 60 spawns knew their start from the clock"
