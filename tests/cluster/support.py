"""A private redis-server and cluster nodes as real processes, for the cluster tests.

Redis runs on a free loopback port with no persistence, in a temp dir; each node is
`python -m cc_executor.server` with its own data dir, optionally in its own pid
namespace (`unshare --pid --fork --kill-child --mount-proc`) so that killing it kills
everything it ran, as the loss of a host would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
UNSHARE = shutil.which("unshare")


def redis_available() -> str | None:
    """None if a private redis-server can be started here, else why not."""
    if not os.access(REDIS_SERVER, os.X_OK):
        return f"redis-server not installed ({REDIS_SERVER}); .ci/run installs it with apt"
    return None


def pid_namespaces_available() -> str | None:
    if UNSHARE is None:
        return "unshare (util-linux) not installed"
    if os.geteuid() != 0:
        return "pid namespaces need root here"
    probe = subprocess.run(
        [UNSHARE, "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare --pid fails here: {probe.stderr.decode(errors='replace').strip()}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FAKE_CLAUDE = Path(__file__).parent.parent / "fake_claude" / "claude"


def claude_env(tmp_path: Path) -> dict[str, str]:
    """A node's environment for running the fake `claude` with its state under tmp_path."""
    state = tmp_path / "fake-claude-state"
    state.mkdir()
    return {"CC_EXECUTOR_CLAUDE_BIN": str(FAKE_CLAUDE), "FAKE_CLAUDE_STATE_DIR": str(state)}


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None, password: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "redis.log", "ab") as out:
            self.proc = self._spawn(out)
        self.wait_ready()

    def _spawn(self, out: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.workdir / 'redis.log').read_text()}"
                )
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Node:
    node_id: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    url: str = ""
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_bytes().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(orjson.loads(line))
        return out

    def kill(self) -> None:
        """SIGKILL the node (in its own pid namespace: all it ran dies with it)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def start_node(
    workdir: Path,
    redis_url: str,
    node_id: str,
    *,
    isolate: bool = False,
    **env_overrides: str,
) -> Node:
    data_dir = workdir / f"data-{node_id}"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{node_id}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_EXECUTOR_")}
    env.update(
        CC_EXECUTOR_DATA_DIR=str(data_dir),
        CC_EXECUTOR_REDIS_URL=redis_url,
        CC_EXECUTOR_NODE_ID=node_id,
        CC_EXECUTOR_KILL_GRACE_SECONDS="1",
        CC_EXECUTOR_LOG_FORMAT="json",
        CC_EXECUTOR_LOG_LEVEL="INFO",
    )
    env.update(env_overrides)
    argv = [sys.executable, "-m", "cc_executor.server", "--port", "0"]
    if isolate:
        assert UNSHARE is not None
        argv = [UNSHARE, "--pid", "--fork", "--kill-child", "--mount-proc", *argv]
    start = len(Node(node_id, data_dir, log_path, None).log_lines())  # type: ignore[arg-type]
    proc = _launch(argv, log_path, env)
    node = Node(node_id, data_dir, log_path, proc, env=env)
    deadline = time.monotonic() + 30
    while not node.url:
        for rec in node.log_lines()[start:]:
            if rec.get("msg") == "cc-executor listening":
                node.url = rec["url"]
        if proc.poll() is not None:
            raise AssertionError(f"node {node_id} exited: {node.log_lines()[-20:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"node {node_id} did not start: {node.log_lines()[-20:]}")
        await asyncio.sleep(0.02)
    node.token = (data_dir / "token").read_text().strip()
    return node


def _launch(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as err:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env
        )


class Client:
    """Raw JSON-RPC over one WebSocket: nothing between the test and the wire."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.paused = asyncio.Event()
        self.paused.set()

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                await self.paused.wait()  # a slow reader: the test holds it back
                obj = json.loads(msg)
                if "id" in obj and "method" not in obj:
                    fut = self._replies.pop(obj["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(obj)
                else:
                    self.notifications.append(obj)
                    self._new.set()

    async def call(self, method: str, params: Any = None, timeout: float = 60) -> dict[str, Any]:
        rid = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        await self.ws.send(json.dumps(req))
        return await asyncio.wait_for(fut, timeout)

    async def result(self, method: str, params: Any = None, timeout: float = 60) -> Any:
        reply = await self.call(method, params, timeout)
        assert "result" in reply, reply
        return reply["result"]

    async def until(self, method: str, task_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for n in self.notifications:
                if n["method"] == method and n["params"].get("task_id") == task_id:
                    return dict(n["params"])
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {method} for {task_id} in {timeout}s")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def output_of(self, task_id: str, stream: str = "stdout") -> bytes:
        """The bytes of every process.output for this task stream, checked contiguous."""
        import base64

        pos = 0
        parts = []
        for n in self.notifications:
            p = n["params"]
            if n["method"] != "process.output" or p["task_id"] != task_id:
                continue
            if p["stream"] != stream:
                continue
            assert p["offset"] == pos, f"gap or overlap at {pos}: got {p['offset']}: " + repr(
                [x for x in self.notifications if x["params"].get("task_id") == task_id]
            )
            data = (
                base64.b64decode(p["data"]) if p.get("encoding") == "base64" else p["data"].encode()
            )
            parts.append(data)
            pos += len(data)
        return b"".join(parts)

    async def close(self) -> None:
        self.paused.set()
        await self.ws.close()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def client(node: Node, **kw: Any) -> AsyncIterator[Client]:
    async with connect(
        node.url,
        additional_headers={"Authorization": f"Bearer {node.token}"},
        proxy=None,
        compression=None,
        max_size=None,
        open_timeout=10,
        **kw,
    ) as ws:
        c = Client(ws)
        try:
            yield c
        finally:
            await c.close()
