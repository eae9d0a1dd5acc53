"""MCP bridge latency: `execute_task("echo hi")` round trips beside their floors, one run.

    python benchmarks/bench_mcp.py                 # 1000 calls per series
    python benchmarks/bench_mcp.py --calls 300
    python benchmarks/bench_mcp.py --profile local # py-spy the bridge during that series

Every series is a tool call from the official MCP `ClientSession` over real stdio (as a
user's client calls it), one at a time; the service and the bridges run at their default
log level:

  floor: empty tool   a do-nothing tool on a bare `MCPServer` (the SDK's own cost)
  floor: bare spawn   `sh -c 'echo hi'` spawned and read to EOF by asyncio, no MCP at all
  bridge + service    execute_task("echo hi") through `python -m mcp_bridge` to the
                      executor service (its own process) over the WebSocket pool
  bridge, fallback    the same with the service down (auto mode: the local engine)

and three bounds, which no engine is in (what the floor does not show):

  bound: trivial tool, bridge's MCP layer   a do-nothing tool on the bridge's own MCP
                      layer (`ToolServer` on `mcp_bridge.stdio`, loop-driven stdio)
  bound: spawn in a tool, bridge's MCP layer   `sh -c 'echo hi'` spawned by asyncio and
                      read to EOF inside such a tool: the fallback with no engine at all
  bound: spawn in a tool, bare MCPServer   the same inside a tool of the SDK's server

Targets (issue 9): bridge + service p50 <= empty-tool p50 + bare-spawn p50 + 1.0 ms;
fallback p50 <= the same floor + 0.5 ms. Series are interleaved in rounds so they share
the machine's load, in a new random order each round. The figures go to
docs/benchmarks.md, section "MCP bridge".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from _common import (
    Row,
    ServiceProcess,
    free_port,
    percentile,
    print_machine_info,
    print_table,
    scratch_dir,
)
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

EMPTY_SERVER = """
from mcp.server.mcpserver import MCPServer
mcp = MCPServer("empty", log_level="WARNING")

@mcp.tool()
def noop() -> str:
    return "ok"

@mcp.tool()
async def spawn_echo(command: str) -> str:
    import asyncio
    from asyncio.subprocess import DEVNULL, PIPE
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, start_new_session=True
    )
    out, _ = await proc.communicate()
    return out.decode()

mcp.run("stdio")
"""

# The bridge's own MCP layer (its ToolServer and loop-driven stdio) with no engine behind it.
BOUND_SERVER = """
import asyncio
from asyncio.subprocess import DEVNULL, PIPE
import anyio
from mcp_bridge.results import ok
from mcp_bridge.stdio import serve_stdio
from mcp_bridge.tooling import ToolServer
mcp = ToolServer("bound", log_level="WARNING")

@mcp.tool()
async def noop():
    return ok({"ok": True})

@mcp.tool()
async def spawn_echo(command: str):
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, start_new_session=True
    )
    out, _ = await proc.communicate()
    return ok({"exit_code": proc.returncode, "backend": "none", "output": out.decode()})

anyio.run(serve_stdio, mcp)
"""

Call = Callable[[], Awaitable[object]]


@contextlib.asynccontextmanager
async def mcp_client(args: list[str], env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=args, env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def bare_spawn() -> None:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "echo hi", stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    await proc.communicate()


def tool_call(client: ClientSession, name: str, args: Mapping[str, Any], check: str | None) -> Call:
    async def call() -> object:
        r = await client.call_tool(name, dict(args))
        if r.is_error:
            raise RuntimeError(f"{name} failed: {r.content}")
        if check == "text":
            if getattr(r.content[0], "text", None) != "hi\n":
                raise RuntimeError(f"unexpected result: {r.content}")
        elif check is not None:
            sc = r.structured_content or {}
            if sc.get("backend") != check or sc.get("output") != "hi\n":
                raise RuntimeError(f"unexpected result: {sc}")
        return r

    return call


async def measure(series: dict[str, Call], calls: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in series}
    per_round = max(1, calls // rounds)
    names = list(series)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            call = series[name]
            for _ in range(per_round):
                t0 = time.perf_counter()
                await call()
                times[name].append(time.perf_counter() - t0)
    return times


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found: pip install py-spy (not a project dependency)")
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "2000",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 25) -> None:
    """Self time and inclusive time per function from py-spy's collapsed stacks."""
    selfs: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        total += c
        frames = stack.split(";")
        selfs[frames[-1]] = selfs.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    print(f"\n{total} samples; top self time:")
    for f, c in sorted(selfs.items(), key=lambda kv: -kv[1])[:n]:
        print(f"  {100 * c / total:5.1f}%  {f}")
    print("top inclusive (excluding the event loop's own frames):")
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[: n * 2]:
        if "asyncio" in f or "<module>" in f or "runpy" in f:
            continue
        print(f"  {100 * c / total:5.1f}%  {f}")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="calls per series")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--profile", choices=["service", "local"], help="py-spy the bridge")
    args = ap.parse_args()

    print_machine_info()
    with scratch_dir("bench-mcp-") as tmp:
        return await run(args, tmp)


