"""The command allow-list: what it refuses, why it says so, and what it lets run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cc_executor.policy import SHELL_METACHARACTERS, absolute_entries, resolve_argv
from cc_executor.protocol import ErrorCode, ProtocolError

ALLOWED = ["ls", "echo"]


def refused(command: str | list[str], env: dict[str, str] | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        resolve_argv(command, "/bin/sh", ALLOWED, env)
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED
    return info.value


def test_no_allow_list_string_goes_through_the_shell() -> None:
    assert resolve_argv("echo hi | cat", "/bin/sh", None) == ["/bin/sh", "-c", "echo hi | cat"]
    assert resolve_argv(["echo", "a;b"], "/bin/bash", None) == ["echo", "a;b"]


@pytest.mark.parametrize(
    ("command", "chars"),
    [
        ("ls; rm -rf /", [";"]),
        ("ls && rm -rf /", ["&"]),
        ("ls || true", ["|"]),
        ("ls | sh", ["|"]),
        ("echo $(id)", ["$", "(", ")"]),
        ("echo `id`", ["`"]),
        ("echo ${HOME}", ["$", "{", "}"]),
        ("ls\nrm -rf /", ["\n"]),
        ("ls\rrm", ["\r"]),
        ("ls > /tmp/x", [">"]),
        ("ls < /etc/passwd", ["<"]),
        ("ls &", ["&"]),
        ("echo a\\;b", [";", "\\"]),
    ],
)
def test_shell_metacharacters_are_refused_with_reason(command: str, chars: list[str]) -> None:
    err = refused(command)
    assert "metacharacters" in err.message
    assert err.data is not None
    assert set(chars) <= set(err.data["characters"])
    assert set(err.data["characters"]) <= SHELL_METACHARACTERS


def test_program_not_listed() -> None:
    err = refused("cat /etc/passwd")
    assert "'cat'" in err.message and "allowed_commands" in err.message
    assert err.data is not None and err.data["program"] == "cat"
    refused(["sh", "-c", "ls"])
    refused(["bash"])


def test_path_trick_is_not_the_listed_name(tmp_path: Path) -> None:
    fake = tmp_path / "x" / "ls"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(0o755)
    for cmd in (str(fake), [str(fake)], "./ls", ["../bin/ls"], f"{tmp_path}/x/../x/ls -l"):
        err = refused(cmd)
        assert "not in allowed_commands" in err.message


def test_listed_path_must_match_exactly() -> None:
    echo = shutil.which("echo")
    assert echo is not None
    allowed = [echo]
    assert resolve_argv([echo, "a"], "/bin/sh", allowed) == [echo, "a"]
    # Same file through a normalised path: fine; the bare name is not the listed path.
    odd = os.path.join(os.path.dirname(echo), ".", "echo")
    assert resolve_argv([odd], "/bin/sh", allowed) == [odd]
    with pytest.raises(ProtocolError):
        resolve_argv(["echo", "a"], "/bin/sh", allowed)


@pytest.mark.parametrize(
    "key",
    ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "BASH_ENV", "IFS"],
)
def test_dangerous_env_overrides_are_refused(key: str) -> None:
    err = refused("ls", {key: "/tmp/evil"})
    assert key in err.message
    assert err.data == {"key": key, "rule": "env", "setting": "allowed_env"}


@pytest.mark.parametrize(
    "key", ["PYTHONUSERBASE", "HOME", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "FOO", "path"]
)
def test_env_names_outside_allowed_env_are_refused(key: str) -> None:
    """An allow-list of names, not a deny-list: a name nobody thought of is refused too."""
    err = refused("ls", {key: "/tmp/evil"})
    assert "allowed_env" in err.message and err.data is not None and err.data["key"] == key


def test_env_names_in_allowed_env_are_fine() -> None:
    argv = resolve_argv("echo hi", "/bin/sh", ALLOWED, {"LANG": "C", "LC_ALL": "C", "TZ": "UTC"})
    assert argv[1:] == ["hi"]
    argv = resolve_argv(["echo"], "/bin/sh", ALLOWED, {"FOO": "1"}, allowed_env=["FOO"])
    assert argv == [shutil.which("echo")]
    with pytest.raises(ProtocolError):
        resolve_argv(["echo"], "/bin/sh", ALLOWED, {"FOOD": "1"}, allowed_env=["FOO"])
    assert resolve_argv(["echo"], "/bin/sh", ALLOWED, {"FOOD": "1"}, allowed_env=["FOO*"])


def test_relative_entry_is_resolved_at_start_up_not_against_the_task_cwd(tmp_path: Path) -> None:
    """`./run.sh` listed means the service's ./run.sh: a client's cwd does not change it."""
    home = tmp_path / "service"
    evil = tmp_path / "evil"
    for d in (home, evil):
        d.mkdir()
        (d / "run.sh").write_text("#!/bin/sh\n")
    allowed = absolute_entries(["./run.sh", "ls"], base=str(home))
    assert allowed == [str(home / "run.sh"), "ls"]
    with pytest.raises(ProtocolError) as info:
        resolve_argv(["./run.sh"], "/bin/sh", allowed, cwd=str(evil))
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED
    # In the listed file's own directory it runs, pinned to the absolute path.
    assert resolve_argv(["./run.sh", "x"], "/bin/sh", allowed, cwd=str(home)) == [
        str(home / "run.sh"),
        "x",
    ]


def test_allowed_string_is_split_without_a_shell_and_pinned() -> None:
    argv = resolve_argv("echo 'a b' \"c\" d*", "/bin/sh", ALLOWED)
    assert argv[0] == shutil.which("echo")
    assert argv[1:] == ["a b", "c", "d*"]
    # And that argv really runs as asked: the glob is not expanded, quotes are gone.
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    assert out == b"a b c d*\n"


def test_allowed_but_missing_program() -> None:
    with pytest.raises(ProtocolError) as info:
        resolve_argv("no-such-program-xyz", "/bin/sh", ["no-such-program-xyz"])
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED
    assert "not found" in info.value.message


def test_unbalanced_quotes_and_empty() -> None:
    assert "cannot split" in refused("echo 'oops").message
    assert "empty" in refused("   ").message
