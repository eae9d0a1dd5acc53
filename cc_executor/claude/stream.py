"""Parse the CLI's `--output-format stream-json` output: split lines, track state, compact events.

`LineSplitter` turns arbitrary stdout chunks into lines; `ClaudeStreamState` reads each line,
keeps what the task record needs (session id, result, cost, errors ...) and returns a small
event dict for the `claude.event` notification. Field names follow the recorded real output
(see /work/shared/claude-cli-samples); unknown or malformed events never raise.
"""

from __future__ import annotations

from typing import Any

import orjson

TOOL_RESULT_MAX_CHARS = 500
RESULT_MAX_CHARS = 2000


PARTIAL_TEXT_CHARS = 1_000_000
"""Assistant text kept for the partial result of a run stopped early (newest first kept)."""


class LineSplitter:
    """Split a byte stream into `\\n`-terminated lines of any length.

    A partial tail is kept as a list of pieces and joined once its newline arrives, so a long
    line fed in many small chunks costs O(length), not O(length**2).
    """

    __slots__ = ("_parts", "_pending")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pending = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered for the current unterminated line."""
        return self._pending

    def feed(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the lines it completes, without their `\\n`."""
        if not data:
            return []
        if data.find(b"\n") < 0:
            self._parts.append(bytes(data))
            self._pending += len(data)
            return []
        if self._parts:
            self._parts.append(bytes(data))
            data = b"".join(self._parts)
            self._parts = []
        lines = data.split(b"\n")
        tail = lines.pop()
        self._pending = len(tail)
        if tail:
            self._parts.append(tail)
        return lines

    def flush(self) -> list[bytes]:
        """Return the last unterminated line, if any (call at EOF)."""
        if not self._parts:
            return []
        line = b"".join(self._parts)
        self._parts = []
        self._pending = 0
        return [line]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _blocks(message: Any) -> list[dict[str, Any]]:
    """The content blocks of an assistant/user message, tolerating odd shapes."""
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict)]


