"""Settings of the MCP bridge: `CC_EXECUTOR_*` environment variables, like the service.

The bridge also reads the service's own `Settings` (same prefix) for what the local
fallback engine needs (data dir, shell, allowed commands, claude binary, ...), so one set
of variables configures both. Documented in docs/mcp.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cc_executor.auth import read_token
from cc_executor.config import Settings
from cc_executor.problems import problems

S = TypeVar("S", bound=BaseSettings)

BridgeMode = Literal["auto", "websocket", "local"]


class BridgeSettings(BaseSettings):
    """Every knob of the MCP bridge, with its default."""

    model_config = SettingsConfigDict(
        env_prefix="CC_EXECUTOR_", extra="ignore", populate_by_name=True
    )

    websocket_url: str = "ws://127.0.0.1:8003/ws"
    """Where the executor service listens."""

    token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("token", "CC_EXECUTOR_TOKEN", "CC_EXECUTOR_AUTH_TOKEN"),
    )
    """The service token. Unset: read `token_file`, else the service's data dir token."""

    token_file: Path | None = None
    """A file holding the token (default: `<data dir>/token`, written by the service)."""

    bridge_mode: BridgeMode = "auto"
    """auto: the service, or the in-process engine while it is down; websocket; local."""

    default_timeout: float | None = Field(default=None, gt=0)
    """Wall-clock limit (s) for tasks that set none. Unset: none (or the service's own)."""

    wait_timeout: float = Field(default=50.0, gt=0)
    """How long (s) one tool call waits for its task before answering `status: running`."""

    max_output_chars: int = Field(default=20_000, ge=200)
    """Output returned inline by a tool (head and tail); the rest is paged."""

    pool_size: int = Field(default=4, ge=1, le=64)
    """WebSocket connections kept open to the service; calls are multiplexed over them."""

    connect_timeout: float = Field(default=0.5, gt=0)
    """How long to wait for the service before falling back to local execution (auto)."""

    connect_retry_for: float = Field(default=5.0, ge=0)
    """websocket mode: how long to retry (tenacity backoff) connecting before failing."""

    reconnect_max_wait: float = Field(default=0.5, gt=0)
    """auto mode, service down: longest pause between background reconnect attempts."""

    cancel_on_client_cancel: bool = True
    """Cancel a task when the client cancels the tool call waiting on it."""

    progress_interval: float = Field(default=0.2, ge=0.01)
    """Least time (s) between two progress notifications of one call."""

    heartbeat_interval: float = Field(default=5.0, gt=0)
    """A progress notification at least this often (s) while waiting, output or not."""

    bridge_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    """Log level of the bridge (logs go to stderr: stdout is the MCP protocol); any case."""

    session_id: str | None = None
    """`CC_EXECUTOR_SESSION_ID`: set by the service in a session turn's environment, so a
    bridge started by that turn's Claude knows which session it speaks for (the default
    `from_session` of `send_message_to_session`). Unset or empty elsewhere."""

    @field_validator("bridge_log_level", mode="before")
    @classmethod
    def _level_upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("session_id", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    def service_settings(self) -> Settings:
        """The service's settings from the same environment (local engine, token file)."""
        return load(Settings)

    def token_source(self, service: Settings) -> str:
        """Where `resolve_token` reads the token, as the user sets it."""
        if self.token:
            var = "CC_EXECUTOR_TOKEN" if "CC_EXECUTOR_TOKEN" in os.environ else None
            return f"the {var or 'CC_EXECUTOR_AUTH_TOKEN'} variable"
        if self.token_file is not None:
            return f"the token file {self.token_file} (CC_EXECUTOR_TOKEN_FILE)"
        if service.auth_token:
            return "the service settings' auth_token (its config file)"
        return (
            f"the service's token file {service.token_file} (in CC_EXECUTOR_DATA_DIR; "
            "or set CC_EXECUTOR_TOKEN)"
        )

    def resolve_token(self, service: Settings) -> str | None:
        """The token to present, read now: a service started later may have just made it."""
        if self.token:
            return self.token
        if self.token_file is not None:
            try:
                return self.token_file.expanduser().read_text().strip() or None
            except OSError:
                return None
        return read_token(service)


def _say(line: str) -> None:
    print(f"cc-executor-mcp: {line}", file=sys.stderr, flush=True)


def load(cls: type[S], say: Callable[[str], None] = _say) -> S:
    """`cls()` from the environment; a variable it refuses is named in one line (`say`) and
    its default used instead, so the bridge starts: its client would only see "Connection
    closed". Raises `ValidationError` only if the defaults do not help (a check across
    variables)."""
    try:
        return cls()
    except ValidationError as exc:
        refused = exc
    fields = cls.model_fields
    defaults: dict[str, Any] = {}
    for err in refused.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else ""
        if name not in fields:
            continue
        default = fields[name].get_default(call_default_factory=True)
        defaults[name] = default
        (line,) = problems([err], name=lambda path: f"CC_EXECUTOR_{str(path[0]).upper()}")
        say(f"{line}; using the default, {default!r}")
    if not defaults:
        raise refused
    return cls(**defaults)
