"""Honest states in Chromium: the service stops (banner, greyed data, stopped runtimes,
disabled controls) and comes back; a wrong or forgotten token; a link to one task through
the token handling; and actions (start a task, message and kill a session, bulk cancel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.server import ExecutorService
from tests.dashboard.conftest import (
    TICKER,
    expect,
    http_url,
    needs_chromium,
    open_dashboard,
    row,
)
from tests.support import free_port


@needs_chromium
async def test_offline_banner_when_the_service_stops_and_recovery_when_it_returns(
    settings: Settings, page: Any, browser_errors: list[str]
) -> None:
    fixed = Settings(**{**settings.model_dump(), "port": free_port()})
    first = ExecutorService(fixed)
    await first.start()
    try:
        async with ExecutorClient(first.url, first.token) as client:
            ticker = await client.execute(["sh", "-c", TICKER], name="ticker")
            done = await client.execute(["echo", "kept"], name="done")
            await done.wait(30)
        await open_dashboard(page, first)
        await row(page, ticker.task_id).click()
        await expect(page.locator("#log")).to_contain_text("line 3")
        await expect(
            row(page, ticker.task_id).locator('button[data-action="PAUSE"]')
        ).to_be_enabled()
    finally:
        await first.stop()  # ends the ticker too: its group goes with the service

    banner = page.locator("#banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Not connected")
    await expect(page.locator("body")).to_have_class("offline")
    await expect(page.locator("#conn")).to_have_text("disconnected")
    # The last data stays, greyed; "No tasks yet" is never said while not connected.
    await expect(row(page, done.task_id)).to_be_visible()
    await expect(page.locator("#no-tasks")).to_be_hidden()
    for control in ("#btn-pause", "#btn-cancel", "#new-task-start", "#log-download", "#page-next"):
        await expect(page.locator(control)).to_be_disabled()
    runtime = row(page, ticker.task_id).locator("td.runtime")
    before = await runtime.inner_text()
    await page.wait_for_timeout(1500)
    assert await runtime.inner_text() == before  # runtimes stop while not connected
    await expect(page).to_have_title("cc-executor (not connected)")

    second = ExecutorService(fixed)  # the same port and data dir: the service is back
    await second.start()
    try:
        await expect(page.locator("#conn")).to_have_text("connected", timeout=20_000)
        await expect(banner).to_be_hidden()
        await expect(page.locator("body")).not_to_have_class("offline")
        # The ticker was ended by the shutdown; the page shows that now.
        await expect(row(page, ticker.task_id).locator(".status")).to_have_text("cancelled")
        await expect(page.locator("#failure")).to_contain_text("the service shut down")
    finally:
        await page.goto("about:blank")  # no more reconnect attempts once it stops
        await second.stop()
    # The reconnect attempts failed on the console (the service was down), never with
    # the token in what it printed.
    assert all("ERR_CONNECTION_REFUSED" in e for e in browser_errors), browser_errors
    assert not any(first.token in line for line in page.console_lines)
    browser_errors.clear()


@needs_chromium
async def test_a_task_link_survives_the_token_and_forget_token_clears_the_page(
    service: ExecutorService, client: ExecutorClient, page: Any
) -> None:
    task = await client.execute(["echo", "linked output"], name="linked")
    await task.wait(30)
    # A token with blanks around it (pasted) works; the link's task opens at once.
    await page.goto(http_url(service) + f"#token=%20{service.token}%20&task={task.task_id}")
    await expect(page.locator("#conn")).to_have_text("connected")
    await expect(page.locator("#log-task")).to_have_text(f"linked ({task.task_id[:8]})")
    await expect(page.locator("#log")).to_contain_text("linked output")
    assert service.token not in page.url
    assert page.url.endswith(f"#task={task.task_id}")

    await page.locator("#forget-token").click()
    await expect(page.locator("#token-form")).to_be_visible()
    await expect(page.locator("#banner")).to_contain_text("Token forgotten")
    assert await page.locator("#tasks tbody tr").count() == 0
    await expect(page.locator("#no-tasks")).to_have_text("Not connected: no tasks to show.")
    await expect(page.locator("#detail-body")).to_be_hidden()
    await expect(page.locator("#sessions li")).to_have_count(0)
    assert await page.evaluate("sessionStorage.length") == 0
    assert not any(service.token in line for line in page.console_lines)


@needs_chromium
async def test_actions_start_tasks_message_and_kill_a_session_and_bulk_cancel(
    service: ExecutorService, client: ExecutorClient, page: Any, fake_claude_state: Path
) -> None:
    workdir = fake_claude_state.parent / "project"
    workdir.mkdir()
    session = await client.call("session.create", {"working_dir": str(workdir), "name": "api"})
    sleepers = [await client.execute(["sleep", "60"], name=f"sleeper-{i}") for i in range(2)]
    await open_dashboard(page, service)

    # Start a command from the page: it appears, selected, with its output.
    await page.locator("#new-task-box summary").click()
    await page.locator("#new-text").fill("echo started from the page")
    await page.locator("#new-name").fill("from-page")
    await page.locator("#new-task-start").click()
    await expect(page.locator("#log-task")).to_contain_text("from-page")
    await expect(page.locator("#log")).to_contain_text("started from the page")
    # ... and a Claude task.
    await page.locator("#new-kind").select_option("claude")
    await expect(page.locator("#new-model-label")).to_be_visible()
    await page.locator("#new-text").fill("Say hello")
    await page.locator("#new-task-start").click()
    await expect(page.locator("#transcript")).to_contain_text("Fake Claude answer to: Say hello")

    # Send a message to a session, then kill it.
    await page.locator("#sessions li", has_text="api").click()
    await page.locator("#session-message").fill("Write the tests")
    await page.locator("#session-send-btn").click()
    await expect(page.locator("#session-turns")).to_contain_text("Write the tests")
    await expect(page.locator("#session-turns .status").first).to_have_text("completed")
    await page.locator("#session-kill").click()
    await expect(page.locator("#sessions li", has_text="api").locator(".status")).to_have_text(
        "ended"
    )
    await expect(page.locator("#session-kill")).to_be_disabled()
    status = await client.call("session.status", {"session_id": session["session_id"]})
    assert status["status"] == "ended"

    # Bulk cancel: tick two running tasks, cancel both with one button.
    for s in sleepers:
        await row(page, s.task_id).locator(".pick-box").check()
    await expect(page.locator("#bulk-cancel")).to_have_text("Cancel selected (2)")
    await page.locator("#bulk-cancel").click()
    for s in sleepers:
        await expect(row(page, s.task_id).locator(".status")).to_have_text("cancelled")
        assert (await client.status(s.task_id))["status"] == "cancelled"
    await expect(page.locator("#bulk-cancel")).to_be_disabled()
