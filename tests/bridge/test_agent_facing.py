"""What an agent reads from the bridge: hints that are calls that work, descriptions without
source indentation, schemas that say what is accepted, errors in one line per problem, and
words for what happened (a refused token, the local fallback). Over real stdio with the
official MCP client; where the point is the service path, in front of the service as a
process of its own (`service_process`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from tests.support import ServiceProcess, free_port, live_members, wait_until

from .conftest import bridge_in_task, call, call_error, page_bytes, poll

PAGE_MAX = 1024 * 1024  # what one get_execution_output call returns at most (docs/mcp.md)

HINT = re.compile(
    r'get_execution_output\(task_id="(?P<task_id>[^"]+)", stream="(?P<stream>\w+)", '
    r"offset=(?P<offset>\d+), limit=(?P<limit>\d+)\)"
    r"(?:, then again with offset=next_offset until it reaches (?P<end>\d+))?"
)


def _read(path: Path) -> str:
    return path.read_text()  # the bridge has exited: nothing writes it any more


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def test_the_clipping_hint_of_a_long_output_is_a_call_that_works(
    process_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    expected = b"".join(b"line %07d of a long output\n" % i for i in range(120_000))
    assert len(expected) > 3 * PAGE_MAX
    src = tmp_path / "long.txt"
    src.write_bytes(expected)
    cmd = [
        sys.executable,
        "-c",
        f"import sys; sys.stdout.buffer.write(open({str(src)!r}, 'rb').read())",
    ]
    async with bridge_in_task(process_env, bridge_log) as bridge:
        r = await call(bridge, "execute_task", {"command": cmd})
        assert r["status"] == "completed" and r["backend"] == "websocket"
        assert r["output_truncated"] is True and r["stdout_bytes"] == len(expected)
        hint = HINT.search(r["output"])
        assert hint is not None, r["output"][:2000]
        offset, limit = int(hint["offset"]), int(hint["limit"])
        end = int(hint["end"])  # the gap is more than one page: the hint says where it ends
        assert limit <= PAGE_MAX and end > offset + limit
        assert r["output_omitted"] == {"offset": offset, "limit": limit, "end": end}
        # Follow the hint to the letter: its call, then offset=next_offset until `end`.
        args: dict[str, Any] = {
            "task_id": hint["task_id"],
            "stream": hint["stream"],
            "offset": offset,
            "limit": limit,
        }
        middle = b""
        while args["offset"] < end:
            page = await call(bridge, "get_execution_output", args)
            assert page["size"] > 0
            middle += page_bytes(page)
            args["offset"] = page["next_offset"]
        head, _, rest = r["output"].partition("\n\n[... ")
        tail = rest.split("...]\n\n", 1)[1]
        got = head.encode() + middle[: end - offset] + tail.encode()
        assert got == expected
        # The cap the hint keeps to is the tool's: a page past it is refused, by name.
        msg = await call_error(bridge, "get_execution_output", {**args, "limit": end - offset})
        assert "limit" in msg and str(PAGE_MAX) in msg


async def test_tool_descriptions_carry_no_source_indentation(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    env = {**bridge_env, "CC_EXECUTOR_BRIDGE_MODE": "local"}
    async with bridge_in_task(env, bridge_log) as bridge:
        tools = (await bridge.list_tools()).tools
    assert len(tools) >= 16
    for t in tools:
        texts = [t.description or ""]
        texts += [str(p.get("description", "")) for p in t.input_schema["properties"].values()]
        for text in texts:
            for line in text.splitlines():
                assert not line.startswith((" ", "\t")), f"{t.name}: {line!r}"
        assert t.description and len(t.description) < 1500, t.name  # short, for the agent


async def test_unknown_arguments_are_refused_by_name_and_schemas_say_so(
    bridge_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    env = {**bridge_env, "CC_EXECUTOR_BRIDGE_MODE": "local"}
    marker = tmp_path / "ran"
    async with bridge_in_task(env, bridge_log) as bridge:
        tools = (await bridge.list_tools()).tools
        assert all(t.input_schema.get("additionalProperties") is False for t in tools)
        msg = await call_error(
            bridge, "execute_task", {"command": f"touch {marker}", "foo": 1, "cdw": "/"}
        )
        assert "unknown argument 'foo' for execute_task" in msg
        assert "unknown argument 'cdw' for execute_task (did you mean 'cwd'?)" in msg
        assert len(_lines(msg)) == 2  # one line per problem
        msg = await call_error(bridge, "get_execution_status", {"task": "x"})
        assert "unknown argument 'task' for get_execution_status" in msg
        # Nested: a task of a list, named by its place.
        msg = await call_error(bridge, "execute_task_list", {"tasks": [{"commnd": "true"}]})
        assert "tasks[0]: unknown field 'commnd'" in msg and "tasks[0].command: required" in msg
        listing = await call(bridge, "get_execution_status", {})
        assert listing["tasks"] == [] and not marker.exists()  # nothing ran


async def test_bad_arguments_read_as_one_line_per_problem(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    env = {**bridge_env, "CC_EXECUTOR_BRIDGE_MODE": "local"}
    internal = ("function-after", "ExecuteClaudeParams", "ExecuteParams", "Value error", "[type=")
    seen: list[str] = []
    async with bridge_in_task(env, bridge_log) as bridge:
        msg = await call_error(
            bridge, "execute_task_list", {"tasks": [{"prompt": "x", "fork_session": True}]}
        )
        assert msg == (
            "Error: invalid arguments for execute_task_list: tasks[0]: fork_session requires resume"
        )
        seen.append(msg)
        msg = await call_error(bridge, "execute_claude", {"prompt": "x", "fork_session": True})
        assert msg == "Error: invalid arguments: fork_session requires resume"
        seen.append(msg)
        msg = await call_error(
            bridge,
            "execute_task_list",
            {"tasks": [{"command": 5, "timeout": -1}, {"prompt": "y", "max_turns": 0}]},
        )
        assert _lines(msg)[1:] == [
            "tasks[0].command: should be a valid string or a valid list (got 5)",
            "tasks[0].timeout: should be greater than 0 (got -1)",
            "tasks[1].max_turns: should be greater than or equal to 1 (got 0)",
        ]
        seen.append(msg)
        msg = await call_error(bridge, "execute_task", {"command": "true", "timeout": "soon"})
        assert "timeout: should be a valid number" in msg and "(got 'soon')" in msg
        seen.append(msg)
        msg = await call_error(bridge, "control_execution", {"task_id": "x", "action": "stop"})
        assert "action: should be 'PAUSE', 'RESUME' or 'CANCEL'" in msg
        seen.append(msg)
        for text in seen:
            assert not any(word in text for word in internal), text
        r = await bridge.call_tool("execute_task", {"command": "true", "timeout": 0})
        assert r.is_error and r.structured_content is not None
        assert r.structured_content["code"] == -32602
        assert r.structured_content["data"] == {
            "problems": ["timeout: should be greater than 0 (got 0)"]
        }


async def test_control_accepts_any_case_and_repeats_answer_the_status(
    process_env: dict[str, str], bridge_log: Path
) -> None:
    async with bridge_in_task(process_env, bridge_log) as bridge:
        tools = {t.name: t for t in (await bridge.list_tools()).tools}
        enum = tools["control_execution"].input_schema["properties"]["action"]["enum"]
        assert {"PAUSE", "RESUME", "CANCEL", "pause", "resume", "cancel"} <= set(enum)
        r = await call(bridge, "execute_task", {"command": "sleep 300", "wait": False})
        task_id, pgid = r["task_id"], r["pid"]
        assert await wait_until(lambda: set(live_members(pgid).values()) == {"S"})
        ref = {"task_id": task_id}
        assert (await call(bridge, "control_execution", {**ref, "action": "pause"}))[
            "status"
        ] == "paused"
        again = await call(bridge, "control_execution", {**ref, "action": "PAUSE"})
        assert again["status"] == "paused" and "already paused" in again["note"]
        assert set(live_members(pgid).values()) == {"T"}
        assert (await call(bridge, "control_execution", {**ref, "action": "resume"}))[
            "status"
        ] == "running"
        again = await call(bridge, "control_execution", {**ref, "action": "resume"})
        assert again["status"] == "running" and "already running" in again["note"]
        first = await call(bridge, "control_execution", {**ref, "action": "cancel"})
        assert first["status"] == "cancelled" and not live_members(pgid)
        second = await call(bridge, "control_execution", {**ref, "action": "CANCEL"})
        assert {k: second[k] for k in ("task_id", "action", "status", "backend")} == {
            "task_id": task_id,
            "action": "CANCEL",
            "status": "cancelled",
            "backend": "websocket",
        }
        done = await call(bridge, "execute_task", {"command": "true"})
        r = await call(
            bridge, "control_execution", {"task_id": done["task_id"], "action": "cancel"}
        )
        assert r["status"] == "completed"  # nothing to cancel: its status, not an error
        # Not a repeat: PAUSE of a task that ended is still an error.
        msg = await call_error(
            bridge, "control_execution", {"task_id": done["task_id"], "action": "pause"}
        )
        assert "already completed" in msg


async def test_cancelling_a_list_lists_every_task_with_its_status(
    process_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    tasks = [
        {"command": "echo first"},
        {"command": f"echo $$ > {pid_file}; exec sleep 300"},
        {"command": f"touch {tmp_path / 'never'}"},
        {"prompt": "never either"},
    ]
    async with bridge_in_task(process_env, bridge_log) as bridge:
        started = await call(bridge, "execute_task_list", {"tasks": tasks, "wait": False})
        list_id = started["list_id"]
        running = await poll(
            lambda: call(bridge, "get_execution_status", {"task_id": list_id}),
            lambda d: d.get("running", {}).get("index") == 1 and pid_file.exists(),
        )
        second = running["running"]["task_id"]
        r = await call(bridge, "control_execution", {"task_id": list_id, "action": "cancel"})
        assert {k: r[k] for k in ("task_id", "action", "status", "backend")} == {
            "task_id": list_id,
            "action": "CANCEL",
            "status": "cancelled",
            "backend": "websocket",
        }
        statuses = [(t["index"], t["status"]) for t in r["tasks"]]
        assert statuses == [(0, "completed"), (1, "cancelled"), (2, "skipped"), (3, "skipped")]
        assert r["tasks"][1]["task_id"] == second
        assert not (tmp_path / "never").exists()
        s = await call(bridge, "get_execution_status", {"task_id": list_id})
        assert s["status"] == "cancelled" and s["tasks"] == r["tasks"]
        # The task's own record agrees.
        rec = await call(bridge, "get_execution_status", {"task_id": second})
        assert rec["status"] == "cancelled"
        again = await call(bridge, "control_execution", {"task_id": list_id, "action": "CANCEL"})
        assert again["status"] == "cancelled" and again["tasks"] == r["tasks"]


async def test_a_refused_token_is_named_with_where_the_token_comes_from(
    service_process: ServiceProcess, bridge_env: dict[str, str], bridge_log: Path, tmp_path: Path
) -> None:
    wrong = {**bridge_env, "CC_EXECUTOR_WEBSOCKET_URL": service_process.url}
    env = {
        **wrong,
        "CC_EXECUTOR_TOKEN": "not-the-token",
        "CC_EXECUTOR_BRIDGE_MODE": "websocket",
        "CC_EXECUTOR_CONNECT_RETRY_FOR": "0",
    }
    async with bridge_in_task(env, bridge_log) as bridge:
        msg = await call_error(bridge, "execute_task", {"command": "echo never"})
        sessions = await call_error(bridge, "list_sessions", {})
    for text in (msg, sessions):
        assert "refused the token" in text and "CC_EXECUTOR_TOKEN" in text, text
        assert "cc-executor start" not in text
    token_file = tmp_path / "stale-token"
    token_file.write_text("stale\n")
    env = {**wrong, "CC_EXECUTOR_TOKEN_FILE": str(token_file)}  # auto: it falls back
    async with bridge_in_task(env, bridge_log) as bridge:
        r = await call(bridge, "execute_task", {"command": "echo here"})
    assert r["backend"] == "local" and r["output"] == "here\n"
    assert "local fallback" in r["note"] and "refused the token" in r["note"]
    assert str(token_file) in r["note"] and "cc-executor start" not in r["note"]


async def test_the_local_fallback_says_why_in_words(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    env = {**bridge_env, "CC_EXECUTOR_WEBSOCKET_URL": url}
    async with bridge_in_task(env, bridge_log) as bridge:
        r = await call(bridge, "execute_task", {"command": "echo local"})
        assert r["backend"] == "local"
        assert r["note"].startswith(
            f"ran on the bridge's local fallback: the service at {url} is unreachable"
        )
        r = await call(bridge, "execute_task", {"command": "true", "wait": False})
        assert "local fallback" in r["note"]
        listing = await call(
            bridge, "execute_task_list", {"tasks": [{"command": "echo a"}, {"command": "echo b"}]}
        )
        assert all("local fallback" in t["note"] for t in listing["tasks"])


async def test_an_unreachable_service_is_logged_in_one_line(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    env = {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{free_port()}/ws",
        "CC_EXECUTOR_BRIDGE_MODE": "websocket",
        "CC_EXECUTOR_CONNECT_RETRY_FOR": "0",
    }
    async with bridge_in_task(env, bridge_log) as bridge:
        for tool, args in (("execute_task", {"command": "true"}), ("get_execution_status", {})):
            msg = await call_error(bridge, tool, args)
            assert "unreachable" in msg and "cc-executor start" in msg
    log = _read(bridge_log)
    failed = [line for line in log.splitlines() if "tool call failed" in line]
    assert len(failed) == 2 and all("unreachable" in line for line in failed)
    assert "Traceback" not in log and "unexpectedly" not in log


async def test_a_bad_setting_is_named_and_the_bridge_starts_anyway(
    bridge_env: dict[str, str], bridge_log: Path
) -> None:
    env = {
        **bridge_env,
        "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{free_port()}/ws",
        "CC_EXECUTOR_BRIDGE_MODE": "remote",
        "CC_EXECUTOR_WAIT_TIMEOUT": "soon",
    }
    async with bridge_in_task(env, bridge_log) as bridge:
        r = await call(bridge, "execute_task", {"command": "echo still here"})
        assert r["output"] == "still here\n" and r["backend"] == "local"  # auto, the default
        status = await bridge.read_resource("cc-executor://status")
        assert '"bridge_mode": "auto"' in status.contents[0].text  # type: ignore[union-attr]
    log = _read(bridge_log)
    assert (
        "CC_EXECUTOR_BRIDGE_MODE: should be 'auto', 'websocket' or 'local' (got 'remote'); "
        "using the default, 'auto'" in log
    )
    assert "CC_EXECUTOR_WAIT_TIMEOUT: should be a valid number" in log
    assert "Traceback" not in log
