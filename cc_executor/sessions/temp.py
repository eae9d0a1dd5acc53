"""`session.spawn_temp`: a throw-away session that runs one thing and is cleaned up.

One command (through the allow-list and shell like `execute`) or one Claude prompt runs as
the single turn of a temp session; the reply carries its result, the newest part of both
output streams and the session's log. The session is then ended (listed only with
`include_ended`), and the engine has already made sure nothing of the process group runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from typing import TYPE_CHECKING, Any

from cc_executor.protocol import ClaudeOptions, ProtocolError, SessionSpawnTempParams, Stream
from cc_executor.sessions.records import Session, new_session_id
from cc_executor.tasks import check_cwd

if TYPE_CHECKING:
    from cc_executor.sessions.manager import SessionManager

TEMP_OUTPUT_BYTES = 64 * 1024
"""How much of each output stream (the newest bytes) a temp run returns."""


async def spawn_temp(manager: SessionManager, p: SessionSpawnTempParams) -> dict[str, Any]:
    """Run it and reply. Shielded: if the caller goes away the run still ends (by its
    timeout at the latest) and is recorded, so nothing is left behind."""
    manager.check_open()
    cwd = check_cwd(p.working_dir)
    assert cwd is not None
    return await asyncio.shield(_run(manager, p, cwd))


async def _run(manager: SessionManager, p: SessionSpawnTempParams, cwd: str) -> dict[str, Any]:
    s = Session(
        session_id=new_session_id(),
        working_dir=cwd,
        name=p.name or "temp",
        claude_options=ClaudeOptions(model=p.model),
        turn_timeout=p.timeout,
        temp=True,
    )
    manager.add(s)
    try:
        if p.command is not None:
            shown = p.command if isinstance(p.command, str) else shlex.join(p.command)
            handle = manager.turns.enqueue(s, shown, shown, "command", command=p.command)
        else:
            assert p.prompt is not None
            handle = manager.turns.enqueue(s, p.prompt, p.prompt, "message")
        t = await asyncio.shield(handle.done)
    finally:
        manager.end(s, "temporary session finished")
    out: dict[str, Any] = {
        "session_id": s.session_id,
        "temp": True,
        "kind": "command" if p.command is not None else "claude",
        "task_id": t.task_id,
        "status": t.status,
        "exit_code": t.exit_code,
        "result": t.result,
        "error": t.error,
        "error_kind": t.error_kind,
        "duration_s": round(t.ended_at - t.started_at, 6) if t.started_at and t.ended_at else None,
        "cleaned_up": True,
    }
    for stream in Stream:
        text, total = await _tail(manager, t.task_id, stream)
        key = "output" if stream == Stream.STDOUT else "stderr"
        out[key] = text
        out[f"{stream.value}_bytes"] = total
        out[f"{key}_truncated"] = total > TEMP_OUTPUT_BYTES
    if p.command is not None:
        out["result"] = out["output"]
    out["logs"] = []
    with contextlib.suppress(RuntimeError):  # the store closed: the service is stopping
        out["logs"] = (await manager.logs(s.session_id))["entries"]
    return out


async def _tail(manager: SessionManager, task_id: str | None, stream: Stream) -> tuple[str, int]:
    """The newest TEMP_OUTPUT_BYTES of a task's stream (text), and the stream's size."""
    if task_id is None:
        return "", 0
    try:
        rec = await manager.engine.get(task_id)
        total = rec.stdout_bytes if stream == Stream.STDOUT else rec.stderr_bytes
        page = await manager.engine.read_output(
            task_id, stream, max(0, total - TEMP_OUTPUT_BYTES), TEMP_OUTPUT_BYTES
        )
    except ProtocolError:
        return "", 0
    data: str = page["data"]
    if page.get("encoding") == "base64":
        data = f"<{page['size']} bytes of binary output, base64>\n{data}"
    return data, int(page["total"])
