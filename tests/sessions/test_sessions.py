"""Sessions through the real service, with the fake `claude` (which honours --resume).

Every test talks JSON-RPC over the WebSocket to a real ExecutorService whose turns run the
fake CLI as real child processes. Ordering is checked with the task records' timestamps
and states, never with durations.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.protocol import ErrorCode
from tests.sessions.conftest import (
    ANSWER,
    Restartable,
    call,
    call_error,
    turns_of,
)
from tests.support import eventually, live_members

pytestmark = pytest.mark.usefixtures("fake_claude_state")


async def create(client: ExecutorClient, workdir: Path, **params: Any) -> dict[str, Any]:
    return await call(client, "session.create", working_dir=str(workdir), **params)


async def send_wait(client: ExecutorClient, session: str, message: str, **kw: Any) -> Any:
    return await call(client, "session.send", session_id=session, message=message, wait=True, **kw)


# ------------------------------------------------------------------------ conversations


async def test_conversation_continues_across_turns(client: ExecutorClient, workdir: Path) -> None:
    s = await create(client, workdir, name="writer", model="sonnet")
    sid = s["session_id"]
    assert s["status"] == "idle" and s["working_dir"] == str(workdir) and s["turns"] == 0

    first = await send_wait(client, sid, "hello")
    assert first["turn"] == 1 and first["status"] == "completed"
    assert first["result"] == ANSWER + "hello"
    claude_id = first["claude_session_id"]
    assert claude_id

    second = await send_wait(client, "writer", "and then?")  # by name
    assert second["result"] == ANSWER + "and then? (turn 2, remembers 1 earlier prompts)"
    third = await send_wait(client, sid, "last")
    assert third["result"].endswith("(turn 3, remembers 2 earlier prompts)")

    # Each turn is an ordinary execute_claude task: status and output work on it.
    rec1 = await client.status(first["task_id"])
    rec2 = await client.status(second["task_id"])
    assert rec1["kind"] == "claude" and rec1["session_id"] == sid and rec1["session_turn"] == 1
    assert not any(a.startswith("--resume") for a in rec1["argv"]) and "--model" in rec1["argv"]
    assert rec1["cwd"] == str(workdir)
    assert f"--resume={claude_id}" in rec2["argv"]
    assert b'"type":"result"' in (await client.read_output(second["task_id"])).replace(b" ", b"")

    status = await call(client, "session.status", session_id=sid)
    assert status["turns"] == 3 and status["status"] == "idle"
    assert status["claude_session_id"] == claude_id and status["last_status"] == "completed"
    assert status["last_task_id"] == third["task_id"]


async def test_conversation_survives_a_restart(restartable: Restartable, workdir: Path) -> None:
    c = restartable.client
    s = await create(c, workdir, name="keeper")
    sid = s["session_id"]
    first = await send_wait(c, sid, "remember the number 7")
    # A hung turn and one queued behind it when the service stops.
    hung = await call(c, "session.send", session_id=sid, message="think FAKE_HANG")
    queued = await call(c, "session.send", session_id=sid, message="never runs")
    assert hung["status"] == "running" and hung["task_id"]
    assert queued["status"] == "queued" and queued["task_id"] is None
    assert queued["position"] == 1
    pgid = (await c.status(hung["task_id"]))["pgid"]

    await restartable.restart()
    c = restartable.client
    assert not live_members(pgid)

    listing = await call(c, "session.list")
    assert [x["session_id"] for x in listing["sessions"]] == [sid]
    assert listing["total"] == 1 and listing["active"] == 1
    again = listing["sessions"][0]
    assert again["name"] == "keeper" and again["status"] == "idle"
    assert again["claude_session_id"] == first["claude_session_id"]

    turns = await turns_of(c, sid)
    assert [(t["turn"], t["status"]) for t in turns] == [
        (1, "completed"),
        (2, "cancelled"),
        (3, "cancelled"),
    ]
    assert "before this turn ran" in turns[2]["error"]

    # The conversation resumes: the fake remembers the one prompt it completed.
    later = await send_wait(c, "keeper", "which number?")
    assert later["turn"] == 4 and later["status"] == "completed"
    assert later["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    assert later["claude_session_id"] == first["claude_session_id"]


# ------------------------------------------------------------------------ ordering


async def test_sessions_run_in_parallel_while_each_session_keeps_order(
    client: ExecutorClient, tmp_path: Path
) -> None:
    a = (await create(client, tmp_path, name="a"))["session_id"]
    b = (await create(client, tmp_path, name="b"))["session_id"]
    a1 = await call(client, "session.send", session_id=a, message="a1 FAKE_SLOW=0.4")
    a2 = await call(client, "session.send", session_id=a, message="a2 FAKE_SLOW=0.2")
    b1 = await call(client, "session.send", session_id=b, message="b1 FAKE_SLOW=0.4")
    assert a1["status"] == "running" and a2["status"] == "queued" and b1["status"] == "running"
    # b1 started while a1 still runs: different sessions do not wait for each other.
    assert (await client.status(a1["task_id"]))["status"] == "running"
    # A waited turn behind each queue ends after everything sent before it.
    a3, b2 = await asyncio.gather(send_wait(client, a, "a3"), send_wait(client, b, "b2"))
    assert a3["status"] == b2["status"] == "completed"

    recs: dict[str, list[dict[str, Any]]] = {}
    for sid in (a, b):
        turns = await turns_of(client, sid)
        assert [t["message"].split()[0] for t in turns] == (
            ["a1", "a2", "a3"] if sid == a else ["b1", "b2"]
        )
        assert all(t["status"] == "completed" for t in turns)
        recs[sid] = [await client.status(t["task_id"]) for t in turns]
    for seq in recs.values():  # within a session: each turn starts after the previous ended
        for earlier, later in itertools.pairwise(seq):
            assert earlier["ended_at"] <= later["started_at"]
    ra1, rb1 = recs[a][0], recs[b][0]  # across sessions: a1 and b1 overlap
    assert ra1["started_at"] < rb1["ended_at"] and rb1["started_at"] < ra1["ended_at"]
    # The resumed conversation saw the turns in the order sent.
    assert a3["result"].endswith("(turn 3, remembers 2 earlier prompts)")


# ------------------------------------------------------------------------ coordinate


async def test_coordinate_returns_each_result_and_reports_timeouts(
    client: ExecutorClient, tmp_path: Path
) -> None:
    ids = {}
    for name in ("frontend", "backend", "tests"):
        d = tmp_path / name
        d.mkdir()
        ids[name] = (await create(client, d, name=name))["session_id"]
    res = await call(
        client,
        "session.coordinate",
        task_description="Build the user login feature",
        assignments={
            ids["frontend"]: "Write the login form",
            "backend": "Write the /login endpoint",  # names work too
            ids["tests"]: "Write the tests FAKE_HANG",
        },
        timeout=3,
    )
    assert res["status"] == "timed_out"
    assert res["timed_out"] == [ids["tests"]]
    assert res["completed"] == 2 and res["failed"] == 0
    results = res["results"]
    assert set(results) == set(ids.values())
    for name, part in (("frontend", "login form"), ("backend", "/login endpoint")):
        r = results[ids[name]]
        assert r["status"] == "completed" and r["name"] == name
        assert "Build the user login feature" in r["result"] and part in r["result"]
        assert "FAKE_HANG" not in r["result"]  # another session's subtask is not shared
    hung = results[ids["tests"]]
    assert hung["status"] == "timed_out" and hung["turn_status"] == "running"
    assert hung["result"] is None and hung["task_id"]

    # The timed-out turn is left running (cancel_on_timeout=false); kill ends it.
    pgid = (await client.status(hung["task_id"]))["pgid"]
    assert live_members(pgid)
    await call(client, "session.kill", session_id=ids["tests"])
    assert not live_members(pgid)

    # cancel_on_timeout cancels what is still running when the time is up.
    res = await call(
        client,
        "session.coordinate",
        task_description="Second round",
        assignments={ids["frontend"]: "polish FAKE_HANG", ids["backend"]: "document"},
        timeout=2,
        cancel_on_timeout=True,
    )
    assert res["timed_out"] == [ids["frontend"]]
    r = res["results"][ids["frontend"]]
    assert r["status"] == "timed_out" and r["turn_status"] == "cancelled"
    assert not live_members((await client.status(r["task_id"]))["pgid"])
    assert res["results"][ids["backend"]]["status"] == "completed"
    # The session goes on after a cancelled turn.
    after = await send_wait(client, "frontend", "still there?")
    assert after["status"] == "completed"


# ------------------------------------------------------------------------ kill and control


async def test_kill_leaves_no_process_and_ends_the_session(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = (await create(client, workdir, name="doomed"))["session_id"]
    running = await call(client, "session.send", session_id=sid, message="FAKE_IGNORE_SIGTERM")
    queued = await call(client, "session.send", session_id=sid, message="never runs")
    pgid = (await client.status(running["task_id"]))["pgid"]
    assert live_members(pgid)

    res = await call(client, "session.kill", session_id="doomed")
    assert res["killed"] is True and res["status"] == "ended"
    assert res["cancelled_task_id"] == running["task_id"]
    assert res["dropped_turns"] == [queued["turn"]]
    assert not live_members(pgid)  # SIGTERM ignored: SIGKILL after the grace period
    assert (await client.status(running["task_id"]))["status"] == "cancelled"

    status = await call(client, "session.status", session_id=sid)
    assert status["status"] == "ended" and status["end_reason"] == "killed"
    assert [t["status"] for t in await turns_of(client, sid)] == ["cancelled", "cancelled"]
    err = await call_error(client, "session.send", session_id=sid, message="hello?")
    assert err.code == ErrorCode.INVALID_STATE and "ended" in err.message
    assert (await call(client, "session.list"))["sessions"] == []
    every = await call(client, "session.list", include_ended=True)
    assert [x["session_id"] for x in every["sessions"]] == [sid]
    assert every["total"] == 1 and every["active"] == 0
    again = await call(client, "session.kill", session_id=sid)
    assert again["killed"] is False


async def test_turns_are_ordinary_tasks_cancel_one_and_the_session_goes_on(
    client: ExecutorClient, workdir: Path
) -> None:
    sid = (await create(client, workdir))["session_id"]
    first = await send_wait(client, sid, "one")
    hung = await call(client, "session.send", session_id=sid, message="FAKE_HANG")
    nxt = await call(client, "session.send", session_id=sid, message="after the hang")
    paused = await client.control(hung["task_id"], "PAUSE")
    assert paused["status"] == "paused"
    await client.control(hung["task_id"], "CANCEL")
    done = await send_wait(client, sid, "three")
    turns = await turns_of(client, sid)
    assert [t["status"] for t in turns] == ["completed", "cancelled", "completed", "completed"]
    assert turns[2]["turn"] == nxt["turn"]
    assert turns[2]["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    assert done["claude_session_id"] == first["claude_session_id"]


# ------------------------------------------------------------------------ watch mode


async def test_watch_mode_continues_until_max_turns(client: ExecutorClient, workdir: Path) -> None:
    s = await create(
        client,
        workdir,
        name="watcher",
        watch_mode=True,
        max_turns=2,
        continuation_prompt="keep going",
        prompt="start the work",
    )
    sid = s["session_id"]
    assert s["first_turn"]["turn"] == 1 and s["first_turn"]["task_id"]
    status = await eventually(
        lambda: call(client, "session.status", session_id=sid),
        lambda st: st["status"] == "idle",
    )
    assert status["watch_turns"] == 2 and status["turns"] == 3 and status["queued"] == 0
    assert status["watch_stopped"] == "max_turns (2) reached"
    turns = await turns_of(client, sid)
    assert [(t["kind"], t["message"], t["status"]) for t in turns] == [
        ("message", "start the work", "completed"),
        ("watch", "keep going", "completed"),
        ("watch", "keep going", "completed"),
    ]
    assert turns[2]["result"] == ANSWER + "keep going (turn 3, remembers 2 earlier prompts)"
    # Past max_turns a message still runs, without further continuations.
    more = await send_wait(client, sid, "one more")
    assert more["turn"] == 4 and more["status"] == "completed"
    assert (await call(client, "session.status", session_id=sid))["turns"] == 4


async def test_watch_mode_stops_when_killed(client: ExecutorClient, workdir: Path) -> None:
    s = await create(
        client, workdir, watch_mode=True, max_turns=50, continuation_prompt="go FAKE_SLOW=0.2"
    )
    sid = s["session_id"]
    await call(client, "session.send", session_id=sid, message="begin")
    await eventually(
        lambda: call(client, "session.status", session_id=sid), lambda st: st["watch_turns"] >= 1
    )
    res = await call(client, "session.kill", session_id=sid)
    st = await call(client, "session.status", session_id=sid)
    assert st["status"] == "ended" and st["queued"] == 0
    turns = await turns_of(client, sid)
    assert all(t["status"] != "running" for t in turns)
    assert len(turns) == st["turns"] < 50
    if res["cancelled_task_id"]:
        assert not live_members((await client.status(res["cancelled_task_id"]))["pgid"])


# ------------------------------------------------------------------------ messages


async def test_messages_between_sessions_are_recorded_on_both_sides(
    client: ExecutorClient, tmp_path: Path
) -> None:
    alice = (await create(client, tmp_path, name="alice"))["session_id"]
    bob = (await create(client, tmp_path, name="bob"))["session_id"]
    res = await send_wait(client, "bob", "Please review my API", from_session="alice")
    assert res["status"] == "completed" and res["message_id"]
    assert f"[Message from cc-executor session {alice} (alice)]" in res["result"]
    assert "Please review my API" in res["result"]

    out = (await call(client, "session.logs", session_id=alice))["entries"]
    assert [(e["type"], e["direction"], e["to_session"]) for e in out] == [("message", "out", bob)]
    inbox = (await call(client, "session.logs", session_id=bob))["entries"]
    assert [e["type"] for e in inbox] == ["message", "turn"]
    assert inbox[0]["direction"] == "in" and inbox[0]["from_session"] == alice
    assert inbox[0]["text"] == "Please review my API" and inbox[0]["turn"] == 1
    assert inbox[1]["from_session"] == alice and inbox[1]["message"] == "Please review my API"
    assert inbox[1]["task_id"] == res["task_id"]
    assert (await call(client, "session.status", session_id=alice))["messages_out"] == 1
    assert (await call(client, "session.status", session_id=bob))["messages_in"] == 1

    # `lines` keeps the newest entries, newest last.
    await send_wait(client, bob, "second")
    last = (await call(client, "session.logs", session_id=bob, lines=1))["entries"]
    assert [(e["type"], e["message"]) for e in last] == [("turn", "second")]

    err = await call_error(
        client, "session.send", session_id=bob, message="hi", from_session="s-nobody"
    )
    assert err.code == ErrorCode.SESSION_NOT_FOUND and err.data == {"from_session": "s-nobody"}


# ------------------------------------------------------------------------ temp sessions


async def test_spawn_temp_runs_one_thing_and_cleans_up(
    client: ExecutorClient, workdir: Path
) -> None:
    cmd = [
        sys.executable,
        "-c",
        "import os, sys; print(os.getcwd()); print('oops', file=sys.stderr)",
    ]
    res = await call(
        client, "session.spawn_temp", command=cmd, working_dir=str(workdir), timeout=30
    )
    assert res["status"] == "completed" and res["exit_code"] == 0 and res["kind"] == "command"
    assert res["output"] == f"{workdir}\n" and res["stderr"] == "oops\n"
    assert res["result"] == res["output"] and res["cleaned_up"] is True
    assert [e["kind"] for e in res["logs"]] == ["command"]

    res = await call(
        client, "session.spawn_temp", prompt="quick question", working_dir=str(workdir)
    )
    assert res["status"] == "completed" and res["result"] == ANSWER + "quick question"
    assert res["kind"] == "claude" and '"type":"result"' in res["output"].replace(" ", "")

    res = await call(
        client,
        "session.spawn_temp",
        command=[sys.executable, "-c", "import time; print('start', flush=True); time.sleep(60)"],
        working_dir=str(workdir),
        timeout=0.5,
    )
    assert res["status"] == "timed_out" and res["output"] == "start\n"
    assert not live_members((await client.status(res["task_id"]))["pgid"])

    # Temp sessions end when done: listed only with include_ended.
    assert (await call(client, "session.list"))["sessions"] == []
    ended = (await call(client, "session.list", include_ended=True))["sessions"]
    assert len(ended) == 3 and all(x["temp"] and x["status"] == "ended" for x in ended)


# ------------------------------------------------------------------------ errors


async def test_bad_working_dir_is_a_clear_error(client: ExecutorClient, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    err = await call_error(client, "session.create", working_dir=str(missing))
    assert err.code == ErrorCode.INVALID_PARAMS
    assert str(missing) in err.message and "does not exist" in err.message
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    err = await call_error(client, "session.create", working_dir=str(a_file))
    assert err.code == ErrorCode.INVALID_PARAMS and "not a directory" in err.message
    err = await call_error(client, "session.spawn_temp", command="true", working_dir=str(missing))
    assert err.code == ErrorCode.INVALID_PARAMS
    assert (await call(client, "session.list", include_ended=True))["total"] == 0


async def test_unknown_session_is_32010(client: ExecutorClient, workdir: Path) -> None:
    for method, params in (
        ("session.status", {}),
        ("session.logs", {}),
        ("session.kill", {}),
        ("session.send", {"message": "hi"}),
    ):
        err = await call_error(client, method, session_id="s-missing", **params)
        assert err.code == ErrorCode.SESSION_NOT_FOUND == -32010, method
        assert "s-missing" in err.message and err.data == {"session_id": "s-missing"}
    known = (await create(client, workdir))["session_id"]
    err = await call_error(
        client,
        "session.coordinate",
        task_description="x",
        assignments={known: "a", "s-gone": "b"},
    )
    assert err.code == ErrorCode.SESSION_NOT_FOUND and err.data == {"missing": ["s-gone"]}
    # Nothing was sent to the known session.
    assert (await call(client, "session.status", session_id=known))["turns"] == 0


async def test_names_are_unique_among_active_sessions(
    client: ExecutorClient, workdir: Path
) -> None:
    first = await create(client, workdir, name="solo")
    err = await call_error(client, "session.create", working_dir=str(workdir), name="solo")
    assert err.code == ErrorCode.INVALID_PARAMS and err.data["session_id"] == first["session_id"]
    await call(client, "session.kill", session_id="solo")
    second = await create(client, workdir, name="solo")
    status = await call(client, "session.status", session_id="solo")
    assert status["session_id"] == second["session_id"]


# ------------------------------------------------------------------------ crash recovery


async def test_after_a_crash_open_turns_are_settled_and_the_session_resumes(
    tmp_path: Path,
) -> None:
    from cc_executor.config import Settings
    from cc_executor.server import ExecutorService
    from tests.support import FAKE_CLAUDE, ServiceProcess

    data = tmp_path / "crash-data"
    data.mkdir()
    workdir = tmp_path / "w"
    workdir.mkdir()
    sp = ServiceProcess(data, tmp_path / "svc.log", CC_EXECUTOR_CLAUDE_BIN=str(FAKE_CLAUDE))
    await sp.start()
    try:
        async with ExecutorClient(sp.url, sp.token) as c:
            sid = (await create(c, workdir, name="survivor"))["session_id"]
            first = await send_wait(c, sid, "before the crash")
            hung = await call(c, "session.send", session_id=sid, message="FAKE_HANG")
            await call(c, "session.send", session_id=sid, message="queued at the crash")
            pgid = (await c.status(hung["task_id"]))["pgid"]
    finally:
        sp.kill9()  # no chance to tidy up
    assert live_members(pgid)  # the orphaned turn still runs

    settings = Settings(
        data_dir=data,
        port=0,
        kill_grace_seconds=1.0,
        claude_bin=str(FAKE_CLAUDE),
        log_format="text",
    )
    svc = ExecutorService(settings)
    await svc.start()
    try:
        assert not live_members(pgid)  # reaped at start
        async with ExecutorClient(svc.url, svc.token) as c:
            turns = await turns_of(c, sid)
            assert [t["status"] for t in turns] == ["completed", "lost", "cancelled"]
            status = await call(c, "session.status", session_id="survivor")
            assert status["status"] == "idle"
            assert status["claude_session_id"] == first["claude_session_id"]
            later = await send_wait(c, sid, "after the crash")
            assert later["result"].endswith("(turn 2, remembers 1 earlier prompts)")
    finally:
        await svc.stop()
