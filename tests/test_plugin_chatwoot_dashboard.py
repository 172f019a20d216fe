"""The Chatwoot Dashboard App: the page in headless Chromium inside a host that plays Chatwoot, and its token-scoped API."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hub import AppointmentInput, NotificationRequest
from hub.app import create_app
from hub.core import Hub
from hub.models import Notification
from plugins.chatwoot.runtime import TOKEN_SECONDS, ChatwootPlugin
from tests.conftest import DEFAULT_TENANTS, make_config
from tests.pg import free_port
from tests.stand_ins.chatwoot import ChatwootStandIn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def stand_in() -> AsyncIterator[ChatwootStandIn]:
    server = ChatwootStandIn()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert server.violations == []


@asynccontextmanager
async def served_hub(database_url: str, stand_in: ChatwootStandIn, record_file: Path) -> AsyncIterator[tuple[Hub, str]]:
    """An opened hub listening on 127.0.0.1 (so a browser can load it); yields it and its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tenants = {slug: dict(table) for slug, table in DEFAULT_TENANTS.items()}
    tenants["clinic"]["plugins"] = {"chatwoot": {
        "base_url": stand_in.base_url, "account_id": stand_in.account_id, "api_access_token": stand_in.token,
        "inbox_id": stand_in.inbox_id, "webhook_secret": "s", "sandbox": False,
    }}
    tenants["salon"]["plugins"] = {"chatwoot": {
        "base_url": stand_in.base_url, "account_id": 2, "api_access_token": "other", "inbox_id": 1, "webhook_secret": "t",
    }}
    hub = Hub.build(make_config(database_url, tenants=tenants, hub={"public_url": url}, record_file=record_file))
    async with hub.running():
        async with TestServer(create_app(hub, manage_hub=False, run_workers=False), host="127.0.0.1", port=port):
            yield hub, url


async def client_with_history(hub: Hub, stand_in: ChatwootStandIn, name: str, phone: str) -> tuple[dict[str, Any], int]:
    """A client with a past and an upcoming appointment, a sent and a pending reminder, linked to a Chatwoot contact."""
    contact = stand_in.add_contact(name, phone=phone)
    contact_id = await hub.link_identities("clinic", [("chatwoot", str(contact["id"])), ("phone", phone)], name=name, reason="test")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for external_id, hours, status in (("past", -240, "no_show"), ("next", 72, "scheduled")):
        await hub.upsert_appointment("clinic", AppointmentInput(
            source="api", external_id=f"{name}-{external_id}", start_at=now + dt.timedelta(hours=hours), service="Limpieza",
            status=status, addresses=(("phone", phone),), confirm=False,
        ))
    await hub.notify(tenant="clinic", request=NotificationRequest(
        kind="reminder", contact_id=contact_id, template="message", data={"text": "Recordatorio"}, channel_order=("recorder-sms",),
    ))
    await hub.dispatcher.dispatch_due()
    return contact, contact_id


async def notifications(hub: Hub, contact_id: int) -> list[Notification]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(Notification).where(Notification.contact_id == contact_id).order_by(Notification.id))).all())


# --- the page in a real browser --------------------------------------------------------------


async def test_dashboard_app_in_chromium_shows_the_context_acts_and_ignores_other_origins(
    sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path, record_file: Path
) -> None:
    from playwright.async_api import async_playwright

    assert Path(CHROMIUM).exists(), "Chromium is needed for this test: apt-get install -y chromium (.ci/run does it)"
    async with served_hub(sqlite_url, stand_in, record_file) as (hub, _):
        lucia, contact_id = await client_with_history(hub, stand_in, "Lucía", "+34600123456")
        conversation = stand_in.add_conversation(lucia["id"])
        await hub.record_outbound("clinic", contact_id=contact_id, medium="chatwoot", channel="chatwoot",
                                  body="¡Hola Lucía! Le esperamos.", provider_id="cw-1")
        app_url = await ChatwootPlugin.of(hub).dashboard_url("clinic")
        host = f"{stand_in.base_url}/dashboard/{conversation}?app={quote(app_url, safe='')}"

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 760, "height": 960})
                await page.goto(host)
                frame = page.frame_locator("#app")
                await frame.locator("#name").filter(has_text="Lucía").wait_for()
                await frame.locator("#upcoming li").first.wait_for()
                upcoming = await frame.locator("#upcoming").inner_text()
                past = await frame.locator("#past").inner_text()
                consent = await frame.locator("#consent").inner_text()
                timeline = await frame.locator("#timeline").inner_text()
                assert "Limpieza" in upcoming and "scheduled" in upcoming
                assert "no_show" in past
                assert "whatsapp" in consent and "yes" in consent and "no address" in consent
                assert "¡Hola Lucía! Le esperamos." in timeline
                reminders = frame.locator("#reminders li")
                texts = await reminders.all_inner_texts()
                # The test channel records instead of sending: its reminder went out "sandboxed".
                assert any("reminder" in t and "sandboxed" in t and "1 intento" in t for t in texts), texts
                assert any("pending" in t for t in texts), texts  # the upcoming appointment's own reminders
                await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                assert (tmp_path / "dashboard.png").stat().st_size > 0

                # "Cancel" on a pending reminder cancels that one, and the panel shows it.
                pending_before = [n for n in await notifications(hub, contact_id) if n.status == "pending"]
                target = frame.locator(f'#reminders li[data-id="{pending_before[0].id}"]')
                await target.locator('button[data-action="cancel"]').click()
                await target.filter(has_text="canceled").wait_for()
                after = {n.id: n.status for n in await notifications(hub, contact_id)}
                assert after[pending_before[0].id] == "canceled"
                assert [n.id for n in pending_before[1:]] == [i for i, s in after.items() if s == "pending" and i != pending_before[0].id][: len(pending_before) - 1]

                # "Resend" on the sent reminder queues it again.
                sent = next(n for n in await notifications(hub, contact_id) if n.status == "sandboxed")
                count = len(await notifications(hub, contact_id))
                await frame.locator(f'#reminders li[data-id="{sent.id}"] button[data-action="resend"]').click()
                await frame.locator("#status").filter(has_text="Recordatorio en cola de nuevo.").wait_for()
                again = await notifications(hub, contact_id)
                assert len(again) == count + 1 and (again[-1].kind, again[-1].template) == ("reminder", "message")

                # Chatwoot's other way in: the app asks with the exact fetch-info string and gets the context.
                fetch_only = await browser.new_page()
                await fetch_only.goto(host + "&mode=fetch-only")
                await fetch_only.frame_locator("#app").locator("#name").filter(has_text="Lucía").wait_for()
                assert await fetch_only.evaluate("window.fetchInfo") >= 1

                # Another origin opens the app and feeds it a context: ignored, nothing loaded.
                other_origin = stand_in.base_url.replace("127.0.0.1", "localhost")
                evil = await browser.new_page()
                async with evil.expect_popup() as popup_info:
                    await evil.goto(f"{other_origin}/popup?contact={lucia['id']}&app={quote(app_url, safe='')}")
                popup = await popup_info.value
                await popup.wait_for_load_state()
                await evil.evaluate("window.forge()")
                await popup.wait_for_function("Number(document.body.dataset.ignored || 0) >= 2")
                assert await popup.locator("#app").is_hidden()
                assert await popup.locator("#status").inner_text() == "Esperando a Chatwoot…"
                await popup.screenshot(path=str(tmp_path / "ignored.png"))
            finally:
                await browser.close()


