"""The dashboard's task view shows a worktree task's branch and its diff (real Chromium;
the `page` fixture is tests/dashboard's, see conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cc_executor.client import ExecutorClient
from cc_executor.server import ExecutorService
from tests.dashboard.conftest import expect, needs_chromium, open_dashboard, screenshot


@needs_chromium
async def test_the_task_view_shows_the_branch_and_the_diff(
    service: ExecutorService, client: ExecutorClient, page: Any, repo: Path
) -> None:
    script = (
        "printf 'hello from the worktree\\n' > greeting.txt && git add greeting.txt && "
        "git commit -q -m 'add a greeting' && echo '# demo, edited' > README.md"
    )
    h = await client.execute(["sh", "-c", script], cwd=str(repo), workspace="worktree", name="dash")
    assert (await h.wait(30))["status"] == "completed"
    plain = await client.execute(["echo", "no worktree here"])
    await plain.wait(30)

    await open_dashboard(page, service)
    await page.locator(f'tr[data-task-id="{h.task_id}"]').click()
    branch = page.locator("#log-branch")
    await expect(branch).to_have_text(
        "branch ccx/dash · kept · 2 files +2 -1 · 1 commit · uncommitted changes"
    )
    await page.locator("#tab-diff").click()
    diff = page.locator("#log-diff")
    await expect(diff).to_be_visible()
    await expect(diff.locator(".add", has_text="+hello from the worktree")).to_have_count(1)
    await expect(diff.locator(".del", has_text="-# demo")).to_have_count(1)
    await expect(diff.locator(".add", has_text="+# demo, edited")).to_have_count(1)
    await expect(page.locator("#log")).to_be_hidden()
    await screenshot(page, "dashboard-workspace-diff.png")

    # A task without a worktree has no diff tab: the view goes back to its output.
    await page.locator(f'tr[data-task-id="{plain.task_id}"]').click()
    await expect(page.locator("#tab-diff")).to_be_hidden()
    await expect(branch).to_have_text("")
    await expect(page.locator("#log")).to_contain_text("no worktree here")
