"""A Claude task held by its account's rate-limit window, in Chromium: its row and the
detail pane say what it waits for and until when, and Cancel ends it (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.server import ExecutorService
from tests.dashboard.conftest import expect, needs_chromium, open_dashboard, row
from tests.support import eventually

pytestmark = pytest.mark.usefixtures("fake_claude_state")


@needs_chromium
async def test_a_held_task_shows_why_it_waits_and_cancels(
    service: ExecutorService, client: ExecutorClient, page: Any, browser_errors: list[str]
) -> None:
    limited = await client.execute_claude("FAKE_ERROR=rate_limit FAKE_RESET_IN=60 hit it")
    await limited.wait(30)
    held = await client.execute_claude("waits for the window")
    assert (await client.status(held.task_id))["waiting_for"] == "rate_limit"
    await open_dashboard(page, service)
    badge = row(page, held.task_id).locator(".status")
    await expect(badge).to_contain_text("queued · rate_limit until ")
    await row(page, held.task_id).click()
    await expect(page.locator("#log-status")).to_contain_text("rate_limit until ")
    await page.locator("#btn-cancel").click()
    rec = await eventually(
        lambda: client.status(held.task_id), lambda r: r["status"] == "cancelled"
    )
    assert rec["started_at"] is None
    await expect(badge).to_have_text("cancelled")
    assert browser_errors == []