def _content_text(content: Any) -> str:
    """Flatten a tool_result `content` (a string or a list of blocks) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                text = block.get("text")
                parts.append(text if isinstance(text, str) else f"[{block.get('type')}]")
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    if content is None:
        return ""
    return str(content)


class ClaudeStreamState:
    """Everything learned so far from one run's stream-json lines."""

    def __init__(self) -> None:
        # system/init
        self.claude_session_id: str | None = None
        self.model: str | None = None
        self.tools: list[str] = []
        self.cwd: str | None = None
        self.permission_mode: str | None = None
        self.api_key_source: str | None = None
        self.claude_code_version: str | None = None
        # assistant / user
        self.partial_text: list[str] = []
        self._partial_chars = 0
        self.tool_uses: list[str] = []
        self.assistant_error: str | None = None
        self.assistant_error_text: str | None = None
        # system/api_retry
        self.api_retries = 0
        self.last_retry_error: str | None = None
        self.last_retry_status: int | None = None
        # rate_limit_event
        self.rate_limit_info: dict[str, Any] | None = None
        # result
        self.result_seen = False
        self.result: str | None = None
        self.is_error: bool | None = None
        self.subtype: str | None = None
        self.num_turns: int | None = None
        self.duration_ms: int | None = None
        self.total_cost_usd: float | int | None = None
        self.usage: dict[str, Any] | None = None
        self.permission_denials: list[Any] = []
        self.api_error_status: int | None = None
        self.errors: list[str] = []
        self.terminal_reason: str | None = None
        # counters
        self.events = 0
        self.plain_lines = 0
        self.last_event_type: str | None = None

    def feed_line(self, line: bytes) -> dict[str, Any] | None:
        """Parse one stdout line; update state; return a compact event, or None if not JSON."""
        if not line.strip():
            return None
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.plain_lines += 1
            return None
        if not isinstance(event, dict):
            self.plain_lines += 1
            return None
        self.events += 1
        etype = _str(event.get("type"))
        subtype = _str(event.get("subtype"))
        self.last_event_type = etype
        compact: dict[str, Any] = {"type": etype, "subtype": subtype}
        if etype == "system" and subtype == "init":
            self._on_init(event, compact)
        elif etype == "system" and subtype == "api_retry":
            self._on_retry(event, compact)
        elif etype == "assistant":
            self._on_assistant(event, compact)
        elif etype == "user":
            self._on_user(event, compact)
        elif etype == "result":
            self._on_result(event, compact)
        elif etype == "rate_limit_event":
            self._on_rate_limit(event, compact)
        return compact

    # ------------------------------------------------------------------ handlers

    def _on_init(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        self.claude_session_id = _str(event.get("session_id")) or self.claude_session_id
        self.model = _str(event.get("model")) or self.model
        tools = event.get("tools")
        if isinstance(tools, list):
            self.tools = [t for t in tools if isinstance(t, str)]
        self.cwd = _str(event.get("cwd")) or self.cwd
        self.permission_mode = _str(event.get("permissionMode")) or self.permission_mode
        self.api_key_source = _str(event.get("apiKeySource")) or self.api_key_source
        self.claude_code_version = _str(event.get("claude_code_version"))
        compact["session_id"] = self.claude_session_id
        compact["model"] = self.model
        compact["tools"] = list(self.tools)

    def _on_retry(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        self.api_retries += 1
        error = event.get("error")
        self.last_retry_error = error if isinstance(error, str) else _content_text(error) or None
        self.last_retry_status = _int(event.get("error_status"))
        compact["attempt"] = _int(event.get("attempt"))
        compact["max_retries"] = _int(event.get("max_retries"))
        compact["retry_delay_ms"] = _num(event.get("retry_delay_ms"))
        compact["error"] = self.last_retry_error
        compact["error_status"] = self.last_retry_status

    def _on_assistant(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        message = event.get("message")
        texts: list[str] = []
        uses: list[dict[str, Any]] = []
        for block in _blocks(message):
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif btype == "tool_use":
                name = _str(block.get("name"))
                if name:
                    self.tool_uses.append(name)
                uses.append({"name": name, "id": _str(block.get("id"))})
        self.partial_text.extend(texts)
        self._partial_chars += sum(len(t) for t in texts)
        # Keep the newest ~PARTIAL_TEXT_CHARS: the partial result of a stopped run.
        while self._partial_chars > PARTIAL_TEXT_CHARS and len(self.partial_text) > 1:
            self._partial_chars -= len(self.partial_text.pop(0))
        text = "".join(texts)
        if isinstance(message, dict) and not self.model:
            model = _str(message.get("model"))
            if model and model != "<synthetic>":
                self.model = model
        error = _str(event.get("error"))
        if error:
            self.assistant_error = error
            self.assistant_error_text = text or None
            compact["error"] = error
        compact["text"] = text
        compact["tool_uses"] = uses

    def _on_user(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        results = []
        for block in _blocks(event.get("message")):
            if block.get("type") != "tool_result":
                continue
            content = _content_text(block.get("content"))
            results.append(
                {
                    "tool_use_id": _str(block.get("tool_use_id")),
                    "is_error": bool(block.get("is_error", False)),
                    "content": content[:TOOL_RESULT_MAX_CHARS],
                }
            )
        compact["tool_results"] = results

    def _on_result(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        self.result_seen = True
        self.result = _str(event.get("result"))
        is_error = event.get("is_error")
        self.is_error = is_error if isinstance(is_error, bool) else None
        self.subtype = _str(event.get("subtype"))
        self.num_turns = _int(event.get("num_turns"))
        self.duration_ms = _int(event.get("duration_ms"))
        self.total_cost_usd = _num(event.get("total_cost_usd"))
        usage = event.get("usage")
        self.usage = usage if isinstance(usage, dict) else None
        denials = event.get("permission_denials")
        self.permission_denials = denials if isinstance(denials, list) else []
        self.api_error_status = _int(event.get("api_error_status"))
        errors = event.get("errors")
        self.errors = [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []
        self.terminal_reason = _str(event.get("terminal_reason"))
        self.claude_session_id = _str(event.get("session_id")) or self.claude_session_id
        compact["result"] = self.result[:RESULT_MAX_CHARS] if self.result is not None else None
        compact["is_error"] = self.is_error
        compact["num_turns"] = self.num_turns
        compact["total_cost_usd"] = self.total_cost_usd
        if self.errors:
            compact["errors"] = [e[:RESULT_MAX_CHARS] for e in self.errors[:10]]

    def _on_rate_limit(self, event: dict[str, Any], compact: dict[str, Any]) -> None:
        info = event.get("rate_limit_info")
        if isinstance(info, dict):
            self.rate_limit_info = info
            compact["status"] = _str(info.get("status"))
            compact["resets_at"] = _num(info.get("resetsAt"))
            compact["rate_limit_type"] = _str(info.get("rateLimitType"))

    # ------------------------------------------------------------------ outputs

    @property
    def text_so_far(self) -> str:
        """The assistant text blocks seen so far, joined with blank lines."""
        return "\n\n".join(t for t in self.partial_text if t)

    @property
    def error_text(self) -> str:
        """Human-readable error text the CLI put on stdout (result, errors, assistant error)."""
        parts: list[str] = []
        if self.result_seen and self.is_error and self.result:
            parts.append(self.result)
        parts.extend(self.errors)
        if self.assistant_error_text and self.assistant_error_text not in parts:
            parts.append(self.assistant_error_text)
        return "\n".join(parts)

    def record_fields(self) -> dict[str, Any]:
        """Fields for the completed task record; `partial` is True when no result was seen."""
        if self.result_seen:
            result = self.result
            if result is None:
                result = self.text_so_far or ("\n".join(self.errors) if self.errors else None)
        else:
            result = self.text_so_far or None
        return {
            "result": result,
            "claude_session_id": self.claude_session_id,
            "is_error": self.is_error,
            "subtype": self.subtype,
            "num_turns": self.num_turns,
            "duration_ms": self.duration_ms,
            "total_cost_usd": self.total_cost_usd,
            "usage": self.usage,
            "model": self.model,
            "permission_denials": list(self.permission_denials),
            "partial": not self.result_seen,
        }
