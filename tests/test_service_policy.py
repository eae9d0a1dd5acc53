"""The service's policy: what `strictest` keeps of several, the file's fail-closed cases."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cc_executor import service_policy
from cc_executor.config import Settings
from cc_executor.policy import command_argv
from cc_executor.protocol import ExecuteParams, ProtocolError
from cc_executor.service_policy import PolicyUnknown, ServicePolicy, strictest
from cc_executor.transport.fallback import FallbackPolicy


def _policy(**kw: object) -> ServicePolicy:
    return ServicePolicy.of(Settings(**kw))  # type: ignore[arg-type]


def test_strictest_meets_every_list_and_limit() -> None:
    service = _policy(
        allowed_commands=["echo", "/usr/bin/git", "ls"],
        allowed_env=["LANG", "LC_*"],
        claude_trusted_dirs=["/srv/a", "/srv/b"],
        claude_allow_permission_bypass=True,
        max_timeout=600,
        shell="/bin/bash",
        hooks={"pre_execute": ["audit"]},
    )
    own = _policy(
        allowed_commands=["echo", "ls", "rm"],
        allowed_env=["LANG"],
        claude_trusted_dirs=["/srv/b"],
        max_timeout=60,
        strip_anthropic_api_key=False,
        hooks={"pre_execute": ["local-check", "audit"]},
    )
    met = strictest(service, own)
    assert met.allowed_commands == ("echo", "ls")
    assert met.allowed_env == ("LANG",)
    assert met.claude_trusted_dirs == ("/srv/b",)
    assert met.claude_allow_permission_bypass is False
    assert met.strip_anthropic_api_key is True
    assert met.max_timeout == 60
    assert met.shell == "/bin/bash"  # the service's programs
    assert met.pre_execute_hooks == ("audit", "local-check")


def test_no_allow_list_on_one_side_keeps_the_others() -> None:
    open_service, listed = _policy(), _policy(allowed_commands=["echo"], allowed_env=["TZ"])
    assert strictest(open_service, listed).allowed_commands == ("echo",)
    assert strictest(open_service, listed).allowed_env == ("TZ",)
    assert strictest(listed, open_service).allowed_commands == ("echo",)
    assert strictest(open_service, _policy()).allowed_commands is None


def test_applied_settings_refuse_what_the_policy_refuses(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    _policy(allowed_commands=["echo"]).apply_to(settings)
    assert command_argv(ExecuteParams(command=["echo", "x"]), settings, None)[1:] == ["x"]
    with pytest.raises(ProtocolError):
        command_argv(ExecuteParams(command=["touch", "x"]), settings, None)


def test_policy_file_round_trip_and_fail_closed(tmp_path: Path) -> None:
    assert service_policy.read(tmp_path) is None  # no file: nothing known
    policy = _policy(allowed_commands=["echo"])
    service_policy.write(tmp_path, policy)
    path = service_policy.policy_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service_policy.read(tmp_path) == policy
    for content, why in (
        (b"", "not JSON"),
        (b"[1]", "not one this version understands"),
        (b'{"version": 2}', "not one this version understands"),
    ):
        path.write_bytes(content)
        with pytest.raises(PolicyUnknown, match=why) as info:
            service_policy.read(tmp_path)
        assert str(path) in str(info.value) and "refusing to run locally" in str(info.value)
    path.write_bytes(b"{}")
    os.chmod(path, 0)
    if os.geteuid() != 0:  # root reads it anyway
        with pytest.raises(PolicyUnknown, match="could not be read"):
            service_policy.read(tmp_path)


def test_a_policy_that_cannot_be_written_is_emptied(tmp_path: Path) -> None:
    """A failed write (a full disk) leaves no older policy to be applied: an empty file,
    which a fallback refuses to guess from."""
    service_policy.write(tmp_path, _policy(allowed_commands=["echo"]))
    (tmp_path / f".policy.json.{os.getpid()}").mkdir()  # where the new one would be written
    with pytest.raises(IsADirectoryError):
        service_policy.write(tmp_path, _policy())
    assert service_policy.policy_path(tmp_path).read_bytes() == b""
    with pytest.raises(PolicyUnknown, match="not JSON"):
        service_policy.read(tmp_path)


def test_fallback_policy_follows_the_file_and_what_it_learned(tmp_path: Path) -> None:
    told: dict[str, object] | None = None
    fallback = FallbackPolicy(Settings(data_dir=tmp_path), tmp_path, lambda: told)
    assert fallback.current().allowed_commands is None  # nothing known: its own settings
    service_policy.write(tmp_path, _policy(allowed_commands=["echo", "ls"]))
    assert fallback.current().allowed_commands == ("echo", "ls")  # the file, rewritten
    assert fallback.current() is fallback.current()  # kept while nothing changed
    told = _policy(allowed_commands=["ls", "cat"]).to_json()
    assert fallback.current().allowed_commands == ("ls",)  # learned and file: both hold
    service_policy.policy_path(tmp_path).write_text("{")
    with pytest.raises(PolicyUnknown, match="could not be read"):
        fallback.current()
    told = {**_policy().to_json(), "version": 7}
    os.unlink(service_policy.policy_path(tmp_path))
    with pytest.raises(PolicyUnknown, match="from the service's ping is not one"):
        fallback.current()
