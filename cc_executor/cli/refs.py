"""TASK arguments: a task id, a unique prefix of one, or a task's name (`logs 042ae7`,
`pause build`), resolved on the client through `status` (its `text` filter).

A name given to several tasks means the one that is still running (or paused, or queued)
if there is exactly one, else the newest; a prefix must be unique.
"""

from __future__ import annotations

from typing import Any

from cc_executor.cli.common import EXIT_USAGE, CliError
from cc_executor.client import ExecutorClient
from cc_executor.protocol import ACTIVE_STATUSES

TASK_HELP = "a task id, a unique prefix of one, or a task's name"
_SHOWN = 5


def _label(t: dict[str, Any]) -> str:
    name = f" ({t['name']})" if t.get("name") else ""
    return f"{t['task_id']}{name} {t['status']}"


async def resolve_task(client: ExecutorClient, ref: str) -> str:
    """The task id that `ref` names; `CliError` (exit 2) if several do. A `ref` that names
    none is returned as it is, for the service to report (exit 5, with its hint)."""
    ref = ref.strip()
    if not ref:
        raise CliError(EXIT_USAGE, "error: TASK is empty")
    listing = await client.status(text=ref, limit=1000, active_first=True)
    tasks: list[dict[str, Any]] = listing["tasks"]
    exact = [t for t in tasks if t["task_id"] == ref]
    if exact:
        return ref
    named = [t for t in tasks if t.get("name") == ref]
    if named:
        active = [t for t in named if t["status"] in ACTIVE_STATUSES]
        if len(active) > 1:
            raise CliError(
                EXIT_USAGE,
                f"error: {len(active)} active tasks are named {ref!r}: "
                + ", ".join(_label(t) for t in active[:_SHOWN]),
                "give a task id (or a unique prefix of one)",
            )
        return str((active or named)[0]["task_id"])
    prefixed = [t for t in tasks if t["task_id"].startswith(ref.lower())]
    if len(prefixed) == 1:
        return str(prefixed[0]["task_id"])
    if len(prefixed) > 1:
        shown = ", ".join(_label(t) for t in prefixed[:_SHOWN])
        more = f" and {len(prefixed) - _SHOWN} more" if len(prefixed) > _SHOWN else ""
        raise CliError(
            EXIT_USAGE,
            f"error: {ref!r} is the start of {len(prefixed)} task ids: {shown}{more}",
            "give more of the id",
        )
    return ref  # nothing matches: the service says it is not found (its message, its hint)
