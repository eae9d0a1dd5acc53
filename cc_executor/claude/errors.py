"""Classify why a `claude -p` run failed, with a human message and what to do about it.

Structured fields of the stream-json output win (result `subtype`, the assistant message's
`error`, `api_error_status`, `rate_limit_event`); then the CLI's own error text (result text,
`errors`, stderr) is matched against `TEXT_PATTERNS`, one ordered table that is easy to extend;
then the process outcome (timeout, signal, exit code). Real texts come from recorded output and
public reports of the current CLI, e.g. the nested-session refusal:

    Error: Claude Code cannot be launched inside another Claude Code session.
    Nested sessions share runtime resources and will crash all active sessions.
    To bypass this check, unset the CLAUDECODE environment variable.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cc_executor.claude.stream import ClaudeStreamState

MESSAGE_DETAIL_MAX_CHARS = 500


class ErrorKind(StrEnum):
    CLI_NOT_FOUND = "cli_not_found"
    NESTED_SESSION = "nested_session"
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    USAGE_LIMIT = "usage_limit"
    CONTEXT_LIMIT = "context_limit"
    MAX_TURNS = "max_turns"
    MAX_BUDGET = "max_budget"
    NETWORK = "network"
    OVERLOADED = "overloaded"
    API_ERROR = "api_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"


@dataclass(frozen=True)
class ClaudeError:
    """Why a run failed. `reset_at` is set for limits when the CLI says when they reset.

    `reset_at` is ISO 8601 UTC when the CLI gave a unix timestamp, else the CLI's own words
    (e.g. `"11pm (Asia/Nicosia)"`); `reset_time()` turns either into a datetime.
    """

    kind: ErrorKind
    message: str
    hint: str
    reset_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (kind as its string value)."""
        data = asdict(self)
        data["kind"] = str(self.kind)
        return data


TITLES: dict[ErrorKind, str] = {
    ErrorKind.CLI_NOT_FOUND: "The claude CLI could not be started",
    ErrorKind.NESTED_SESSION: "The claude CLI refused to run inside another Claude Code session",
    ErrorKind.AUTH: "The claude CLI is not authenticated",
    ErrorKind.RATE_LIMIT: "The API rate limit was hit",
    ErrorKind.USAGE_LIMIT: "The Claude usage limit is reached",
    ErrorKind.CONTEXT_LIMIT: "The prompt does not fit the model's context window",
    ErrorKind.MAX_TURNS: "The run stopped at its max_turns limit",
    ErrorKind.MAX_BUDGET: "The run stopped at its max_budget_usd limit",
    ErrorKind.NETWORK: "The claude CLI could not reach the API",
    ErrorKind.OVERLOADED: "The API is overloaded",
    ErrorKind.API_ERROR: "The API failed with a server error",
    ErrorKind.TIMEOUT: "The run timed out",
    ErrorKind.CRASHED: "The claude CLI failed",
}

HINTS: dict[ErrorKind, str] = {
    ErrorKind.CLI_NOT_FOUND: (
        "Install Claude Code (npm install -g @anthropic-ai/claude-code) or point "
        "CC_EXECUTOR_CLAUDE_BIN at the claude executable."
    ),
    ErrorKind.NESTED_SESSION: (
        "Unset CLAUDECODE in the environment the CLI gets (the service strips it from its own "
        "environment and from the task's env)."
    ),
    ErrorKind.AUTH: (
        "Log in once as the service's user (run `claude`, then /login), or provide a valid "
        "ANTHROPIC_API_KEY and set CC_EXECUTOR_STRIP_ANTHROPIC_API_KEY=false."
    ),
    ErrorKind.RATE_LIMIT: (
        "Wait until the limit resets (reset_at, when the CLI gave it), then send the task "
        "again; with `resume` the conversation continues where it stopped."
    ),
    ErrorKind.USAGE_LIMIT: (
        "Wait until the usage limit resets, or use another account, plan or API key."
    ),
    ErrorKind.CONTEXT_LIMIT: (
        "Shorten the prompt or what it pulls in, or start a new session instead of resuming."
    ),
    ErrorKind.MAX_TURNS: (
        "Raise max_turns, or resume the session (resume=<claude_session_id>) to continue."
    ),
    ErrorKind.MAX_BUDGET: (
        "Raise max_budget_usd, or resume the session (resume=<claude_session_id>) to continue."
    ),
    ErrorKind.NETWORK: (
        "Check the route to the Anthropic API (DNS, proxy, firewall, HTTPS_PROXY) and retry."
    ),
    ErrorKind.OVERLOADED: (
        "Transient: retry later (`retries` does it with back-off); `resume` continues the "
        "conversation."
    ),
    ErrorKind.API_ERROR: (
        "Usually transient: retry (`retries` does it with back-off); `resume` continues the "
        "conversation."
    ),
    ErrorKind.TIMEOUT: (
        "Raise timeout / idle_timeout or split the task. A CLI that keeps retrying an "
        "unreachable API produces output, so only the overall timeout stops it."
    ),
    ErrorKind.CRASHED: "Read the stderr tail and the task output; rerun to see if it repeats.",
}

