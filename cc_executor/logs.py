"""Structured logs: one JSON object per line (task ids included), or one text line with the
same fields as key=value, to stderr or a file.

A warning or error repeated in a burst (the same message from the same place: an accept
error for each of a thousand sockets) is written `RepeatLimiter.burst` times per window,
then counted; the next one written after the window says how many were left out
(`repeats_suppressed`). Info lines (one per task) are never held back.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """One readable line; the structured fields (url, task_id, ...) follow as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STD_ATTRS and not k.startswith("_")
        ]
        if not fields:
            return line
        head, sep, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {' '.join(fields)}{sep}{rest}"


class RepeatLimiter(logging.Filter):
    """Lets through at most `burst` warnings or errors of one kind (logger, level, message
    template) per `window` seconds; the first one after that carries the count dropped."""

    def __init__(self, burst: int = 10, window: float = 60.0, max_kinds: int = 1024) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.max_kinds = max_kinds
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # [window start, n, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = record.created
        state = self._kinds.get(key)
        if state is None or now - state[0] >= self.window:
            dropped = int(state[2]) if state is not None else 0
            if len(self._kinds) >= self.max_kinds and state is None:
                self._kinds.clear()  # many kinds: start over rather than grow
            self._kinds[key] = [now, 1, 0]
            if dropped:
                record.repeats_suppressed = dropped
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


def setup_logging(level: str = "INFO", fmt: str = "json", file: Path | None = None) -> None:
    """Configure the root logger. Never stdout: the MCP bridge's stdout is its protocol."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatLimiter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(max(root.level, logging.WARNING))
