"""Per-connection limits and front-door checks, against a real service on loopback.

Each test performs the attack: a batch or a pipeline past the task-start rate limit, a
batch past the in-flight limit or the reply budget, subscriptions past their bound, an
`output` offset past any log, repeated access headers, a DNS-rebinding Host, and a task
that looks for the service's token in its environment.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.protocol import ErrorCode
from cc_executor.server import ExecutorService

from .conftest import MakeService, raw_connect


async def _http(port: int, head: str) -> tuple[int, bytes]:
    """Send a raw HTTP/1.1 request head; return the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


def _ws_head(port: int, *extra: str) -> str:
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _batch(method: str, params: dict[str, Any], n: int) -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i in range(n)]


async def test_start_rate_limit_holds_for_batches_and_pipelines(
    make_service: MakeService,
) -> None:
    svc = await make_service(max_tasks_per_minute_per_connection=2)
    params = {"command": [sys.executable, "-c", "pass"]}
    async with raw_connect(svc.url, svc.token) as r:
        await r.send(_batch("execute", params, 17))
        replies = await r.recv()
        for i in range(17):  # and 17 more, pipelined, without waiting for replies
            await r.send({"jsonrpc": "2.0", "id": 100 + i, "method": "execute", "params": params})
        for _ in range(17):
            replies.append(await _next_reply(r))
    started = [x for x in replies if "result" in x]
    limited = [x for x in replies if "error" in x]
    assert len(started) == 2, started
    assert {x["error"]["code"] for x in limited} == {ErrorCode.RATE_LIMITED}
    async with ExecutorClient(svc.url, svc.token) as c:
        assert (await c.status())["stats"]["tasks_started"] == 2


async def _next_reply(r: Any) -> dict[str, Any]:
    while True:
        msg = await r.recv()
        if "id" in msg:
            return dict(msg)
        r.notifications.append(msg)


async def test_each_batch_element_counts_in_flight(make_service: MakeService) -> None:
    svc = await make_service(max_requests_in_flight=4)
    async with raw_connect(svc.url, svc.token) as r:
        await r.send(_batch("ping", {}, 10))
        reply = await r.recv()
    assert [x["id"] for x in reply] == list(range(10))
    assert sum("result" in x for x in reply) == 4
    for x in reply[4:]:
        assert x["error"]["code"] == ErrorCode.CAPACITY_EXCEEDED, x
        assert "in flight" in x["error"]["message"]


