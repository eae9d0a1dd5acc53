"""The task table of `cc-executor tasks` and `status`: what runs, since when, what it cost,
why it failed, in the terminal's width (80 columns when it is not a terminal).

IDs are shown as their first 8 characters: every TASK argument takes a unique prefix.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import time
from datetime import datetime
from typing import Any

from cc_executor.cli.common import fmt_duration, one_line

ID_CHARS = 8
_MIN_WHAT = 12


def describe(rec: dict[str, Any]) -> str:
    """A task's name and its command (or, for a Claude task, its prompt)."""
    if rec.get("kind") == "claude" and rec.get("prompt"):
        what = f"claude: {rec['prompt']}"
    else:
        cmd = rec.get("command")
        what = shlex.join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd or "")
    return f"[{rec['name']}] {what}" if rec.get("name") else what


def fmt_exit(rec: dict[str, Any]) -> str:
    if rec.get("signal"):
        return f"sig{rec['signal']}"
    code = rec.get("exit_code")
    return "-" if code is None else str(code)


def fmt_ago(epoch: float | None, now: float | None = None) -> str:
    """How long ago, in the largest unit: "4s ago", "12m ago", "3h ago", "5d ago"."""
    if not epoch:
        return "-"
    s = max(0, int((now or time.time()) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def fmt_cost(rec: dict[str, Any]) -> str:
    cost = rec.get("total_cost_usd")
    if not isinstance(cost, int | float):
        return "-"
    return f"${cost:.2f}" if cost >= 0.995 else f"${cost:.3f}".replace("$0.", "$.")


def error_kind(rec: dict[str, Any]) -> str:
    """Why it did not complete, in a word: Claude's error class, else what ended it."""
    if rec.get("error_kind"):
        return str(rec["error_kind"])
    status = rec.get("status")
    if status == "timed_out":
        return str(rec.get("timeout_kind") or "timeout")
    if rec.get("spawn_error"):
        return "not_found" if "FileNotFound" in str(rec["spawn_error"]) else "spawn"
    if status == "cancelled":
        return "shutdown" if "shutting down" in str(rec.get("error") or "") else "cancelled"
    if status == "lost":
        return "lost"
    if status == "failed":
        return "signal" if rec.get("signal") else "exit"
    return "-"


def fmt_status(rec: dict[str, Any]) -> str:
    """The status; a held task's says what it waits for and until when (issue 16)."""
    status = str(rec["status"])
    if status != "queued" or not rec.get("waiting_for"):
        return status
    until = ""
    with contextlib.suppress(ValueError, TypeError):
        when = datetime.fromisoformat(str(rec["until"])).astimezone()
        until = f" until {when:%H:%M:%S}"
    return f"{status} ({rec['waiting_for']}{until})"


def _row(rec: dict[str, Any], now: float) -> list[str]:
    return [
        str(rec["task_id"])[:ID_CHARS],
        fmt_status(rec),
        fmt_exit(rec),
        fmt_ago(rec.get("started_at") or rec.get("created_at"), now),
        fmt_duration(rec.get("duration_s")),
        fmt_cost(rec),
        error_kind(rec),
    ]


HEAD = ["ID", "STATUS", "EXIT", "STARTED", "TIME", "COST", "ERROR"]
_RIGHT = {2, 4, 5}


def task_table(tasks: list[dict[str, Any]], width: int | None = None) -> str:
    """The tasks as aligned columns; the command takes what the terminal has left."""
    width = width or shutil.get_terminal_size((80, 24)).columns
    now = time.time()
    rows = [_row(t, now) for t in tasks]
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD))]
    fixed = sum(widths) + 2 * len(widths)
    what_width = max(_MIN_WHAT, width - fixed)

    def line(cells: list[str], what: str) -> str:
        parts = [
            c.rjust(w) if i in _RIGHT else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join([*parts, what]).rstrip()

    out = [line(HEAD, "COMMAND")]
    out += [line(r, one_line(describe(t), what_width)) for r, t in zip(rows, tasks, strict=True)]
    return "\n".join(out)


def shown_line(shown: int, total: int, hint: str) -> str:
    """The "N of M" line under a table; `hint` says how to see the rest."""
    if shown >= total:
        return f"{total} task{'s' if total != 1 else ''}"
    return f"{shown} of {total} tasks shown ({hint})"