_I = re.IGNORECASE

TEXT_PATTERNS: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = (
    (
        ErrorKind.NESTED_SESSION,
        re.compile(r"cannot be launched inside another Claude Code session|\bCLAUDECODE\b", _I),
    ),
    (
        ErrorKind.USAGE_LIMIT,
        re.compile(
            r"usage limit|hit your (?:\w+ )?limit|credit balance is too low|out of extra usage",
            _I,
        ),
    ),
    (
        ErrorKind.AUTH,
        re.compile(
            r"not logged in|invalid api key|/login\b|authenticat|oauth token"
            r"|invalid x-api-key|\bunauthorized\b",
            _I,
        ),
    ),
    (
        ErrorKind.RATE_LIMIT,
        re.compile(r"rate[ _-]?limit|\b429\b|too many requests", _I),
    ),
    (ErrorKind.OVERLOADED, re.compile(r"overloaded_error|\b529\b|\boverloaded\b", _I)),
    (
        ErrorKind.CONTEXT_LIMIT,
        re.compile(
            r"prompt is too long|context length|context window|context_length_exceeded"
            r"|input is too long",
            _I,
        ),
    ),
    (
        ErrorKind.NETWORK,
        re.compile(
            r"ENOTFOUND|ECONNREFUSED|ETIMEDOUT|ECONNRESET|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH"
            r"|\bnetwork\b|connection error|unable to connect|fetch failed|socket hang up",
            _I,
        ),
    ),
)
"""Ordered (first match wins): more specific kinds first, e.g. usage limit before rate limit."""

ASSISTANT_ERRORS: dict[str, ErrorKind] = {
    "authentication_failed": ErrorKind.AUTH,
    "rate_limit": ErrorKind.RATE_LIMIT,
    "billing_error": ErrorKind.USAGE_LIMIT,
}
"""The assistant message's `error` field (a synthetic message the CLI writes on API errors)."""

API_STATUS: dict[int, ErrorKind] = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.API_ERROR,
    502: ErrorKind.API_ERROR,
    503: ErrorKind.API_ERROR,
    504: ErrorKind.API_ERROR,
    529: ErrorKind.OVERLOADED,
}

_LIMIT_KINDS = (ErrorKind.RATE_LIMIT, ErrorKind.USAGE_LIMIT)
_UNIX_RESET = re.compile(r"limit reached\|(\d{9,11})\b", _I)
_RESET_WITH_ZONE = re.compile(r"\breset(?:s)?\s+(?:at\s+)?([^\n()·|]{1,40}?\([^()\n]{1,40}\))", _I)
_RESET_PLAIN = re.compile(r"\breset(?:s)?\s+(?:at\s+)?([^\n()·|.]{1,40})", _I)


def classify(
    *,
    state: ClaudeStreamState | None,
    stderr_tail: str,
    exit_code: int | None,
    signal: int | None,
    timed_out: bool,
    spawn_error: str | None,
) -> ClaudeError | None:
    """Return why the run failed, or None when it succeeded (exit 0, result not an error).

    `stderr_tail` is the end of the CLI's stderr; `signal` the signal that ended it, if any;
    `spawn_error` the text of the exception raised when starting it (e.g. FileNotFoundError).
    """
    if spawn_error:
        return _make(ErrorKind.CLI_NOT_FOUND, spawn_error)
    clean_exit = exit_code == 0 and signal is None and not timed_out
    if clean_exit and (state is None or (state.result_seen and state.is_error is not True)):
        return None
    stdout_text = state.error_text if state is not None else ""
    if state is not None:
        found = _from_structured(state, stdout_text)
        if found is not None:
            return found
        if state.is_error or state.assistant_error:
            found = _from_text(stdout_text, stdout_text, state)
            if found is not None:
                return found
    if timed_out:
        detail = "killed after its timeout"
        if state is not None and state.api_retries and not state.result_seen:
            detail += (
                f" while the CLI was still retrying the API ({state.api_retries} retries, "
                f"last error: {state.last_retry_error or 'unknown'})"
            )
        return _make(ErrorKind.TIMEOUT, detail)
    if stderr_tail.strip():
        found = _from_text(stderr_tail, stdout_text + "\n" + stderr_tail, state)
        if found is not None:
            return found
    if state is not None and state.api_retries and not clean_exit:
        # Retries with no HTTP status are connection failures (the recorded no-network run).
        status = state.last_retry_status
        kind = ErrorKind.NETWORK if status is None else API_STATUS.get(status)
        if kind is not None:
            detail = stdout_text or (
                f"gave up after {state.api_retries} API retries "
                f"(last error: {state.last_retry_error or 'unknown'})"
            )
            reset = _reset_at(state, stdout_text) if kind in _LIMIT_KINDS else None
            return _make(kind, detail, reset)
    if clean_exit and state is not None and not state.result_seen:
        return _make(ErrorKind.CRASHED, "the CLI exited 0 without writing a result event")
    return _make(ErrorKind.CRASHED, _crash_detail(stdout_text, stderr_tail, exit_code, signal))


