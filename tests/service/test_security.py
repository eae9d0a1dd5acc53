"""The front door: token, Origin, paths, /health, limits, message size, the allow-list."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cc_executor.client import ExecutorClient
from cc_executor.config import HooksConfig
from cc_executor.protocol import ErrorCode
from cc_executor.server import ExecutorService
from tests.support import wait_until

from .conftest import MakeService, raw_connect


async def refused_status(url: str, **kw: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, proxy=None, open_timeout=10, **kw):
            pass
    return info.value.response.status_code, bytes(info.value.response.body or b"")


def http_url(service: ExecutorService, path: str) -> str:
    return f"http://127.0.0.1:{service.port}{path}"


# ------------------------------------------------------------------ token


async def test_token_generated_with_mode_0600(service: ExecutorService) -> None:
    path = service.settings.token_file
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == service.token
    assert len(service.token) >= 32
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".token")] == []


async def test_token_kept_across_restarts(make_service: MakeService) -> None:
    first = await make_service()
    await first.stop()
    again = ExecutorService(first.settings)
    await again.start()
    try:
        assert again.token == first.token
    finally:
        await again.stop()


async def test_configured_token_is_used_not_written(make_service: MakeService) -> None:
    svc = await make_service(auth_token="configured-token")
    assert svc.token == "configured-token"
    assert not svc.settings.token_file.exists()
    async with raw_connect(svc.url, "configured-token") as r:
        assert (await r.result("ping"))["pong"] is True


async def test_401_without_or_with_wrong_token(service: ExecutorService) -> None:
    code, body = await refused_status(service.url)
    assert code == 401 and b"token" in body
    code, _ = await refused_status(
        service.url, additional_headers={"Authorization": "Bearer wrong"}
    )
    assert code == 401
    code, _ = await refused_status(
        service.url, additional_headers={"Authorization": f"Bearer {service.token}x"}
    )
    assert code == 401
    code, _ = await refused_status(
        service.url, additional_headers={"Authorization": f"Basic {service.token}"}
    )
    assert code == 401
    code, _ = await refused_status(service.url + "?token=wrong")
    assert code == 401


async def test_token_in_query_and_alias_path(service: ExecutorService) -> None:
    for url in (f"{service.url}?token={service.token}", f"{service.url}/mcp?token={service.token}"):
        async with connect(url, proxy=None) as ws:
            await ws.send('{"jsonrpc":"2.0","method":"ping","id":1}')
            assert '"pong":true' in str(await ws.recv())


async def test_client_refused_with_clear_error(service: ExecutorService) -> None:
    from cc_executor.client import ExecutorConnectionError

    with pytest.raises(ExecutorConnectionError, match="401"):
        async with ExecutorClient(service.url, "wrong"):
            pass


# ------------------------------------------------------------------ origin, paths, health


async def test_403_on_foreign_origin(service: ExecutorService) -> None:
    auth = {"Authorization": f"Bearer {service.token}"}
    for origin in ("http://evil.example", "null", "http://localhost:8003"):
        code, body = await refused_status(service.url, origin=origin, additional_headers=auth)
        assert code == 403 and b"origin" in body


async def test_allowed_origin_accepted(make_service: MakeService) -> None:
    svc = await make_service(allowed_origins=["http://localhost:3000"])
    async with raw_connect(svc.url, svc.token, origin="http://localhost:3000") as r:
        assert (await r.result("ping"))["pong"] is True
    auth = {"Authorization": f"Bearer {svc.token}"}
    code, _ = await refused_status(svc.url, origin="http://localhost:3001", additional_headers=auth)
    assert code == 403


async def test_404_on_other_paths(service: ExecutorService) -> None:
    base = service.url.rsplit("/ws", 1)[0]
    auth = {"Authorization": f"Bearer {service.token}"}
    for path in ("/", "/wss", "/ws/other", "/api"):
        code, _ = await refused_status(base + path, additional_headers=auth)
        assert code == 404
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(http_url(service, "/nope"))
    assert r.status_code == 404


async def test_health_over_plain_http(service: ExecutorService, client: ExecutorClient) -> None:
    task = await client.execute(["sleep", "30"])
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(http_url(service, "/health"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["running"] == 1 and body["queued"] == 0
    assert body["uptime_s"] >= 0
    await task.cancel()


# ------------------------------------------------------------------ limits


async def test_message_too_large_closes_cleanly(make_service: MakeService) -> None:
    svc = await make_service(max_message_bytes=64 * 1024)
    async with raw_connect(svc.url, svc.token) as r:
        big = '{"jsonrpc":"2.0","method":"ping","id":1,"params":{"x":"' + "a" * 100_000 + '"}}'
        await r.send(big)
        with pytest.raises(ConnectionClosed) as info:
            await r.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    # The service keeps serving.
    async with raw_connect(svc.url, svc.token) as r:
        assert (await r.result("ping"))["pong"] is True
        # Just under the limit is fine.
        ok = await r.call("ping", {"x": "a" * 60_000})
        assert ok["error"]["code"] == ErrorCode.INVALID_PARAMS


async def test_max_connections_refuses_cleanly(make_service: MakeService) -> None:
    svc = await make_service(max_connections=2)
    async with raw_connect(svc.url, svc.token) as a, raw_connect(svc.url, svc.token) as b:
        code, body = await refused_status(
            svc.url, additional_headers={"Authorization": f"Bearer {svc.token}"}
        )
        assert code == 503 and b"too many" in body
        assert (await a.result("ping"))["pong"] and (await b.result("ping"))["pong"]
    assert await wait_until(lambda: svc.health()["connections"] == 0)
    async with raw_connect(svc.url, svc.token) as c:
        assert (await c.result("ping"))["pong"] is True


async def test_connections_per_client_429(make_service: MakeService) -> None:
    svc = await make_service(max_connections_per_client=1)
    async with raw_connect(svc.url, svc.token) as a:
        code, body = await refused_status(
            svc.url, additional_headers={"Authorization": f"Bearer {svc.token}"}
        )
        assert code == 429 and b"per client" in body
        assert (await a.result("ping"))["pong"] is True
    assert await wait_until(lambda: svc.health()["connections"] == 0)
    async with raw_connect(svc.url, svc.token) as b:
        assert (await b.result("ping"))["pong"] is True


async def test_rate_limit_per_connection(make_service: MakeService, tmp_path: Path) -> None:
    gate = tmp_path / "refuse"
    gate.touch()
    hooks = HooksConfig(pre_execute=[f"test ! -e {gate}"])
    svc = await make_service(max_tasks_per_minute_per_connection=2, hooks=hooks)
    async with raw_connect(svc.url, svc.token) as r:
        # Starts the engine refuses (here: a pre-execute hook) do not use up the limit.
        for _ in range(3):
            refused = await r.call("execute", {"command": ["true"]})
            assert refused["error"]["code"] == ErrorCode.HOOK_REJECTED
        gate.unlink()
        ids = [(await r.result("execute", {"command": ["true"]}))["task_id"] for _ in range(2)]
        before = await r.result("status", {})
        reply = await r.call("execute", {"command": ["true"], "name": "third"})
        err = reply["error"]
        assert err["code"] == ErrorCode.RATE_LIMITED == -32007
        assert err["data"]["limit_per_minute"] == 2 and 0 < err["data"]["retry_after_s"] <= 60
        after = await r.result("status", {})
        # Nothing else changed: no task was created, none was started.
        assert {t["task_id"] for t in after["tasks"]} == {t["task_id"] for t in before["tasks"]}
        assert set(ids) == {t["task_id"] for t in after["tasks"]}
        assert after["stats"]["tasks_started"] == before["stats"]["tasks_started"] == 2
        # Other methods still work on this connection.
        assert (await r.result("ping"))["pong"] is True
    # The limit is per connection: a new connection may start tasks.
    async with raw_connect(svc.url, svc.token) as r2:
        assert (await r2.result("execute", {"command": ["true"]}))["status"] in (
            "running",
            "completed",
        )


# ------------------------------------------------------------------ allow-list


@pytest.mark.parametrize(
    ("command", "env"),
    [
        ("echo a; touch {marker}", None),
        ("echo a && touch {marker}", None),
        ("echo $(touch {marker})", None),
        ("echo `touch {marker}`", None),
        ("echo a\ntouch {marker}", None),
        ("echo a | touch {marker}", None),
        ("{fake_ls}", None),
        (["{fake_ls}"], None),
        (["touch", "{marker}"], None),
        (["sh", "-c", "touch {marker}"], None),
        (["ls"], {"PATH": "{fake_dir}"}),
        (["ls"], {"LD_PRELOAD": "/tmp/evil.so"}),
    ],
)
async def test_allow_list_refusals(
    make_service: MakeService, tmp_path: Path, command: Any, env: dict[str, str] | None
) -> None:
    marker = tmp_path / "pwned"
    fake_dir = tmp_path / "x"
    fake_dir.mkdir()
    fake_ls = fake_dir / "ls"
    fake_ls.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake_ls.chmod(0o755)
    subs = {"marker": str(marker), "fake_ls": str(fake_ls), "fake_dir": str(fake_dir)}
    cmd = (
        command.format(**subs) if isinstance(command, str) else [c.format(**subs) for c in command]
    )
    params: dict[str, Any] = {"command": cmd}
    if env:
        params["env"] = {k: v.format(**subs) for k, v in env.items()}
    svc = await make_service(allowed_commands=["ls", "echo"])
    async with raw_connect(svc.url, svc.token) as r:
        reply = await r.call("execute", params)
        err = reply["error"]
        assert err["code"] == ErrorCode.COMMAND_NOT_ALLOWED
        assert err["message"]  # says why
        status = await r.result("status", {})
        assert status["tasks"] == [] and status["stats"]["tasks_started"] == 0
    assert not marker.exists()


async def test_allow_listed_command_runs(make_service: MakeService, tmp_path: Path) -> None:
    (tmp_path / "visible.txt").write_text("x")
    svc = await make_service(allowed_commands=["ls", "echo", sys.executable], allowed_env=["FOO"])
    async with ExecutorClient(svc.url, svc.token) as c:
        h = await c.execute("echo 'hello  world' *")
        done = await h.wait(30)
        assert done["status"] == "completed"
        # Split without a shell: quotes kept the spaces, * was not expanded.
        assert await c.read_output(h.task_id) == b"hello  world *\n"
        h2 = await c.execute(["ls"], cwd=str(tmp_path))
        assert (await h2.wait(30))["status"] == "completed"
        assert b"visible.txt" in await c.read_output(h2.task_id)
        h3 = await c.execute([sys.executable, "-c", "print(6*7)"], env={"FOO": "1"})
        assert (await h3.wait(30))["status"] == "completed"
        assert await c.read_output(h3.task_id) == b"42\n"
    assert os.environ.get("FOO") is None
