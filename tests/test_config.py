"""Settings: CC_EXECUTOR_* env vars, the CC_EXECUTOR_CONFIG file (JSON, TOML), precedence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cc_executor.config import Settings, default_data_dir


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CC_EXECUTOR_"):
            monkeypatch.delenv(key)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8003
    assert s.auth_token is None
    assert s.allowed_origins == []
    assert s.allowed_commands is None
    assert s.data_dir == tmp_path / "state" / "cc-executor"
    assert s.token_file == s.data_dir / "token"
    assert s.db_path.parent == s.data_dir and s.log_dir.parent == s.data_dir
    assert s.websocket_url() == "ws://127.0.0.1:8003/ws"
    assert s.hooks.pre_execute == [] and s.hooks.uuid_verification.enabled is False


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "state" / "cc-executor"


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC_EXECUTOR_PORT", "9123")
    monkeypatch.setenv("CC_EXECUTOR_HOST", "0.0.0.0")
    monkeypatch.setenv("CC_EXECUTOR_AUTH_TOKEN", "sekrit")
    monkeypatch.setenv("CC_EXECUTOR_MAX_CONCURRENT_TASKS", "3")
    monkeypatch.setenv("CC_EXECUTOR_KILL_GRACE_SECONDS", "0.5")
    monkeypatch.setenv("CC_EXECUTOR_ALLOWED_COMMANDS", '["ls", "git"]')
    monkeypatch.setenv("CC_EXECUTOR_ALLOWED_ORIGINS", '["http://localhost:3000"]')
    monkeypatch.setenv("CC_EXECUTOR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("CC_EXECUTOR_LOG_FORMAT", "text")
    monkeypatch.setenv("PORT", "1")  # unprefixed: ignored
    s = Settings()
    assert s.port == 9123
    assert s.host == "0.0.0.0"
    assert s.auth_token == "sekrit"
    assert s.max_concurrent_tasks == 3
    assert s.kill_grace_seconds == 0.5
    assert s.allowed_commands == ["ls", "git"]
    assert s.allowed_origins == ["http://localhost:3000"]
    assert s.data_dir == tmp_path / "d"
    assert s.log_format == "text"
    # A wildcard bind still gives clients a loopback URL.
    assert s.websocket_url() == "ws://127.0.0.1:9123/ws"


def test_invalid_env_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_EXECUTOR_PORT", "not-a-port")
    with pytest.raises(ValueError):
        Settings()


def test_nested_hooks_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_EXECUTOR_HOOKS__PRE_EXECUTE", '["check-it", "log-it"]')
    monkeypatch.setenv("CC_EXECUTOR_HOOKS__TIMEOUT", "7")
    monkeypatch.setenv("CC_EXECUTOR_HOOKS__UUID_VERIFICATION__ENABLED", "true")
    s = Settings()
    assert s.hooks.pre_execute == ["check-it", "log-it"]
    assert s.hooks.post_execute == []
    assert s.hooks.timeout == 7.0
    assert s.hooks.uuid_verification.enabled is True
    assert s.hooks.uuid_verification.fail_on_missing is True


def test_config_file_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "cc.json"
    cfg.write_text(
        json.dumps(
            {
                "port": 9001,
                "allowed_commands": ["ls"],
                "max_timeout": 60,
                "hooks": {
                    "post_execute": ["notify"],
                    "uuid_verification": {"enabled": True, "fail_on_missing": False},
                },
            }
        )
    )
    monkeypatch.setenv("CC_EXECUTOR_CONFIG", str(cfg))
    s = Settings()
    assert s.port == 9001
    assert s.allowed_commands == ["ls"]
    assert s.max_timeout == 60.0
    assert s.hooks.post_execute == ["notify"]
    assert s.hooks.uuid_verification.enabled is True
    assert s.hooks.uuid_verification.fail_on_missing is False


def test_config_file_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        'port = 9002\nshell = "/bin/bash"\nallowed_origins = ["http://a.example"]\n'
        "subscriber_queue_bytes = 1048576\n\n"
        '[hooks]\npre_execute = ["gate"]\ntimeout = 2.5\n\n'
        "[hooks.uuid_verification]\nenabled = true\n"
    )
    monkeypatch.setenv("CC_EXECUTOR_CONFIG", str(cfg))
    s = Settings()
    assert s.port == 9002
    assert s.shell == "/bin/bash"
    assert s.allowed_origins == ["http://a.example"]
    assert s.subscriber_queue_bytes == 1024 * 1024
    assert s.hooks.pre_execute == ["gate"]
    assert s.hooks.timeout == 2.5
    assert s.hooks.uuid_verification.enabled is True


def test_precedence_args_over_env_over_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "cc.json"
    cfg.write_text(json.dumps({"port": 1111, "host": "10.0.0.1", "max_connections": 5}))
    monkeypatch.setenv("CC_EXECUTOR_CONFIG", str(cfg))
    monkeypatch.setenv("CC_EXECUTOR_PORT", "2222")
    monkeypatch.setenv("CC_EXECUTOR_HOST", "10.0.0.2")
    s = Settings(host="10.0.0.3")
    assert s.host == "10.0.0.3"  # argument
    assert s.port == 2222  # env over file
    assert s.max_connections == 5  # file over default


def test_config_file_must_hold_an_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "cc.json"
    cfg.write_text("[1, 2]")
    monkeypatch.setenv("CC_EXECUTOR_CONFIG", str(cfg))
    with pytest.raises(ValueError, match="JSON object"):
        Settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC_EXECUTOR_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(OSError):
        Settings()
