"""build_argv / build_env: the exact argv and environment given to `claude -p`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cc_executor.claude.argv import build_argv, build_env
from cc_executor.protocol import ErrorCode, ExecuteClaudeParams, ProtocolError

HEAD = ["claude", "-p", "--output-format", "stream-json", "--verbose"]


def params(**kw: Any) -> ExecuteClaudeParams:
    kw.setdefault("prompt", "hello")
    return ExecuteClaudeParams(**kw)


def test_minimal_argv_ends_with_separator_and_prompt() -> None:
    assert build_argv(params(), "claude") == [*HEAD, "--", "hello"]


def test_every_option_maps_to_its_flag() -> None:
    p = params(
        prompt="do it",
        model="opus",
        allowed_tools=["Bash(git log:*)", "Read"],
        disallowed_tools=["WebFetch"],
        permission_mode="acceptEdits",
        skip_permissions=True,
        max_turns=3,
        max_budget_usd=0.25,
        mcp_config="/etc/mcp.json",
        append_system_prompt="Be terse.",
        add_dirs=["/a", "/b c"],
        resume="sess-1",
        fork_session=True,
    )
    assert build_argv(p, "/opt/bin/claude") == [
        "/opt/bin/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        "opus",
        "--allowedTools",
        "Bash(git log:*),Read",
        "--disallowedTools",
        "WebFetch",
        "--permission-mode",
        "acceptEdits",
        "--dangerously-skip-permissions",
        "--max-turns",
        "3",
        "--max-budget-usd",
        "0.25",
        "--mcp-config",
        "/etc/mcp.json",
        "--append-system-prompt",
        "Be terse.",
        "--add-dir",
        "/a",
        "--add-dir",
        "/b c",
        "--resume=sess-1",
        "--fork-session",
        "--",
        "do it",
    ]


def test_mcp_config_dict_becomes_compact_json() -> None:
    cfg = {"mcpServers": {"x": {"command": "srv", "args": ["--a", "b"]}}}
    argv = build_argv(params(mcp_config=cfg), "claude")
    value = argv[argv.index("--mcp-config") + 1]
    assert " " not in value
    assert json.loads(value) == cfg


@pytest.mark.parametrize(
    "prompt",
    ["-rf /", "--model x", "--", "say \"hi\"\nand 'bye'", "  spaced  ", "ünï ✓", "$(echo no)"],
)
def test_prompt_is_last_argument_after_double_dash(prompt: str) -> None:
    argv = build_argv(params(prompt=prompt), "claude")
    assert argv[-2:] == ["--", prompt]
    assert argv.count("--") == 1 or prompt == "--"


def test_prompt_override_wins_over_params() -> None:
    argv = build_argv(params(prompt="original"), "claude", prompt="original\nUUID: x")
    assert argv[-1] == "original\nUUID: x"


def test_empty_values_are_left_out() -> None:
    argv = build_argv(params(allowed_tools=[], disallowed_tools=[], add_dirs=[], model=""), "c")
    assert argv == ["c", *HEAD[1:], "--", "hello"]


def test_fork_session_follows_resume() -> None:
    argv = build_argv(params(resume="abc", fork_session=True), "claude")
    i = argv.index("--resume=abc")
    assert argv[i : i + 2] == ["--resume=abc", "--fork-session"]


@pytest.mark.parametrize("resume", ["--version", "-h", "a b", "x;y", "", "é", "a" * 200])
def test_resume_must_be_a_session_id(resume: str) -> None:
    """`--resume` takes an optional value: one starting with `-` would be read as an
    option. The id goes in the same argument, and it must look like an id."""
    if not resume:
        assert not any(a.startswith("--resume") for a in build_argv(params(resume=""), "c"))
        return
    with pytest.raises(ProtocolError) as info:
        build_argv(params(resume=resume), "claude")
    assert info.value.code == ErrorCode.INVALID_PARAMS and "resume" in info.value.message


def test_flags_go_before_the_prompt() -> None:
    argv = build_argv(params(), "claude", flags=["--strict-mcp-config"])
    assert argv[-3:] == ["--strict-mcp-config", "--", "hello"]


def test_small_budget_keeps_full_precision() -> None:
    argv = build_argv(params(max_budget_usd=0.000125), "claude")
    assert float(argv[argv.index("--max-budget-usd") + 1]) == 0.000125


def test_build_env_strips_nesting_markers_always() -> None:
    base = {"PATH": "/bin", "CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli", "A": "1"}
    env = build_env(base, {"CLAUDECODE": "1", "B": "2", "A": "x"}, strip_api_key=False)
    assert env == {"PATH": "/bin", "A": "x", "B": "2"}
    assert base["CLAUDECODE"] == "1"  # the input mapping is not modified


def test_build_env_api_key_only_stripped_when_asked() -> None:
    base = {"ANTHROPIC_API_KEY": "sk-x", "HOME": "/h"}
    assert build_env(base, None, strip_api_key=True) == {"HOME": "/h"}
    assert build_env(base, None, strip_api_key=False) == base
    assert "ANTHROPIC_API_KEY" not in build_env({}, {"ANTHROPIC_API_KEY": "k"}, True)