def _from_structured(state: ClaudeStreamState, text: str) -> ClaudeError | None:
    subtype = state.subtype or ""
    if subtype == "error_max_turns" or state.terminal_reason == "max_turns":
        return _make(ErrorKind.MAX_TURNS, text or f"stopped after {state.num_turns} turns")
    if subtype.startswith("error_max_budget") or state.terminal_reason == "budget_exhausted":
        return _make(ErrorKind.MAX_BUDGET, text or f"spent ${state.total_cost_usd}")
    kind = ASSISTANT_ERRORS.get(state.assistant_error or "")
    if kind is None and state.api_error_status is not None:
        kind = API_STATUS.get(state.api_error_status)
    info = state.rate_limit_info
    if kind is None and info is not None and info.get("status") == "rejected":
        kind = ErrorKind.RATE_LIMIT
    if kind is None:
        return None
    return _make(kind, text, _reset_at(state, text) if kind in _LIMIT_KINDS else None)


def _from_text(
    text: str, all_text: str, state: ClaudeStreamState | None = None
) -> ClaudeError | None:
    for kind, pattern in TEXT_PATTERNS:
        if pattern.search(text):
            reset = _reset_at(state, all_text) if kind in _LIMIT_KINDS else None
            return _make(kind, _relevant_lines(text, pattern), reset)
    return None


def _relevant_lines(text: str, pattern: re.Pattern[str]) -> str:
    """The CLI's error lines starting at the first match (stderr tails hold much noise)."""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if pattern.search(line):
            return "\n".join(lines[i : i + 3])
    return text.strip()


def _crash_detail(
    stdout_text: str, stderr_tail: str, exit_code: int | None, signal: int | None
) -> str:
    how = f"killed by signal {signal}" if signal is not None else f"exit code {exit_code}"
    tail = (stdout_text or stderr_tail).strip()
    if tail:
        tail = tail[-MESSAGE_DETAIL_MAX_CHARS:]
        return f"{how}: {tail}"
    return how


def _make(kind: ErrorKind, detail: str, reset_at: str | None = None) -> ClaudeError:
    detail = " ".join(detail.split())[:MESSAGE_DETAIL_MAX_CHARS]
    message = f"{TITLES[kind]}: {detail}" if detail else TITLES[kind]
    return ClaudeError(kind=kind, message=message, hint=HINTS[kind], reset_at=reset_at)


def _reset_at(state: ClaudeStreamState | None, text: str) -> str | None:
    """When a limit resets: a structured `resetsAt`, a `|<unix ts>` suffix, or 'resets <when>'."""
    info = state.rate_limit_info if state is not None else None
    if info is not None:
        ts = info.get("resetsAt")
        if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
            return _iso(ts)
    if match := _UNIX_RESET.search(text):
        return _iso(int(match.group(1)))
    match = _RESET_WITH_ZONE.search(text) or _RESET_PLAIN.search(text)
    if match:
        when = match.group(1).strip(" ,")
        return when or None
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_CLOCK = re.compile(
    r"^(?:(?P<mon>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?:at\s+)?)?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>am|pm)?"
    r"(?:\s*\((?P<tz>[^()]+)\))?$",
    _I,
)


def reset_time(reset_at: str, now: datetime) -> datetime | None:
    """Resolve a `ClaudeError.reset_at` to an aware UTC datetime, or None if not understood.

    Accepts ISO 8601 (returned as is, even if past) and the CLI's clock forms: `3pm`,
    `11:15pm (Asia/Kolkata)`, `Apr 17, 7pm (Asia/Riyadh)`. A clock time without a date means
    its next occurrence after `now`; without a zone, `now`'s zone (UTC when `now` is naive).
    """
    text = reset_at.strip()
    now_aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is not None:
        aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    match = _CLOCK.match(text)
    if not match:
        return None
    tz: Any = now_aware.tzinfo
    if match.group("tz"):
        try:
            tz = ZoneInfo(match.group("tz").strip())
        except (ZoneInfoNotFoundError, ValueError):
            return None
    hour = int(match.group("h"))
    minute = int(match.group("m") or 0)
    ampm = (match.group("ap") or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    local_now = now_aware.astimezone(tz)
    if match.group("mon"):
        month = _MONTHS.get(match.group("mon").lower())
        if month is None:
            return None
        try:
            candidate = local_now.replace(
                month=month,
                day=int(match.group("day")),
                hour=hour,
                minute=minute,
                second=0,
                microsecond=0,
            )
        except ValueError:
            return None
        if candidate < local_now - timedelta(days=1):
            candidate = candidate.replace(year=candidate.year + 1)
        return candidate.astimezone(UTC)
    candidate = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate < local_now:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)
