"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Screenshots go to test-artifacts/dashboard/ (git-ignored); the two kept in docs/ are
written there by test_screens.py.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cc_executor.server import ExecutorService

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TICKER = 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.05; done'

needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason="no Chromium: apt-get install -y chromium (Debian's /usr/bin/chromium)",
)


def http_url(service: ExecutorService, path: str = "/") -> str:
    return f"http://127.0.0.1:{service.port}{path}"


@pytest.fixture
def browser_errors() -> list[str]:
    """The page's errors and console errors; a test clears those it provoked."""
    return []


@pytest.fixture
def viewport() -> dict[str, int]:
    return {"width": 1400, "height": 860}


@pytest.fixture
async def page(
    tmp_path: Path, browser_errors: list[str], viewport: dict[str, int]
) -> AsyncIterator[Any]:
    """A page of a fresh headless Chromium profile; errors on its console fail the test."""
    if not HAVE_CHROMIUM:
        pytest.skip("no Chromium: apt-get install -y chromium (Debian's /usr/bin/chromium)")
    pw_api = pytest.importorskip(
        "playwright.async_api", reason="playwright not installed (pip install -e '.[test]')"
    )
    async with pw_api.async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=viewport,
            accept_downloads=True,
        )
        pg = context.pages[0] if context.pages else await context.new_page()
        pg.set_default_timeout(20_000)
        errors = browser_errors
        pg.console_lines = []  # every console line, of any level (the token must be in none)
        pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

        def on_console(msg: Any) -> None:
            pg.console_lines.append(msg.text)
            if msg.type == "error":
                errors.append(f"console {msg.type}: {msg.text}")

        pg.on("console", on_console)
        try:
            yield pg
        finally:
            await context.close()
        assert not errors, errors


async def screenshot(page: Any, name: str, dest: Path | None = None) -> Path:
    path = (dest or ARTIFACTS) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path))
    return path


def expect(target: Any) -> Any:
    from playwright.async_api import expect as pw_expect

    return pw_expect(target)


async def open_dashboard(page: Any, service: ExecutorService, fragment: str = "") -> None:
    await page.goto(http_url(service) + f"#token={service.token}{fragment}")
    await expect(page.locator("#conn")).to_have_text("connected")
    assert service.token not in page.url  # the fragment's token is wiped from the address bar


def row(page: Any, task_id: str) -> Any:
    return page.locator(f'#tasks tr[data-task-id="{task_id}"]')
