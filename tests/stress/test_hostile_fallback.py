"""Issue 17: the bridge's local fallback never runs what the service would refuse.

A service whose allow-list lets only `echo` run, and an `AutoTransport` (the bridge's
default transport) in front of it, its local engine configured with no allow-list at all.
- Connected, it learns the service's policy (`ping`); once the service is stopped, its
  calls run locally, and a program the service refuses, shell syntax, and an env name the
  service does not allow are refused there too (-32002), nothing runs; `echo` does run.
  The service's data dir is not the fallback's: what holds is what it learned.
- Never connected (the service is down from the start), its data dir holds the
  service's `policy.json`: the same refusals.
- A `policy.json` that cannot be parsed: nothing runs locally, with one clear error
  naming the file; reading (`status`) still works.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cc_executor.config import Settings
from cc_executor.protocol import ErrorCode, Method, ProtocolError
from cc_executor.transport.auto import AutoTransport
from cc_executor.transport.inprocess import InProcessTransport
from cc_executor.transport.websocket import WebSocketTransport
from tests.support import ServiceProcess

from .conftest import MakeSvc

pytestmark = pytest.mark.stress

ALLOW_ECHO = {"CC_EXECUTOR_ALLOWED_COMMANDS": json.dumps(["echo"])}


def _auto(svc: ServiceProcess, data_dir: Path, token: str) -> AutoTransport:
    own = Settings(data_dir=data_dir, kill_grace_seconds=1, allowed_commands=None)
    remote = WebSocketTransport(svc.url, token, settings=own, connect_timeout=1.0)
    return AutoTransport(remote, InProcessTransport(own))


async def _run(auto: AutoTransport, command: Any, **params: Any) -> dict[str, Any]:
    started = await auto.call(Method.EXECUTE, {"command": command, **params})
    return started


async def _refused(auto: AutoTransport, command: Any, rule: str, **params: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await _run(auto, command, **params)
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED, info.value
    assert (info.value.data or {}).get("rule") == rule, info.value.data
    return info.value


async def _refusals_hold_locally(auto: AutoTransport, tmp_path: Path) -> None:
    """What the service refuses is refused by the local engine; what it allows runs."""
    marker = tmp_path / "ran"
    await _refused(auto, ["touch", str(marker)], "program")
    await _refused(auto, f"echo hi; touch {marker}", "shell_syntax")
    await _refused(auto, ["echo", "hi"], "env", env={"LD_PRELOAD": str(marker)})
    with pytest.raises(ProtocolError) as info:
        await auto.call(Method.EXECUTE_CLAUDE, {"prompt": "hi"})  # claude is not listed
    assert info.value.code == ErrorCode.COMMAND_NOT_ALLOWED
    ok = await _run(auto, ["echo", "allowed"])
    assert ok["backend"] == "local", ok
    assert auto.local.runtime is not None
    rec = await auto.local.runtime.engine.wait(ok["task_id"], 30)
    assert str(rec.status) == "completed", rec
    page = await auto.call(Method.OUTPUT, {"task_id": ok["task_id"], "limit": 100})
    assert page["data"] == "allowed\n", page
    assert not marker.exists()


async def test_fallback_applies_the_policy_it_learned(make_svc: MakeSvc, tmp_path: Path) -> None:
    svc = await make_svc(**ALLOW_ECHO)
    auto = _auto(svc, tmp_path / "bridge-data", svc.token)  # not the service's data dir
    try:
        first = await _run(auto, ["echo", "remote"])
        assert first["backend"] == "websocket"
        assert auto.remote.service_policy is not None
        assert auto.remote.service_policy["allowed_commands"] == ["echo"]
        await svc.stop_async()
        assert not (tmp_path / "bridge-data" / "policy.json").exists()
        await _refusals_hold_locally(auto, tmp_path)
    finally:
        await auto.aclose()


async def test_fallback_reads_the_policy_file_when_never_connected(
    make_svc: MakeSvc, tmp_path: Path
) -> None:
    data = tmp_path / "shared-data"
    svc = await make_svc(data, **ALLOW_ECHO)
    path = data / "policy.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["allowed_commands"] == ["echo"]
    token = svc.token
    await svc.stop_async()
    auto = _auto(svc, data, token)  # the service is down: never reached
    try:
        await _refusals_hold_locally(auto, tmp_path)
        assert auto.remote_up is False and auto.remote.service_policy is None
    finally:
        await auto.aclose()


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"version": 2}'])
async def test_fallback_refuses_when_the_policy_cannot_be_read(
    make_svc: MakeSvc, tmp_path: Path, content: bytes
) -> None:
    data = tmp_path / "shared-data"
    svc = await make_svc(data)  # no allow-list at all: still, an unreadable file refuses
    token = svc.token
    await svc.stop_async()
    path = data / "policy.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    auto = _auto(svc, data, token)
    try:
        err = await _refused(auto, ["echo", "hi"], "service_policy")
        assert str(path) in err.message and "refusing to run locally" in err.message, err
        assert "\n" not in err.message
        listing = await auto.call(Method.STATUS, {})  # reading starts nothing: served
        assert listing["tasks"] == []
    finally:
        await auto.aclose()