# --- the token-scoped API -------------------------------------------------------------------


async def test_tokens_are_scoped_to_one_contact_expire_and_need_the_app_key(
    sqlite_url: str, stand_in: ChatwootStandIn, record_file: Path
) -> None:
    async with served_hub(sqlite_url, stand_in, record_file) as (hub, url):
        lucia, lucia_id = await client_with_history(hub, stand_in, "Lucía", "+34600123456")
        pedro, pedro_id = await client_with_history(hub, stand_in, "Pedro", "+34611223344")
        plugin = ChatwootPlugin.of(hub)
        key = (await plugin.dashboard_keys("clinic"))["app_key"]
        app = f"{url}/webhooks/chatwoot/app"
        pedro_pending = next(n for n in await notifications(hub, pedro_id) if n.status == "pending")
        async with ClientSession() as http:
            async def token_for(body: dict[str, Any], tenant: str = "clinic") -> tuple[int, Any]:
                async with http.post(f"{app}/token?tenant={tenant}", json=body) as response:
                    return response.status, await response.json()

            assert (await token_for({"key": "wrong", "contact_id": lucia["id"]}))[0] == 403
            assert (await token_for({"key": key, "contact_id": 999_999}))[0] == 404
            assert (await token_for({"key": key, "contact_id": "1"}))[0] == 400
            assert (await token_for({"key": key, "contact_id": lucia["id"]}, tenant="salon"))[0] == 403
            status, answer = await token_for({"key": key, "contact_id": lucia["id"]})
            assert status == 200 and answer["expires_in"] == TOKEN_SECONDS
            bearer = {"Authorization": f"Bearer {answer['token']}"}

            async with http.get(f"{app}/context?tenant=clinic", headers=bearer) as response:
                view = await response.json()
            assert response.status == 200 and view["id"] == lucia_id and view["name"] == "Lucía"
            async with http.get(f"{app}/context?tenant=clinic") as response:
                assert response.status == 401
            async with http.get(f"{app}/context?tenant=salon", headers=bearer) as response:
                assert response.status == 401  # another tenant's key signs nothing of this one
            # Lucía's token cannot touch Pedro's reminder.
            async with http.post(f"{app}/notifications/{pedro_pending.id}/cancel?tenant=clinic", headers=bearer) as response:
                assert response.status == 404
            assert next(n for n in await notifications(hub, pedro_id) if n.id == pedro_pending.id).status == "pending"

            expired = await plugin.issue_token("clinic", lucia_id, now=dt.datetime.now(dt.UTC).timestamp() - TOKEN_SECONDS - 1)
            async with http.get(f"{app}/context?tenant=clinic", headers={"Authorization": f"Bearer {expired}"}) as response:
                assert (response.status, (await response.json())["detail"]) == (401, "token expired")
            forged = answer["token"].rsplit(".", 1)[0] + "." + "0" * 64
            async with http.get(f"{app}/context?tenant=clinic", headers={"Authorization": f"Bearer {forged}"}) as response:
                assert response.status == 401

            async with http.get(f"{app}?tenant=clinic&key=wrong") as response:
                assert response.status == 403
            async with http.get(f"{app}?tenant=clinic&key={quote(key)}") as response:
                text = await response.text()
                assert response.status == 200
                assert response.headers["Content-Security-Policy"] == f"frame-ancestors {stand_in.base_url}"
                assert f'data-origin="{stand_in.base_url}"' in text and key not in text