async def run(args: argparse.Namespace, tmp: Path) -> int:
    base_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
    }
    service = ServiceProcess(tmp / "service")  # default log level, as deployed
    await service.start()
    try:
        remote_env = {
            **base_env,
            "CC_EXECUTOR_WEBSOCKET_URL": service.url,
            "CC_EXECUTOR_TOKEN": service.token,
            "CC_EXECUTOR_DATA_DIR": str(tmp / "bridge-remote"),
        }
        local_env = {
            **base_env,
            "CC_EXECUTOR_WEBSOCKET_URL": f"ws://127.0.0.1:{free_port()}/ws",  # nobody there
            "CC_EXECUTOR_DATA_DIR": str(tmp / "bridge-local"),
        }
        async with (
            mcp_client(["-c", EMPTY_SERVER], base_env) as empty,
            mcp_client(["-c", BOUND_SERVER], base_env) as bound,
            mcp_client(["-m", "mcp_bridge"], remote_env) as remote,
            mcp_client(["-m", "mcp_bridge"], local_env) as local,
        ):
            echo = {"command": "echo hi"}
            series: dict[str, Call] = {
                "floor: empty tool (bare MCPServer)": tool_call(empty, "noop", {}, None),
                "floor: bare spawn sh -c 'echo hi'": bare_spawn,
                "bridge + service": tool_call(remote, "execute_task", echo, "websocket"),
                "bridge, local fallback": tool_call(local, "execute_task", echo, "local"),
                "bound: trivial tool, bridge's MCP layer": tool_call(bound, "noop", {}, None),
                "bound: spawn in a tool, bridge's MCP layer": tool_call(
                    bound, "spawn_echo", echo, "none"
                ),
                "bound: spawn in a tool, bare MCPServer": tool_call(
                    empty, "spawn_echo", echo, "text"
                ),
            }
            await measure(series, args.warmup * len(series), 1)
            prof = None
            if args.profile:
                pids = {p.pid: p for p in _children()}  # the bridges are our children; pick by env
                target = _bridge_pid(
                    pids, "bridge-local" if args.profile == "local" else "bridge-remote"
                )
                est = args.calls * 0.01
                prof = py_spy(target, max(2.0, est), tmp / "profile.txt") if target else None
            times = await measure(series, args.calls, args.rounds)
            if prof is not None:
                prof.wait()
                top_frames(tmp / "profile.txt")
    finally:
        await service.stop_async()

    p50 = {k: percentile(v, 50) for k, v in times.items()}
    p99 = {k: percentile(v, 99) for k, v in times.items()}
    names = list(series)
    floor = p50[names[0]] + p50[names[1]]
    print(f"\n{args.calls} calls per series, {args.rounds} interleaved rounds")
    rows = [
        Row(
            names[0],
            f"p50 {p50[names[0]] * 1e3:.2f} ms, p99 {p99[names[0]] * 1e3:.2f} ms",
            "-",
            "-",
            None,
        ),
        Row(
            names[1],
            f"p50 {p50[names[1]] * 1e3:.2f} ms, p99 {p99[names[1]] * 1e3:.2f} ms",
            "-",
            "-",
            None,
        ),
    ]
    for name, budget in ((names[2], 1.0e-3), (names[3], 0.5e-3)):
        over = p50[name] - floor
        rows.append(
            Row(
                name,
                f"p50 {p50[name] * 1e3:.2f} ms (+{over * 1e3:.2f}), p99 {p99[name] * 1e3:.2f} ms",
                f"floor {floor * 1e3:.2f} ms",
                f"p50 <= floor + {budget * 1e3:.1f} ms",
                p50[name] <= floor + budget,
            )
        )
    for name in names[4:]:
        over = p50[name] - floor
        rows.append(
            Row(
                name,
                f"p50 {p50[name] * 1e3:.2f} ms ({over * 1e3:+.2f}), p99 {p99[name] * 1e3:.2f} ms",
                f"floor {floor * 1e3:.2f} ms",
                "-",
                None,
            )
        )
    print_table(rows)
    return 0


def _children() -> list[_Proc]:
    me = os.getpid()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            if ppid == me:
                out.append(_Proc(int(entry.name)))
    return out


class _Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def environ(self) -> str:
        try:
            return Path(f"/proc/{self.pid}/environ").read_text(errors="replace")
        except OSError:
            return ""


def _bridge_pid(procs: dict[int, _Proc], marker: str) -> int | None:
    for pid, p in procs.items():
        if marker in p.environ():
            return pid
    return None


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
