"""Outbound webhooks: subscribed events delivered signed through the outbox, retried, dead-lettered, replayed."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.app import create_app
from hub.appointment_input import AppointmentInput
from hub.core import Hub
from hub.models import DeliveryAttempt, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.outbound_webhooks import SubscriptionError, check_patterns, sign, subscribe, verify
from tests.conftest import ROOT, make_config, wait_for
from tests.console_helpers import CLINIC_USER, csrf_of, seed, sign_in

EXAMPLE = ROOT / "docs" / "examples" / "webhook_receiver.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def hub(sqlite_url: str, record_file: Path) -> AsyncIterator[Hub]:
    tenants = {
        "clinic": {"name": "Clinic", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es", "max_attempts": 3},
        "salon": {"name": "Salon", "default_region": "MX", "timezone": "America/Mexico_City", "locale": "es"},
    }
    instance = Hub.build(make_config(sqlite_url, record_file=record_file, tenants=tenants, hub={"retry_base_seconds": 0.01}))
    async with instance.running():
        yield instance


async def add_subscription(hub: Hub, url: str, events: tuple[str, ...], tenant: str = "clinic") -> Any:
    info = await hub.tenants.get(tenant)
    async with hub.db.sessions.begin() as session:
        return await subscribe(session, hub.tenant_settings.keyring, info, url, events)


def booking(external_id: str = "visit-1") -> AppointmentInput:
    return AppointmentInput(
        source="api", external_id=external_id, start_at=utcnow() + dt.timedelta(days=2), status="scheduled",
        addresses=(("phone", "+34600123456"),), contact_name="Ana", service="Check-up",
    )


async def deliveries(hub: Hub) -> list[Notification]:
    async with hub.db.sessions() as session:
        return list(await session.scalars(select(Notification).where(Notification.kind == "webhook").order_by(Notification.id)))


async def test_subscribed_events_reach_the_example_receiver_signed(hub: Hub) -> None:
    module = load_example()
    events: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}

    def start() -> Any:
        server = module.make_server(holder["secret"], holder["port"], events.append)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    # Subscribe first (to learn the secret), pointing at a port we then bind.
    probe = module.make_server("x", 0, lambda _e: None)
    port = probe.server_address[1]
    probe.server_close()
    holder["port"] = port
    made = await add_subscription(hub, f"http://127.0.0.1:{port}/hooks", ("appointment.*", "notification.sent"))
    other = await add_subscription(hub, f"http://127.0.0.1:{port}/other", ("notification.failed",), tenant="salon")
    holder["secret"] = made.secret
    server = start()
    try:
        update = await hub.upsert_appointment("clinic", booking())
        await hub.dispatcher.dispatch_due()  # the confirmation goes out: notification.sent is queued with it
        await hub.dispatcher.dispatch_due()  # the webhook deliveries
        await wait_for(lambda: len(events) >= 2, timeout=3)
    except AssertionError:
        raise AssertionError([(d.status, d.last_error) for d in await deliveries(hub)]) from None
    finally:
        server.shutdown()
        server.server_close()
    by_type = {event["type"]: event for event in events}
    assert set(by_type) == {"appointment.created", "notification.sent"}
    created = by_type["appointment.created"]
    assert created["tenant"] == "clinic" and created["data"]["appointment"]["id"] == update.appointment.id
    assert created["data"]["appointment"]["external_id"] == "visit-1"
    sent = by_type["notification.sent"]["data"]["notification"]
    assert sent["kind"] == "confirmation" and sent["channel"] == "recorder-sms"
    assert "+34600123456" not in json.dumps(events)  # ids, not addresses
    rows = await deliveries(hub)
    assert [r.status for r in rows] == ["sent", "sent"]
    assert all(r.data["subscription_id"] == made.id for r in rows)
    assert other.id not in {r.data["subscription_id"] for r in rows}


def test_the_signature_scheme_and_the_documented_verifier_agree() -> None:
    module = load_example()
    body = b'{"type":"appointment.created"}'
    header = sign("whsec_test", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    for verifier in (verify, module.verify_signature):
        assert verifier("whsec_test", header, body, now=1_700_000_010)
        assert not verifier("whsec_test", header, body + b" ", now=1_700_000_010)
        assert not verifier("other", header, body, now=1_700_000_010)
        assert not verifier("whsec_test", header, body, now=1_700_000_000 + 301)  # too old: a replay
        assert not verifier("whsec_test", "v1=abc", body, now=1_700_000_010)


@pytest.mark.parametrize(
    ("patterns", "problem"),
    [((), "at least one"), (("appointment.moved",), "matches no event"), (("*",), None), (("appointment.*", "contact.merged"), None)],
)
def test_subscription_patterns_are_checked(patterns: tuple[str, ...], problem: str | None) -> None:
    if problem is None:
        assert check_patterns(patterns) == patterns
    else:
        with pytest.raises(SubscriptionError, match=problem):
            check_patterns(patterns)


class Receiver:
    """An in-process receiver answering statuses from a script, then 204."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver([])
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield receiver, f"http://{host}:{port}/hooks"
    finally:
        await runner.cleanup()


