"""execute_claude under the allow-list: what is refused, by which rule, and what is pinned.

Pure checks of `policy.claude_run`; tests/stress/test_hostile_policy.py runs the same
attacks against the service and a fake claude that really runs hooks and MCP servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cc_executor.config import Settings
from cc_executor.policy import claude_run
from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ProtocolError
from tests.conftest import FAKE_CLAUDE


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        claude_bin=str(FAKE_CLAUDE),
        allowed_commands=[str(FAKE_CLAUDE), "echo"],
        **kw,
    )


def _refused(params: dict[str, Any], settings: Settings, cwd: str | None = None) -> Any:
    with pytest.raises(ProtocolError) as info:
        claude_run(ExecuteClaudeParams(prompt="hi", **params), settings, cwd)
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED, info.value.message
    return info.value


def test_no_allow_list_no_checks(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, claude_bin="claude")
    run = claude_run(ExecuteClaudeParams(prompt="hi", skip_permissions=True), s, None)
    assert run.flags == () and run.claude_bin == "claude"


def test_untrusted_cwd_loads_user_settings_only(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    run = claude_run(ExecuteClaudeParams(prompt="hi"), s, str(tmp_path))
    assert run.flags == ("--strict-mcp-config", "--setting-sources", "user")
    assert run.claude_bin == str(FAKE_CLAUDE)
    trusted = claude_run(
        ExecuteClaudeParams(prompt="hi"),
        _settings(tmp_path, claude_trusted_dirs=[tmp_path]),
        str(tmp_path / "."),
    )
    assert trusted.flags == ("--strict-mcp-config",)


@pytest.mark.parametrize("name", ["settings.json", "settings.local.json"])
def test_project_settings_in_an_untrusted_cwd(tmp_path: Path, name: str) -> None:
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / name).write_text("{}")
    err = _refused({}, _settings(tmp_path), str(tmp_path))
    assert err.data["rule"] == "project_settings" and err.data["setting"] == "claude_trusted_dirs"
    ok = _settings(tmp_path, claude_trusted_dirs=[tmp_path])
    claude_run(ExecuteClaudeParams(prompt="hi"), ok, str(tmp_path))


@pytest.mark.parametrize(
    "params",
    [
        {"skip_permissions": True},
        {"permission_mode": "bypassPermissions"},
        {"allowed_tools": ["Read", "Bash"]},
    ],
)
def test_permission_bypass(tmp_path: Path, params: dict[str, Any]) -> None:
    err = _refused(params, _settings(tmp_path))
    assert err.data["rule"] == "permission_bypass"
    allowed = _settings(tmp_path, claude_allow_permission_bypass=True)
    claude_run(ExecuteClaudeParams(prompt="hi", **params), allowed, None)
    claude_run(
        ExecuteClaudeParams(prompt="hi", allowed_tools=["Bash(git log:*)"]),
        _settings(tmp_path),
        None,
    )


def test_mcp_servers_are_checked_pinned_and_passed_inline(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    remote = {"type": "http", "url": "http://127.0.0.1:9/mcp"}
    cfg = {"mcpServers": {"ok": {"command": "echo", "args": ["a"]}, "web": remote}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(cfg))
    for given in (cfg, json.dumps(cfg), "mcp.json"):
        run = claude_run(ExecuteClaudeParams(prompt="hi", mcp_config=given), s, str(tmp_path))
        assert isinstance(run.mcp_config, str)
        servers = json.loads(run.mcp_config)["mcpServers"]
        assert servers["ok"]["command"].endswith("/echo") and servers["web"] == remote
    for bad, rule in (
        ({"x": {"command": "touch", "args": ["/tmp/p"]}}, "mcp_server"),
        ({"x": {"command": "echo", "env": {"LD_PRELOAD": "/x"}}}, "mcp_server"),
        ({"x": {"command": "echo", "cwd": "/tmp"}}, "mcp_server"),
    ):
        err = _refused({"mcp_config": {"mcpServers": bad}}, s)
        assert err.data["rule"] == rule and err.data["server"] == "x", err.data
    with pytest.raises(ProtocolError) as info:
        claude_run(ExecuteClaudeParams(prompt="hi", mcp_config="missing.json"), s, str(tmp_path))
    assert info.value.code == ErrorCode.INVALID_PARAMS and "mcp_config" in info.value.message


@pytest.mark.parametrize("key", ["HOME", "CLAUDE_CONFIG_DIR", "NODE_OPTIONS", "XDG_CONFIG_HOME"])
def test_env_that_redirects_config(tmp_path: Path, key: str) -> None:
    err = _refused({"env": {key: str(tmp_path)}}, _settings(tmp_path))
    assert err.data == {"rule": "env", "key": key, "setting": "allowed_env"}