async def test_reply_budget_refuses_a_batch_but_paces_a_pipeline(
    make_service: MakeService,
) -> None:
    svc = await make_service(max_reply_bytes_in_flight=256 * 1024)
    async with ExecutorClient(svc.url, svc.token) as c:
        h = await c.execute([sys.executable, "-c", "print('y' * 100_000, end='')"])
        assert (await h.wait(30))["status"] == "completed"
    call = {"task_id": h.task_id, "limit": 100_000}
    async with raw_connect(svc.url, svc.token) as r:
        await r.send(_batch("output", call, 6))
        reply = await r.recv()
        ok = [x for x in reply if "result" in x]
        refused = [x for x in reply if "error" in x]
        assert len(ok) == 2 and len(refused) == 4, [x.get("error") for x in reply]
        for x in refused:
            assert x["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
            assert x["error"]["data"]["max_reply_bytes_in_flight"] == 256 * 1024
        # The same six as separate frames: each waits for room, none is refused.
        for i in range(6):
            await r.send({"jsonrpc": "2.0", "id": i, "method": "output", "params": call})
        sizes = [(await _next_reply(r))["result"]["size"] for _ in range(6)]
        assert sizes == [100_000] * 6


async def test_subscriptions_per_connection_are_bounded(make_service: MakeService) -> None:
    svc = await make_service(max_subscriptions_per_connection=3)
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    async with ExecutorClient(svc.url, svc.token) as c:
        ids = [(await c.execute(sleeper)).task_id for _ in range(4)]
        async with raw_connect(svc.url, svc.token) as r:
            for t in ids[:3]:
                assert "result" in await r.call("subscribe", {"task_id": t})
            again = await r.call("subscribe", {"task_id": ids[0]})  # the same one: fine
            assert "result" in again
            over = await r.call("subscribe", {"task_id": ids[3]})
            assert over["error"]["code"] == ErrorCode.CAPACITY_EXCEEDED, over
            assert "result" in await r.call("unsubscribe", {"task_id": ids[0]})
            assert "result" in await r.call("subscribe", {"task_id": ids[3]})
        for t in ids:
            await c.control(t, "CANCEL")


async def test_output_offset_is_validated(service: ExecutorService) -> None:
    async with ExecutorClient(service.url, service.token) as c:
        h = await c.execute([sys.executable, "-c", "print('hi')"])
        await h.wait(30)
    async with raw_connect(service.url, service.token) as r:
        far = await r.call("output", {"task_id": h.task_id, "offset": 2**44 + 1})
        assert far["result"]["size"] == 0 and far["result"]["eof"] is True
        for offset in (2**53, 2**63 - 1):
            bad = await r.call("output", {"task_id": h.task_id, "offset": offset})
            assert bad["error"]["code"] == ErrorCode.INVALID_PARAMS, bad
            assert bad["error"]["data"][0]["loc"] == "offset"


@pytest.mark.parametrize("header", ["Origin", "Authorization", "Host"])
async def test_a_repeated_access_header_is_a_400(
    service: ExecutorService, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    values = {
        "Origin": ["http://127.0.0.1", "http://evil.example"],
        "Authorization": [f"Bearer {service.token}", "Bearer x"],
        "Host": ["127.0.0.1", "evil.example"],
    }[header]
    extra = [f"Authorization: Bearer {service.token}"] if header != "Authorization" else []
    head = _ws_head(service.port, *extra, *(f"{header}: {v}" for v in values))
    status, body = await _http(service.port, head)
    assert status == 400 and header.encode() in body, (status, body)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("evil.example", False),
        ("evil.example:{port}", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("[::1]:{port}", True),
        ("app.localhost", True),
        ("10.1.2.3:{port}", True),  # an address: no DNS name to rebind
        ("executor.internal", True),  # listed in allowed_hosts
    ],
)
async def test_host_header_against_dns_rebinding(
    make_service: MakeService, host: str, allowed: bool
) -> None:
    svc = await make_service(allowed_hosts=["executor.internal"])
    host = host.format(port=svc.port)
    status, _ = await _http(svc.port, f"GET /health HTTP/1.1\nHost: {host}\n")
    assert (status == 200) is allowed, (host, status)
    auth = f"Authorization: Bearer {svc.token}"
    head = _ws_head(svc.port, auth).replace(f"Host: 127.0.0.1:{svc.port}", f"Host: {host}")
    status, _ = await _http(svc.port, head)
    assert (status == 101) is allowed, (host, status)
    status, _ = await _http(svc.port, "GET /health HTTP/1.1\n")  # no Host at all
    assert status == 400


async def test_tasks_do_not_inherit_the_service_token(
    make_service: MakeService, monkeypatch: pytest.MonkeyPatch, fake_claude_state: Any
) -> None:
    monkeypatch.setenv("CC_EXECUTOR_AUTH_TOKEN", "s3cret-token")
    svc = await make_service(auth_token="s3cret-token")
    async with ExecutorClient(svc.url, svc.token) as c:
        h = await c.execute("echo ${CC_EXECUTOR_AUTH_TOKEN-unset}")
        await h.wait(30)
        assert await c.read_output(h.task_id) == b"unset\n"
        h = await c.execute_claude("FAKE_PRINT_ENV=CC_EXECUTOR_AUTH_TOKEN")
        done = await h.wait(60)
        assert "CC_EXECUTOR_AUTH_TOKEN=<unset>" in (await c.status(h.task_id))["result"], done
