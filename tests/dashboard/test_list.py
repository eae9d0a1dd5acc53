"""The task list in Chromium with a long history: active tasks first, filters, search,
paging, sorting, rows patched in place, keyboard use, contrast, and the screenshots kept in
docs/ (1400 px and 420 px wide)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cc_executor.client import ExecutorClient
from cc_executor.config import Settings
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import SqliteTaskStore
from cc_executor.protocol import TaskStatus
from cc_executor.server import ExecutorService
from tests.dashboard.conftest import (
    ROOT,
    TICKER,
    expect,
    needs_chromium,
    open_dashboard,
    row,
    screenshot,
)

HISTORY = 300
FAILED = 96  # every third seeded task failed, but for the cancelled ones (each 25th)


def shown(first: int, last: int, total: int) -> str:
    """The list's "N of M" line: "1\u201350 of 302"."""
    return f"{first}\u2013{last} of {total}"


async def seed_history(settings: Settings, n: int = HISTORY) -> None:
    """`n` finished tasks in the service's store, as a long-running service would have."""
    store = SqliteTaskStore(settings.db_path)
    await store.open()
    now = time.time()
    for i in range(n):
        status = [TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.FAILED][i % 3]
        if i % 25 == 0:
            status = TaskStatus.CANCELLED
        created = now - 3 * 86400 + i * 600
        claude = i % 10 == 0
        extra: dict[str, Any] = {}
        if claude:
            extra = {"prompt": f"Review module {i}", "total_cost_usd": 0.01 * (i % 7 + 1)}
            extra["num_turns"] = 3
        store.save(
            TaskRecord(
                task_id=f"{i:04d}" + "ab" * 6,
                command=["claude", "-p"] if claude else ["make", f"build-{i}"],
                argv=[],
                kind="claude" if claude else "command",
                name=f"job-{i}",
                status=status,
                created_at=created,
                started_at=created + 1,
                ended_at=created + 2 + (i % 50),
                exit_code=0 if status == TaskStatus.COMPLETED else (2 if claude is False else 1),
                error="cancelled" if status == TaskStatus.CANCELLED else None,
                stdout_bytes=100 * i,
                extra=extra,
            )
        )
    await store.flush()
    await store.close()


