"""`start` (banner, mistakes without tracebacks), `mcp install`, `completion`, the exit-code
help, `sessions spawn-temp`'s exit code and `run`'s timer on a terminal: real processes."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient

CLI = [sys.executable, "-m", "cc_executor.cli"]


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_EXECUTOR_")}
    env["CC_EXECUTOR_DATA_DIR"] = str(data_dir)
    env["CC_EXECUTOR_LOG_FORMAT"] = "text"
    return env


async def _read_until(stream: asyncio.StreamReader, pattern: str, timeout: float = 30) -> str:
    seen = ""
    while not re.search(pattern, seen):
        line = await asyncio.wait_for(stream.readline(), timeout)
        if not line:
            raise AssertionError(f"stream ended before {pattern!r}: {seen}")
        seen += line.decode()
    return seen


async def test_start_prints_a_banner_and_a_second_start_says_why_it_cannot(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = clean_env(data)
    proc = await asyncio.create_subprocess_exec(
        *CLI, "start", "--port", "0", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        text = await _read_until(proc.stderr, r"stop it with")
        m = re.search(r"cc-executor \S+ is running at (ws://127\.0\.0\.1:(\d+)/ws)", text)
        assert m, text
        port = m.group(2)
        assert f"dashboard:  http://127.0.0.1:{port}/" in text
        assert f"data dir:   {data}" in text and f"token file: {data / 'token'}" in text
        assert f"listening url={m.group(1)}" in text or m.group(1) in text.split("is running")[0]

        second = await asyncio.create_subprocess_exec(
            *CLI, "start", "--port", "0", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 1
        assert "Traceback" not in err.decode()
        assert f"error: cannot start: data dir {data} is in use" in err.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--log-level", "LOUD"], {}, "argument --log-level: invalid choice: 'LOUD' (choose from"),
        (["--port", "abc"], {}, "argument --port: invalid int value: 'abc'"),
        ([], {"CC_EXECUTOR_LOG_LEVEL": "loud"}, "CC_EXECUTOR_LOG_LEVEL: unknown level 'loud'"),
        ([], {"CC_EXECUTOR_PORT": "many"}, "CC_EXECUTOR_PORT:"),
    ],
)
def test_start_mistakes_are_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    res = subprocess.run(
        [*CLI, "start", *args],
        env={**clean_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert says in res.stderr and "Traceback" not in res.stderr


def test_help_says_the_exit_codes() -> None:
    res = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(res.stdout.split())
    for words in (
        "2 bad usage",
        "3 service unreachable",
        "4 token refused",
        "5 the service reported an error",
        "124 timed out",
        "127 program not found",
    ):
        assert words in text, words
    run_help = subprocess.run([*CLI, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert "final record as JSON" in " ".join(run_help.stdout.split())


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_names_the_commands(shell: str, tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "completion", shell], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for word in ("sessions", "spawn-temp", "--max-budget-usd", "--follow"):
        assert word in res.stdout
    if shell == "bash":
        script = tmp_path / "c.bash"
        script.write_text(res.stdout)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_mcp_install_writes_a_working_entry_and_approves_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}))
    env = {**clean_env(tmp_path / "data"), "CC_EXECUTOR_PORT": "8123"}
    res = subprocess.run(
        [*CLI, "mcp", "install", "--dir", str(project), "--approve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((project / ".mcp.json").read_text())
    assert doc["mcpServers"]["other"] == {"command": "x"}  # kept
    entry = doc["mcpServers"]["cc_executor"]
    command = Path(entry["command"])
    assert command.is_absolute() and command.name == "cc-executor-mcp"
    assert command.parent == Path(sys.executable).parent  # this venv's bridge
    assert entry["env"]["CC_EXECUTOR_WEBSOCKET_URL"] == "ws://127.0.0.1:8123/ws"
    assert entry["env"]["CC_EXECUTOR_DATA_DIR"] == str(tmp_path / "data")
    local = json.loads((project / ".claude" / "settings.local.json").read_text())
    assert local["enabledMcpjsonServers"] == ["cc_executor"]
    # The command it wrote is a real MCP server: it answers initialize on stdio.
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }
    bridge = subprocess.run(
        [str(command), *entry["args"]],
        input=json.dumps(init) + "\n",
        env={**env, **entry["env"], "CC_EXECUTOR_BRIDGE_MODE": "local"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    first = json.loads(bridge.stdout.splitlines()[0])
    assert first["id"] == 1 and "serverInfo" in first["result"], bridge.stderr
    # Without --approve it says how approval works.
    res = subprocess.run(
        [*CLI, "mcp", "install", "--dir", str(project), "--print"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(res.stdout)["mcpServers"]["cc_executor"] == entry
    res = subprocess.run(
        [*CLI, "mcp", "install", "--dir", str(tmp_path / "missing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "no such directory" in res.stderr


async def test_spawn_temp_exits_with_the_commands_code(cli: Any, tmp_path: Path) -> None:
    res = await cli("sessions", "spawn-temp", "--command", "exit 4", "--working-dir", str(tmp_path))
    assert res.rc == 4, res.stderr
    res = await cli(
        "sessions",
        "spawn-temp",
        "--command",
        "sleep 5",
        "--timeout",
        "0.3",
        "--working-dir",
        str(tmp_path),
    )
    assert res.rc == 124, res.stderr
    res = await cli(
        "sessions",
        "spawn-temp",
        "--command",
        "no-such-program-here",
        "--working-dir",
        str(tmp_path),
    )
    assert res.rc == 127, res.stderr
    res = await cli("sessions", "status", "nobody")
    assert res.rc == 5 and "hint: `cc-executor sessions list --all`" in res.stderr


async def test_run_on_a_terminal_shows_the_elapsed_time_of_a_silent_task(
    cli: Any, client: ExecutorClient
) -> None:
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *cli.argv("run", "--", "sh", "-c", "sleep 3.5; echo done"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
            env=cli.env,
        )
        os.close(follower)
        follower = -1
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0 and out == b"done\n"
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    text = screen.decode()
    assert re.search(r"task [0-9a-f]{8} running for \d\.\d\ds, no output for \ds", text), text
    assert "\r\x1b[2K" in text  # the line is cleared again before output and at the end


def test_the_mcp_json_example_is_the_readmes_and_what_mcp_install_writes(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    example = (root / ".mcp.json.example").read_text()
    for doc in ("README.md", "docs/mcp.md"):
        blocks = re.findall(
            r"```json\n(\{\n  \"mcpServers\".*?)```", (root / doc).read_text(), re.S
        )
        assert example in blocks, doc  # the same snippet, word for word
    # With the placeholder filled in, it is what `mcp install` writes for the defaults.
    clone = Path(sys.executable).parent.parent.parent  # <clone>/.venv/bin/python
    filled = json.loads(example.replace("/ABSOLUTE/PATH/TO/cc-executor", str(clone)))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_EXECUTOR_")}
    env.update(HOME=str(home), XDG_STATE_HOME="")
    res = subprocess.run(
        [*CLI, "mcp", "install", "--print"], env=env, capture_output=True, text=True, timeout=60
    )
    written = json.loads(res.stdout)
    entry = filled["mcpServers"]["cc_executor"]
    entry["env"]["CC_EXECUTOR_DATA_DIR"] = entry["env"]["CC_EXECUTOR_DATA_DIR"].replace(
        "${HOME}", str(home)
    )
    assert written == filled
    assert Path(entry["command"]).is_file()  # the clone's bridge really is there
