"""Settings: every knob of the service, from `CC_EXECUTOR_*` env vars and an optional file.

Precedence (highest first): constructor arguments, environment variables, the config file
named by `CC_EXECUTOR_CONFIG` (JSON or TOML), then the defaults below.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cc_executor.policy import DEFAULT_ALLOWED_ENV, absolute_entries


def default_data_dir() -> Path:
    """The user's state dir: `$XDG_STATE_HOME/cc-executor` or `~/.local/state/cc-executor`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cc-executor"


class UuidVerificationHook(BaseModel):
    """Built-in hook: Claude tasks must end their answer with a per-task UUID."""

    enabled: bool = False
    fail_on_missing: bool = True


class HooksConfig(BaseModel):
    """Commands run around each task with the task record as JSON on stdin."""

    pre_execute: list[str] = Field(default_factory=list)
    post_execute: list[str] = Field(default_factory=list)
    timeout: float = 30.0
    uuid_verification: UuidVerificationHook = Field(default_factory=UuidVerificationHook)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by CC_EXECUTOR_CONFIG (JSON, or TOML by extension)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CC_EXECUTOR_CONFIG")
        if not path:
            return {}
        p = Path(path).expanduser()
        text = p.read_text()
        if p.suffix == ".toml":
            return tomllib.loads(text)
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"config file {p} must hold a JSON object")
        return data


class Settings(BaseSettings):
    """All configuration of cc-executor. Documented in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="CC_EXECUTOR_", env_nested_delimiter="__", extra="ignore"
    )

    # Network
    host: str = "127.0.0.1"
    port: int = 8003
    auth_token: str | None = None
    allowed_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    max_message_bytes: int = 4 * 1024 * 1024
    max_connections: int = 256
    max_handshakes: int = 64
    handshake_timeout: float = Field(default=5.0, gt=0)
    max_requests_in_flight: int = Field(default=64, ge=1)
    max_reply_bytes_in_flight: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_subscriptions_per_connection: int = Field(default=256, ge=1)

    # Rate limits (0 = unlimited)
    max_tasks_per_minute_per_connection: int = 0
    max_connections_per_client: int = 0

    # What may run
    allowed_commands: list[str] | None = None
    allowed_env: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_ENV))
    shell: str = "/bin/sh"

    # Which engine this is: records name it, and recovery touches only its own
    node_id: str | None = None

    # Cluster mode (docs/cluster.md): nodes that share a Redis share one queue and one view.
    # The URL may hold credentials; it is never logged or shown (`cluster.keys.redact`).
    redis_url: str | None = None
    node_ttl: float = Field(default=10.0, gt=0)  # heartbeat time-to-live, seconds
    output_retention_bytes: int = Field(default=64 * 1024 * 1024, ge=0)  # per task stream
    # How long a finished task's output streams stay in Redis (0: until the task is
    # deleted by hand); after it, the node that ran the task serves them from its log.
    output_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)

    # Scheduling and time limits
    max_concurrent_tasks: int = 32
    max_queued_tasks: int = 10_000
    default_timeout: float | None = None
    max_timeout: float | None = None
    kill_grace_seconds: float = 5.0

    # Output
    subscriber_queue_bytes: int = 8 * 1024 * 1024
    recent_tasks_bytes: int = Field(default=64 * 1024 * 1024, ge=0)

    # Storage and logging
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    log_file: Path | None = None

    # Claude
    claude_bin: str = "claude"
    claude_trusted_dirs: list[Path] = Field(default_factory=list)
    claude_allow_permission_bypass: bool = False
    strip_anthropic_api_key: bool = True
    # Automatic retries (`retries` on execute_claude / session.create): back-off base and
    # cap, and the longest a rate_limit retry waits for its reset time (else no retry)
    retry_backoff_seconds: float = Field(default=2.0, gt=0)
    retry_backoff_max_seconds: float = Field(default=60.0, gt=0)
    rate_limit_max_wait_seconds: float = Field(default=300.0, ge=0)

    # Hot sessions: a live claude per session, its turns written to its stdin
    hot_sessions: bool = False
    hot_idle_seconds: float = Field(default=300.0, gt=0)
    max_hot_sessions: int = Field(default=8, ge=0)

    # Hooks
    hooks: HooksConfig = Field(default_factory=HooksConfig)

    # Workspaces (git worktrees of tasks and sessions; docs/workspaces.md)
    workspace_dir: Path | None = None  # default <data_dir>/worktrees; may be in a repo only if set
    workspace_lock_wait_seconds: float = 30.0  # how long a lock held by another git is waited for

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @field_validator("allowed_commands")
    @classmethod
    def _absolute_paths(cls, v: list[str] | None) -> list[str] | None:
        # At start-up, against the service's own directory: a task's cwd is the client's.
        return None if v is None else absolute_entries(v)

    @field_validator("claude_bin")
    @classmethod
    def _absolute_claude_bin(cls, v: str) -> str:
        return absolute_entries([v])[0]

    @property
    def node(self) -> str:
        """`node_id`, or this host's name and the service's port."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tasks.sqlite3"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def worktrees_dir(self) -> Path:
        """Where task and session worktrees are created."""
        return self.workspace_dir or self.data_dir / "worktrees"

    def websocket_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/ws"
