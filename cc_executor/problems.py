"""Validation errors as a caller reads them: one line per problem, naming the field as the
caller wrote it (`tasks[0].timeout`) and saying what is allowed.

pydantic's own text names its internals (`function-after[_fork_needs_resume(),
ExecuteClaudeParams]`, union members such as `list[str]`) and spreads one mistake over
several entries. `problems` takes pydantic's errors (`ValidationError.errors()`) or the
service's `-32602` details (`[{loc: "a.b", msg}]`, see `jsonrpc.validate_params`), and,
when it has them, the arguments as given, which tell a field from a union tag. Used by the
MCP bridge and the CLI, so both say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Path = tuple[str | int, ...]

_UNGIVEN: Any = object()
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "none", "list", "dict"})
_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$")
_NOISE = ("Value error, ", "Assertion failed, ")
_OBJECT_TYPES = frozenset({"model_type", "dict_type", "model_attributes_type"})


def field_path(path: Path) -> str:
    """`("tasks", 0, "timeout")` as a JSON caller writes it: `tasks[0].timeout`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _looks_like_tag(part: str) -> bool:
    """A union member's tag in an error's location (`list[str]`, `ExecuteParams`,
    `function-after[...]`), which the caller never wrote."""
    return any(c in part for c in "[]()-, ") or part in _TYPE_TAGS or bool(_CLASS_NAME.match(part))


def _location(loc: Any) -> Path:
    if isinstance(loc, str):
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in loc.split(".") if p]
        return tuple(parts)
    return tuple(loc or ())


def _clean(loc: Path, given: Any, last_is_field: bool) -> Path:
    """The location without union tags: a part the arguments hold is a field; one they do
    not hold is a tag when it looks like one (or, the arguments known, when it is not the
    last part of a location that names a field)."""
    node = given
    out: list[str | int] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            out.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else _UNGIVEN
            continue
        if isinstance(node, Mapping):
            if part in node:
                out.append(part)
                node = node[part]
                continue
            if not (last and last_is_field):  # a missing or unknown field ends a location
                continue
        elif _looks_like_tag(part):
            continue
        out.append(part)
        node = _UNGIVEN
    return tuple(out)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    for noise in _NOISE:
        msg = msg.removeprefix(noise)
    kind = err.get("type")
    if kind == "missing" or msg == "Field required":
        return "required"
    if kind in _OBJECT_TYPES:
        msg = "should be an object"
    if msg.startswith("Input should be "):
        msg = "should be " + msg.removeprefix("Input should be ")
    if msg.startswith("String should have at least 1 character"):
        msg = "must not be empty"
    return msg


def problems(
    errors: Iterable[Mapping[str, Any]],
    given: Any = _UNGIVEN,
    *,
    name: Callable[[Path], str] = field_path,
    unknown: str = "field",
) -> list[str]:
    """One line per problem, in the order found: `"<field>: <what is wrong / allowed>"`.

    `given` (the arguments as sent) tells fields from union tags; `name` spells a field's
    path as the caller wrote it; `unknown` is what a top-level extra key is called
    ("argument" for a tool). Errors on the same field (each member of a union refusing
    the value) become one line.
    """
    lines: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for err in errors:
        kind = err.get("type")
        extra = kind == "extra_forbidden" or err.get("msg") == "Extra inputs are not permitted"
        missing = kind == "missing" or err.get("msg") == "Field required"
        path = _clean(_location(err.get("loc")), given, extra or missing)
        if extra and path:
            parent, key = path[:-1], path[-1]
            where = name(parent) if parent else ""
            what = f"unknown {unknown if not parent else 'field'} {str(key)!r}"
            lines.setdefault(f"{where}: {what}" if where else what, [])
            continue
        where = name(path) if path else ""
        msgs = lines.setdefault(where, [])
        msg = _message(err)
        if msg not in msgs:
            msgs.append(msg)
        if "input" in err and not isinstance(err["input"], dict | list) and not missing:
            values.setdefault(where, err["input"])
    out = []
    for where, msgs in lines.items():
        if not msgs:  # a line complete in itself (an unknown field)
            out.append(where)
            continue
        if all(m.startswith("should be ") for m in msgs):
            text = "should be " + " or ".join(m.removeprefix("should be ") for m in msgs)
        else:
            text = "; ".join(msgs)
        if where in values:
            text += f" (got {_shown(values[where])})"
        out.append(f"{where}: {text}" if where else text)
    return out


def suggest(word: str, choices: Sequence[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `choices`, else ""."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
