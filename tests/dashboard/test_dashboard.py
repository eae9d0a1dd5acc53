"""The dashboard's live task view, its HTTP side and its door (token, origin, listen)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cc_executor import dashboard
from cc_executor.client import ExecutorClient
from cc_executor.dashboard import CSP
from cc_executor.protocol import Action, Method, Notification, TaskStatus
from cc_executor.server import ExecutorService
from tests.dashboard.conftest import (
    TICKER,
    expect,
    http_url,
    needs_chromium,
    open_dashboard,
    row,
    screenshot,
)
from tests.support import group_running, group_stopped, live_members

# ------------------------------------------------------------------ the live task


@needs_chromium
async def test_live_log_and_pause_resume_cancel_buttons(
    service: ExecutorService, client: ExecutorClient, page: Any, fake_claude_state: Path
) -> None:
    # Some history for the table and the sessions panel: a finished command, a failed one,
    # and a session whose turn ran the fake `claude` (a Claude task with a cost).
    done = await client.execute(["echo", "hello from a finished task"], name="greeting")
    await done.wait(30)
    failed = await client.execute("echo 'no such file: data.csv' >&2; exit 3", name="loader")
    await failed.wait(30)
    workdir = fake_claude_state.parent / "project"
    workdir.mkdir()
    s = await client.call("session.create", {"working_dir": str(workdir), "name": "backend"})
    turn = await client.call(
        "session.send",
        {"session_id": s["session_id"], "message": "Add a /health endpoint", "wait": True},
    )
    assert turn["status"] == "completed"

    ticker = await client.execute(["sh", "-c", TICKER], name="ticker")
    pgid = ticker.pid
    assert pgid is not None

    await open_dashboard(page, service)
    ticker_row = row(page, ticker.task_id)
    await expect(ticker_row.locator(".status")).to_have_text("running")
    await expect(row(page, done.task_id).locator(".status")).to_have_text("completed")
    await expect(row(page, failed.task_id).locator(".status")).to_have_text("failed")
    claude_row = row(page, turn["task_id"])
    await expect(claude_row).to_contain_text("Add a /health endpoint")
    await expect(claude_row).to_contain_text(re.compile(r"\$0\.\d{4}"))  # its cost
    await expect(page.locator("#sessions")).to_contain_text("backend")

    # Select the ticker: its output appears and keeps coming (the view follows the stream).
    await ticker_row.click()
    await expect(page.locator("#log-task")).to_have_text(f"ticker ({ticker.task_id[:8]})")
    await expect(page.locator("#facts")).to_contain_text(f"Node{service.engine.node}")
    log = page.locator("#log")
    await expect(log).to_contain_text("line 3")
    await expect(log).to_contain_text("line 12")

    # Pause: the button's reply comes once the whole group is stopped.
    await page.locator("#btn-pause").click()
    await expect(page.locator("#log-status")).to_have_text("paused")
    await expect(ticker_row.locator(".status")).to_have_text("paused")
    # A parent in vfork() whose child stopped first sits in D with SIGSTOP pending: stopped.
    assert group_stopped(pgid), live_members(pgid)
    await expect(page.locator("#btn-resume")).to_be_enabled()
    await expect(page.locator("#btn-pause")).to_be_disabled()

    # Resume: running again, and new lines keep arriving in the log.
    await page.locator("#btn-resume").click()
    await expect(page.locator("#log-status")).to_have_text("running")
    assert group_running(pgid), live_members(pgid)
    last = max(int(n) for n in re.findall(r"line (\d+)", await log.inner_text()))
    await expect(log).to_contain_text(f"line {last + 5}\n")

    # The sessions panel: the session's turns, linked to their tasks.
    await page.locator("#sessions li", has_text="backend").click()
    await expect(page.locator("#sessions li", has_text="backend")).to_contain_text("$0.")
    await expect(page.locator("#session-turns")).to_contain_text("Add a /health endpoint")
    await expect(page.locator("#session-turns")).to_contain_text(turn["task_id"])
    await expect(page.locator("#stats")).to_contain_text("1 running · 0 paused")
    await expect(page).to_have_title("1 running · 1 failed · cc-executor")
    await expect(page.locator("#token-form")).to_be_hidden()
    await screenshot(page, "dashboard-running.png")

    # Cancel: the group is gone when the status says cancelled.
    await page.locator("#btn-cancel").click()
    await expect(page.locator("#log-status")).to_have_text("cancelled")
    await expect(ticker_row.locator(".status")).to_have_text("cancelled")
    assert not live_members(pgid)
    await expect(page.locator("#btn-cancel")).to_be_disabled()
    await expect(page.locator("#failure")).to_contain_text("cancelled by a user")
    await screenshot(page, "dashboard-cancelled.png")


@needs_chromium
async def test_token_form_when_the_page_has_no_token(
    service: ExecutorService, client: ExecutorClient, page: Any, browser_errors: list[str]
) -> None:
    task = await client.execute(["echo", "via the form"])
    await task.wait(30)
    await page.goto(http_url(service))
    await expect(page.locator("#token-form")).to_be_visible()
    await page.locator("#token-input").fill("not-the-token")
    await page.locator("#token-form button").click()
    await expect(page.locator("#banner")).to_contain_text("refused")
    # Chromium logs the refused handshake (HTTP 401) on the console: that one is expected,
    # and neither it nor anything else on the console holds a token.
    assert browser_errors and all("401" in e or "Authentication" in e for e in browser_errors)
    assert not any("not-the-token" in line for line in page.console_lines)
    browser_errors.clear()
    await page.locator("#token-input").fill(service.token)
    await page.locator("#token-form button").click()
    await expect(page.locator("#conn")).to_have_text("connected")
    await expect(row(page, task.task_id).locator(".status")).to_have_text("completed")
    assert not any(service.token in line for line in page.console_lines)


# ------------------------------------------------------------------ HTTP and the door


async def test_page_served_without_token_with_strict_headers(service: ExecutorService) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(http_url(service, "/"))
        js = await http.get(http_url(service, "/static/app.js"))
        modules = [await http.get(http_url(service, f"/static/{m}")) for m in dashboard.MODULES]
        css = await http.get(http_url(service, "/static/style.css"))
        missing = await http.get(http_url(service, "/static/nope.js"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "script-src 'self'" in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert b"/static/app.js" in r.content and b"<script>" not in r.content
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert all(
        m.status_code == 200 and m.headers["content-security-policy"] == CSP for m in modules
    )
    assert b'<script type="module" src="/static/app.js">' in r.content
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
    assert service.token.encode() not in r.content + js.content


def test_the_page_spells_no_protocol_name() -> None:
    """The page reads methods, notifications, statuses and actions from /protocol.json."""
    here = Path(dashboard.__file__).parent
    assert sorted(p.name for p in here.glob("*.js")) == sorted(dashboard.MODULES)
    js = "\n".join((here / m).read_text() for m in dashboard.MODULES)
    code = re.sub(r"//.*", "", js)  # comments may name them
    names = [*Method, *Notification, *TaskStatus, *Action]
    spelled = sorted(
        {n.value for n in names if re.search(rf"[\"'`]{re.escape(n.value)}[\"'`]", code)}
    )
    # "status" is also a CSS class of the page and a record field: allowed as such only.
    assert spelled == ["status"], spelled
    assert not re.search(r"""(call|batch)\(\s*\[?\s*\[?\s*["'`]""", code)
    assert "/protocol.json" in code


async def test_protocol_json_is_served_without_token(service: ExecutorService) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(http_url(service, "/protocol.json"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["content-security-policy"] == CSP
    assert r.json()["methods"]["SESSION_LIST"] == Method.SESSION_LIST


async def _refused(url: str, **kw: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, proxy=None, open_timeout=10, **kw):
            pass
    return info.value.response.status_code


async def test_websocket_needs_the_token_and_the_pages_own_origin(
    service: ExecutorService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cc_executor")
    caplog.set_level(logging.INFO, logger="websockets")  # the service caps it at WARNING
    own = f"http://127.0.0.1:{service.port}"
    ws = service.url
    # The page is public, the WebSocket is not: no token, or a wrong one, is 401.
    assert await _refused(ws, origin=own) == 401
    assert await _refused(ws + "?token=wrong", origin=own) == 401
    # The page's own origin with the token is let in, by query (as the page does) ...
    async with connect(f"{ws}?token={service.token}", origin=own, proxy=None) as conn:
        await conn.send('{"jsonrpc": "2.0", "id": 1, "method": "listen", "params": {}}')
        assert '"listening":true' in str(await conn.recv()).replace(" ", "")
    localhost = f"http://localhost:{service.port}"
    async with connect(f"{ws}?token={service.token}", origin=localhost, proxy=None):
        pass
    # ... and any other origin, with the token, is 403.
    auth = {"Authorization": f"Bearer {service.token}"}
    for origin in (
        "http://evil.example",
        f"http://evil.example:{service.port}",
        f"http://127.0.0.1:{service.port + 1}",
        f"https://127.0.0.1:{service.port}",
        "null",
    ):
        assert await _refused(ws, origin=origin, additional_headers=auth) == 403, origin
    # A WebSocket handshake on the page's path is still no WebSocket.
    assert await _refused(ws.rsplit("/ws", 1)[0] + "/", additional_headers=auth) == 404
    assert "refused foreign origin" in caplog.text
    assert service.token not in caplog.text  # the token in the query is never logged


async def test_listen_sends_every_tasks_lifecycle_and_stops_on_disconnect(
    service: ExecutorService, client: ExecutorClient
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    watcher = ExecutorClient(
        service.url, service.token, on_notification=lambda m, p: seen.append((m, p))
    )
    async with watcher:
        assert await watcher.call("listen", {}) == {"listening": True}
        task = await client.execute(["sh", "-c", "echo some output; exec sleep 30"])
        await client.control(task.task_id, "PAUSE")
        await client.control(task.task_id, "RESUME")
        await client.control(task.task_id, "CANCEL")
        assert service.engine.listeners
        # Replies and notifications share one ordered queue: all events came before this.
        assert await watcher.call("listen", {"enabled": False}) == {"listening": False}
        assert not service.engine.listeners
        methods = [m for m, p in seen if p.get("task_id") == task.task_id]
        assert methods == [
            "process.started",
            "process.paused",
            "process.resumed",
            "process.completed",
        ]
        assert [p["status"] for m, p in seen if m == "process.completed"] == ["cancelled"]
        await watcher.call("listen", {})
        assert service.engine.listeners
    await watcher.close()
    assert await _eventually_no_listeners(service)


async def _eventually_no_listeners(service: ExecutorService) -> bool:
    from tests.support import wait_until

    return await wait_until(lambda: not service.engine.listeners)


async def test_the_token_may_come_as_a_subprotocol_and_is_never_echoed(
    service: ExecutorService,
) -> None:
    import base64

    own = f"http://127.0.0.1:{service.port}"

    def offer(token: str) -> list[Any]:
        encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        return [dashboard.SUBPROTOCOL, dashboard.TOKEN_SUBPROTOCOL_PREFIX + encoded]

    async with connect(
        service.url, origin=own, subprotocols=offer(service.token), proxy=None
    ) as conn:
        assert conn.subprotocol == "cc-executor"  # the plain one: the token is not echoed
        await conn.send('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}')
        assert '"pong":true' in str(await conn.recv()).replace(" ", "")
    assert await _refused(service.url, origin=own, subprotocols=offer("wrong")) == 401
    # A client that offers no subprotocol is served as before.
    auth = {"Authorization": f"Bearer {service.token}"}
    async with connect(service.url, additional_headers=auth, proxy=None) as conn:
        assert conn.subprotocol is None
