"""The console in a real browser: Debian's headless Chromium driven by Playwright (nothing downloaded).

Signs in, searches a contact by a number written another way, opens the
timeline, retries a failed notification, and checks that a tenant's user
cannot open another tenant's contact by URL; on a phone-sized screen too.
Screenshots go to the test's folder (and to $HUB_SCREENSHOTS when set, to look at).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from hub.app import create_app
from hub.core import Hub
from hub.models import Notification
from tests.conftest import make_config
from tests.console_helpers import CLINIC_USER, PASSWORD, Seeded, seed

CHROMIUM = Path("/usr/bin/chromium")


def _chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it): the browser tests must run in CI")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
async def served(sqlite_url: str, record_file: Path) -> AsyncIterator[tuple[Hub, str, Seeded]]:
    hub = Hub.build(make_config(sqlite_url, record_file=record_file))
    async with hub.running():
        seeded = await seed(hub)
        runner = web.AppRunner(create_app(hub, manage_hub=False, run_workers=False))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            yield hub, f"http://{host}:{port}", seeded
        finally:
            await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    executable = _chromium()
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=str(executable), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield instance
        finally:
            await instance.close()


class Shots:
    """Screenshots into the test's folder, copied to $HUB_SCREENSHOTS when it is set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def take(self, page: Any, name: str) -> Path:
        path = self.folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        if os.environ.get("HUB_SCREENSHOTS"):
            target = Path(os.environ["HUB_SCREENSHOTS"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)
        return path


async def _sign_in(page: Any, base: str) -> None:
    await page.goto(f"{base}/")
    await page.fill("input[name=email]", CLINIC_USER)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/t/clinic/")


async def test_front_desk_flow_in_a_browser(served: tuple[Hub, str, Seeded], browser: Any, tmp_path: Path) -> None:
    hub, base, seeded = served
    shots = Shots(tmp_path)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)

    await _sign_in(page, base)
    assert await page.locator("#sandbox-banner").is_visible()
    assert "Check-up" in await page.inner_text("main")  # today's appointment
    await shots.take(page, "today")

    # A number written another way than it was stored (+34600123456).
    await page.goto(f"{base}/t/clinic/contacts")
    await page.fill("input[name=q]", "600 12 34 56")
    await page.click("form[role=search] button")
    await page.click(f"#results a[href='/t/clinic/contacts/{seeded.ana}']")
    await page.wait_for_url(f"{base}/t/clinic/contacts/{seeded.ana}")
    assert await page.inner_text("#contact-name") == f"Ana García #{seeded.ana}"
    timeline = await page.inner_text("#timeline")
    assert "reminder_note" in timeline and "Check-up" in timeline and "To sms" in timeline
    await shots.take(page, "timeline")

    await hub.set_opt_out("clinic", "phone", "+34600123456", "sms", False)
    await page.goto(f"{base}/t/clinic/outbox?status=failed")
    row = page.locator(f"tr[data-id='{seeded.failed_notification}']")
    await row.locator("button", has_text="Retry").click()
    await page.wait_for_selector(".notice")
    assert "Queued again" in await page.inner_text(".notice")
    await shots.take(page, "retried")
    async with hub.db.sessions() as session:
        status = await session.scalar(select(Notification.status).where(Notification.id == seeded.failed_notification))
    assert status == "pending"
    await hub.dispatcher.dispatch_due()
    await page.goto(f"{base}/t/clinic/outbox/{seeded.failed_notification}")
    assert "retried from the console by desk@clinic.example" in await page.inner_text("main")
    assert "sandboxed" in await page.inner_text("h1")

    for url in (f"{base}/t/clinic/contacts/{seeded.salon_contact}", f"{base}/t/salon/contacts/{seeded.salon_contact}"):
        response = await page.goto(url)
        assert response is not None and response.status == 404
        assert "Not found" in await page.inner_text("h1")
    await shots.take(page, "other-tenant")


async def test_pages_fit_a_phone_screen(served: tuple[Hub, str, Seeded], browser: Any, tmp_path: Path) -> None:
    hub, base, seeded = served
    shots = Shots(tmp_path)
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.set_default_timeout(10_000)
    await _sign_in(page, base)
    for name, path in (("phone-today", "/t/clinic/"), ("phone-contact", f"/t/clinic/contacts/{seeded.ana}"),
                       ("phone-outbox", "/t/clinic/outbox"), ("phone-settings", "/t/clinic/settings")):
        await page.goto(base + path)
        # Wide tables scroll inside their card; the page itself never scrolls sideways.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
        await shots.take(page, name)
