"""A record as a list of tasks shows it: long values cut, the full record by id.

One task with a 1 MB argument made every plain `status` reply carry it (a reply reached
72 MB); a list is for finding tasks, `status {task_id}` for reading one. Strings longer
than `LIST_VALUE_CHARS` are cut to it and lists longer than `LIST_ITEMS` to that many
items, at any depth; the record then says which fields were cut (`cut`).
"""

from __future__ import annotations

from typing import Any

LIST_VALUE_CHARS = 1024
LIST_ITEMS = 64
_CUT_NAMES = 64  # `cut` names at most this many fields
# Record fields that are numbers, ids or one word by their type: never long.
_SHORT_FIELDS = frozenset(
    (
        "task_id",
        "kind",
        "status",
        "pid",
        "pgid",
        "created_at",
        "started_at",
        "ended_at",
        "exit_code",
        "signal",
        "stdout_bytes",
        "stderr_bytes",
        "timeout",
        "idle_timeout",
        "duration_s",
    )
)


def brief(d: dict[str, Any]) -> dict[str, Any]:
    """A record's dict (`TaskRecord.to_dict()`) with its long values cut (`d` itself, when
    nothing is long: the common case, looked at without building any field path)."""
    for k, v in d.items():
        if v is not None and k not in _SHORT_FIELDS and _long(v):
            break
    else:
        return d
    cut: list[str] = []
    out = {k: _cut(v, k, cut) for k, v in d.items()}
    if cut:
        out["cut"] = cut[:_CUT_NAMES]
    return out


def _long(value: Any) -> bool:
    """Something in it would be cut. (Loops, not `any()`: `status` of 1000 records looks
    at every value of every record.)"""
    if isinstance(value, str):
        return len(value) > LIST_VALUE_CHARS
    if isinstance(value, list):
        if len(value) > LIST_ITEMS:
            return True
        for item in value:
            if _long(item):
                return True
        return False
    if isinstance(value, dict):
        for item in value.values():
            if _long(item):
                return True
    return False


def _cut(value: Any, path: str, cut: list[str]) -> Any:
    if isinstance(value, str):
        if len(value) > LIST_VALUE_CHARS:
            cut.append(path)
            return value[:LIST_VALUE_CHARS]
        return value
    if isinstance(value, list):
        items = value
        if len(items) > LIST_ITEMS:
            cut.append(path)
            items = items[:LIST_ITEMS]
        return [_cut(v, f"{path}[{i}]", cut) for i, v in enumerate(items)]
    if isinstance(value, dict):
        return {k: _cut(v, f"{path}.{k}", cut) for k, v in value.items()}
    return value
