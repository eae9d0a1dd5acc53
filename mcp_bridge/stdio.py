"""Serve MCP on stdin/stdout with non-blocking pipes instead of worker threads.

The SDK's `stdio_server()` reads each line and writes (and flushes) each message through
anyio worker threads: three thread hand-offs per tool call, a large share of a quick call
on a small machine. When stdin and stdout are pipes (as when Claude Code starts us), this
module moves the protocol onto private duplicates of fds 0 and 1 driven by the event loop,
and points fd 0 at /dev/null and fd 1 at stderr, so nothing else can read the protocol or
write into it. Anything else (a file, a tty) falls back to the SDK's own transport.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

_LINE_LIMIT = 256 * 1024 * 1024  # one JSON-RPC message per line; tool arguments can be big


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Lines:
    """`async for line in ...` over a pipe, as text: what `stdio_server` reads."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _Drain(asyncio.Protocol):
    def __init__(self) -> None:
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or BrokenPipeError("stdout closed")
        self._wake(self._lost)

    def _wake(self, exc: BaseException | None) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)

    async def drain(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._paused:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class _Writer:
    """`write` + `flush` on a pipe: what `stdio_server` writes to."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: _Drain) -> None:
        self._transport = transport
        self._protocol = protocol

    async def write(self, text: str) -> None:
        if self._transport.is_closing():
            raise BrokenPipeError("stdout closed")
        self._transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._protocol.drain()


def _claim_std_fds() -> tuple[int, int]:
    """Private copies of fds 0 and 1 for the protocol; 0 -> /dev/null, 1 -> stderr."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout.flush()
    os.dup2(2, 1)
    return proto_in, proto_out


async def serve_stdio(mcp: MCPServer) -> None:
    """Run `mcp` on this process's stdin/stdout until the client closes stdin."""
    if not (_is_pipe(0) and _is_pipe(1)):
        await mcp.run_stdio_async()
        return
    loop = asyncio.get_running_loop()
    proto_in, proto_out = _claim_std_fds()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    in_file = os.fdopen(proto_in, "rb", buffering=0)
    out_file = os.fdopen(proto_out, "wb", buffering=0)
    rtransport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), in_file
    )
    wtransport, wprotocol = await loop.connect_write_pipe(_Drain, out_file)
    lowlevel: Any = mcp._lowlevel_server  # what MCPServer.run_stdio_async runs
    try:
        async with stdio_server(
            stdin=_Lines(reader),  # type: ignore[arg-type]
            stdout=_Writer(wtransport, wprotocol),  # type: ignore[arg-type]
        ) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
    finally:
        rtransport.close()
        wtransport.close()