@pytest.fixture
async def busy_service(settings: Settings) -> AsyncIterator[ExecutorService]:
    """A service with a long history and, on top of it, one running and one paused task."""
    await seed_history(settings)
    svc = ExecutorService(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def active_pair(client: ExecutorClient) -> tuple[str, str]:
    ticker = await client.execute(["sh", "-c", TICKER], name="ticker")
    sleeper = await client.execute(["sleep", "60"], name="sleeper")
    await client.control(sleeper.task_id, "PAUSE")
    return ticker.task_id, sleeper.task_id


@needs_chromium
async def test_300_tasks_active_first_filters_paging_and_sorting(
    busy_service: ExecutorService, page: Any
) -> None:
    async with ExecutorClient(busy_service.url, busy_service.token) as client:
        running, paused = await active_pair(client)
        await open_dashboard(page, busy_service)
        rows = page.locator("#tasks tbody tr")
        await expect(page.locator("#task-count")).to_have_text(shown(1, 50, 302))
        assert await rows.nth(0).get_attribute("data-task-id") == running
        assert await rows.nth(1).get_attribute("data-task-id") == paused
        await expect(rows.nth(1).locator(".status")).to_have_text("paused")
        await expect(page).to_have_title(f"1 running · {FAILED} failed · cc-executor")

        # Paging: the next page, then back; the active ones stay on page one.
        await page.locator("#page-next").click()
        await expect(page.locator("#task-count")).to_have_text(shown(51, 100, 302))
        assert await row(page, running).count() == 0
        await page.locator("#page-prev").click()
        await expect(page.locator("#task-count")).to_have_text(shown(1, 50, 302))

        # Status filter chips, with their counts.
        failed_chip = page.locator('#status-filters [data-status="failed"]')
        await expect(failed_chip.locator(".chip-count")).to_have_text(str(FAILED))
        await failed_chip.click()
        await expect(failed_chip).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#task-count")).to_have_text(shown(1, 50, FAILED))
        statuses = await page.locator("#tasks tbody .status").all_inner_texts()
        assert set(statuses) == {"failed"}
        await page.locator('#status-filters [data-status="running"]').click()
        await expect(page.locator("#task-count")).to_have_text(shown(1, 50, FAILED + 1))
        assert await rows.nth(0).get_attribute("data-task-id") == running
        await page.locator('#status-filters [data-status=""]').click()  # all

        # Text search over name, command, prompt and id.
        await page.locator("#task-search").fill("job-123")
        await expect(page.locator("#task-count")).to_have_text(shown(1, 1, 1))
        await expect(rows.nth(0)).to_contain_text("make build-123")
        await page.locator("#task-search").fill("review module 40")
        await expect(page.locator("#task-count")).to_have_text(shown(1, 1, 1))
        await page.locator("#task-search").fill("0123abab")
        await expect(rows.nth(0)).to_contain_text("job-123")
        await page.locator("#task-search").fill("")
        await expect(page.locator("#task-count")).to_have_text(shown(1, 50, 302))

        # Sort by runtime (longest first); active tasks still lead.
        await page.locator("th button.sort", has_text="Runtime").click()
        await expect(page.locator("th.runtime")).to_have_attribute("aria-sort", "descending")
        assert await rows.nth(0).get_attribute("data-task-id") == running
        await expect(rows.nth(2)).to_contain_text("50.0 s")
        await page.locator("th button.sort", has_text="Runtime").click()
        await expect(page.locator("th.runtime")).to_have_attribute("aria-sort", "ascending")
        await expect(rows.nth(2)).to_contain_text("1.0 s")
        await expect(page.locator("#visible-cost")).to_contain_text("Claude task")

        # Rows are patched, not rebuilt: a focused row keeps its node and its focus over
        # a refresh, and a ticked box stays ticked.
        target = rows.nth(0)
        await target.locator(".pick-box").check()
        await target.focus()
        await page.evaluate("document.activeElement.__mark = 'same node'")
        runtime = await target.locator("td.runtime").inner_text()
        await expect(target.locator("td.runtime")).not_to_have_text(runtime)  # it ticks
        # A new task's event makes the page refresh the list: its row appears.
        poke = await client.execute(["true"], name="poke")
        await expect(row(page, poke.task_id)).to_be_attached()
        assert await page.evaluate("document.activeElement.__mark") == "same node"
        await expect(rows.nth(0).locator(".pick-box")).to_be_checked()
        await expect(page.locator("#bulk-cancel")).to_have_text("Cancel selected (1)")
        await client.control(running, "CANCEL")
        await client.control(paused, "CANCEL")


@needs_chromium
async def test_keyboard_only_opens_a_log_and_controls_are_named(
    service: ExecutorService, client: ExecutorClient, page: Any
) -> None:
    first = await client.execute(["echo", "the first task's output"], name="first")
    await first.wait(30)
    second = await client.execute(["sh", "-c", "echo out; echo problem >&2; exit 1"], name="two")
    await second.wait(30)
    await open_dashboard(page, service)
    await expect(row(page, first.task_id)).to_be_visible()
    # Tab from the top until a task row has the focus: rows are one tab stop.
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.tagName") == "TR":
            break
    else:
        raise AssertionError("no task row took the focus")
    assert await page.evaluate("document.activeElement.dataset.taskId") == second.task_id
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("document.activeElement.dataset.taskId") == first.task_id
    await page.keyboard.press("Enter")
    await expect(page.locator("#log-task")).to_have_text(f"first ({first.task_id[:8]})")
    await expect(page.locator("#log")).to_contain_text("the first task's output")
    assert await page.evaluate("location.hash") == f"#task={first.task_id}"
    # The output tabs move with the arrow keys.
    await page.locator("#tab-stdout").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#tab-stderr")).to_have_attribute("aria-selected", "true")
    assert await page.evaluate("document.activeElement.id") == "tab-stderr"
    # Every control says which task it acts on.
    cancel = row(page, second.task_id).locator('button[data-action="CANCEL"]')
    await expect(cancel).to_have_attribute("aria-label", f"Cancel task two ({second.task_id[:8]})")
    await expect(page.locator("#btn-cancel")).to_have_attribute(
        "aria-label", f"Cancel task first ({first.task_id[:8]})"
    )
    # Status changes are announced to screen readers.
    live = await client.execute(["sleep", "30"], name="announced")
    await expect(page.locator("#announcer")).to_have_text(
        f"Task announced ({live.task_id[:8]}) running"
    )
    await client.control(live.task_id, "CANCEL")
    await expect(page.locator("#announcer")).to_contain_text("cancelled")
    assert await page.locator("#announcer").get_attribute("aria-live") == "polite"


CONTRAST = """() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const bgOf = (e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (c && c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
    }
    return "rgb(255, 255, 255)";
  };
  const out = {};
  const panel = document.getElementById("tasks-panel");
  for (const s of ["queued", "running", "paused", "completed", "failed", "cancelled",
                   "timed_out", "lost", "idle", "ended"]) {
    const e = document.createElement("span");
    e.className = "status";
    e.dataset.status = s;
    e.textContent = s;
    panel.append(e);
    out[`pill ${s}`] = ratio(getComputedStyle(e).color, bgOf(e));
    e.remove();
  }
  for (const sel of ["#stats", "#task-count", ".chip", "th", "button:disabled", "td.result",
                     "td.task .id", "#conn"]) {
    const e = document.querySelector(sel);
    if (e) out[sel] = ratio(getComputedStyle(e).color, bgOf(e));
  }
  return out;
}"""


@needs_chromium
async def test_every_pill_and_text_meets_wcag_aa_contrast(
    service: ExecutorService, client: ExecutorClient, page: Any
) -> None:
    bad = await client.execute(["false"])
    await bad.wait(30)
    await open_dashboard(page, service)
    await expect(row(page, bad.task_id)).to_be_visible()
    ratios = await page.evaluate(CONTRAST)
    low = {k: round(v, 2) for k, v in ratios.items() if v < 4.5}
    assert not low, low
    assert len(ratios) >= 15


@needs_chromium
@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 860}])
async def test_screenshots_at_1400_and_420_px(
    busy_service: ExecutorService, page: Any, fake_claude_state: Path
) -> None:
    async with ExecutorClient(busy_service.url, busy_service.token) as client:
        workdir = fake_claude_state.parent / "project"
        workdir.mkdir()
        s = await client.call("session.create", {"working_dir": str(workdir), "name": "backend"})
        turn = await client.call(
            "session.send",
            {"session_id": s["session_id"], "message": "Add a /health endpoint", "wait": True},
        )
        failed = await client.execute(
            "echo 'building...'; echo 'error: no rule to make target' >&2; exit 2", name="build"
        )
        await failed.wait(30)
        running, paused = await active_pair(client)
        await open_dashboard(page, busy_service)
        await page.locator("#sessions li", has_text="backend").click()
        await expect(page.locator("#session-turns")).to_contain_text("Add a /health endpoint")
        await row(page, running).click()
        await expect(page.locator("#log")).to_contain_text("line 20")
        # The sticky header stays on top of the rows' buttons when the table scrolls.
        await page.locator("#tasks-panel .scroll").evaluate("(e) => { e.scrollTop = 400; }")
        hit = await page.evaluate(
            """() => {
              const th = document.querySelector('#tasks th.ctl');
              const r = th.getBoundingClientRect();
              const e = document.elementFromPoint(r.left + 10, r.top + r.height / 2);
              return e.closest('th') ? 'th' : e.tagName + '.' + e.className;
            }"""
        )
        assert hit == "th", hit
        await page.locator("#tasks-panel .scroll").evaluate("(e) => { e.scrollTop = 0; }")
        await row(page, failed.task_id).click()
        await expect(page.locator("#failure")).to_contain_text("exited with code 2")
        await row(page, running).click()
        await expect(page.locator("#log")).to_contain_text("line 40")
        await screenshot(page, "dashboard.png", ROOT / "docs")

        # 420 px: one column, no sideways scroll, every control reachable.
        await page.set_viewport_size({"width": 420, "height": 900})
        await expect(row(page, running)).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, width
        await screenshot(page, "dashboard-narrow.png", ROOT / "docs")
        cancel = row(page, running).locator('button[data-action="CANCEL"]')
        await cancel.scroll_into_view_if_needed()
        await cancel.click()
        await expect(row(page, running).locator(".status")).to_have_text("cancelled")
        resume = row(page, paused).locator('button[data-action="RESUME"]')
        await resume.click()
        await expect(row(page, paused).locator(".status")).to_have_text("running")
        assert turn["status"] == "completed"
        await client.control(paused, "CANCEL")
        await asyncio.sleep(0)