async def drain(hub: Hub, rounds: int = 40) -> None:
    """Dispatch until nothing webhook-related is pending (backoff is a few hundredths of a second here)."""
    for _ in range(rounds):
        await hub.dispatcher.dispatch_due()
        if not any(d.status == "pending" for d in await deliveries(hub)):
            return
        await asyncio.sleep(0.05)


async def test_a_failing_receiver_is_retried_with_backoff_then_succeeds(hub: Hub, receiver_url: tuple[Receiver, str]) -> None:
    receiver, url = receiver_url
    receiver.statuses = [500, 503]
    await add_subscription(hub, url, ("appointment.created",))
    await hub.upsert_appointment("clinic", booking())
    await drain(hub)
    (row,) = await deliveries(hub)
    assert row.status == "sent"
    assert len(receiver.bodies) == 3 and len(set(receiver.bodies)) == 1  # the same delivery each time
    async with hub.db.sessions() as session:
        outcomes = list(await session.scalars(select(DeliveryAttempt.outcome).where(DeliveryAttempt.notification_id == row.id).order_by(DeliveryAttempt.id)))
    assert outcomes == ["transient", "transient", "sent"]


async def test_after_its_budget_a_delivery_is_dead_lettered_and_replayed_from_the_console(
    hub: Hub, receiver_url: tuple[Receiver, str],
) -> None:
    receiver, url = receiver_url
    receiver.statuses = [500] * 3  # the clinic's max_attempts
    await seed(hub)
    await add_subscription(hub, url, ("appointment.*",))
    await hub.upsert_appointment("clinic", booking("visit-2"))
    await drain(hub)
    (row,) = await deliveries(hub)
    assert row.status == "failed" and "gave up after 3 tries" in (row.last_error or "")
    async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
        await sign_in(client, CLINIC_USER)
        page = await (await client.get("/t/clinic/webhooks")).text()
        assert "dead letter" in page and url in page
        replayed = await client.post(f"/t/clinic/outbox/{row.id}/retry", data={"csrf": csrf_of(page), "back": "webhooks"})
        assert "Queued again for delivery" in await replayed.text()
    await drain(hub)
    (row,) = await deliveries(hub)
    assert row.status == "sent"
    assert len(receiver.bodies) == 4


async def test_a_410_gone_fails_the_delivery_at_once(hub: Hub, receiver_url: tuple[Receiver, str]) -> None:
    receiver, url = receiver_url
    receiver.statuses = [410]
    await add_subscription(hub, url, ("appointment.created",))
    await hub.upsert_appointment("clinic", booking())
    await drain(hub)
    (row,) = await deliveries(hub)
    assert row.status == "failed" and len(receiver.bodies) == 1


async def test_a_failed_notification_is_reported_and_webhooks_never_report_themselves(hub: Hub, receiver_url: tuple[Receiver, str]) -> None:
    receiver, url = receiver_url
    receiver.statuses = [500] * 3
    await add_subscription(hub, url, ("notification.*",))
    await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="ana@example.com", data={"text": "x"}, channel_order=("email",)))
    await drain(hub)
    rows = await deliveries(hub)
    # One notification.failed for the email nobody could send; its own dead letter reports nothing further.
    assert [r.data["event"] for r in rows] == ["notification.failed"]
    assert rows[0].status == "failed"


async def test_provider_reports_and_merges_are_delivered(hub: Hub, receiver_url: tuple[Receiver, str]) -> None:
    from hub.events import DeliveryStatusEvent

    receiver, url = receiver_url
    await add_subscription(hub, url, ("notification.delivered", "contact.merged"))
    sent = await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="+34600123456", data={"text": "x"}))
    await hub.dispatcher.dispatch_due()
    report = DeliveryStatusEvent(tenant="clinic", channel="recorder-sms", provider_id=f"echo-{sent}", status="delivered")
    assert await hub.accept(report, source="test", dedupe_key="report-1")
    await hub.inbox.process_pending()
    # One appointment naming the phone of one contact and the email of another merges them.
    await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="ana@example.com", data={"text": "y"}, channel_order=("email",)))
    await hub.upsert_appointment("clinic", AppointmentInput(
        source="api", external_id="merge-1", start_at=utcnow() + dt.timedelta(days=3), status="scheduled",
        addresses=(("phone", "+34600123456"), ("email", "ana@example.com")), contact_name="Ana",
    ))
    await drain(hub)
    events = [json.loads(body) for body in receiver.bodies]
    kinds = [event["type"] for event in events]
    assert kinds.count("notification.delivered") == 1 and kinds.count("contact.merged") == 1
    delivered = next(e for e in events if e["type"] == "notification.delivered")
    assert delivered["data"]["notification"]["id"] == sent and delivered["data"]["notification"]["status"] == "delivered"
    merged = next(e for e in events if e["type"] == "contact.merged")
    assert len(merged["data"]["merged_contact_ids"]) == 1
