"""The delivery pipeline: outbox -> claim -> render -> channel -> recorded outcome, on both backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.core import Hub
from hub.models import DeliveryAttempt, Identity, Message, Notification, utcnow
from hub.outbox import NotificationRequest
from tests.conftest import make_config
from tests.sink import Sink

FAST = {"retry_base_seconds": 0.01, "dispatch_poll_seconds": 0.05, "inbox_poll_seconds": 0.05}


async def drain(hub: Hub, rounds: int = 200) -> None:
    """Dispatch until nothing is due, waiting out short retry delays."""
    import asyncio

    for _ in range(rounds):
        if not await hub.dispatcher.dispatch_due():
            async with hub.db.sessions() as session:
                pending = await session.scalar(select(Notification.id).where(Notification.status.in_(("pending", "sending"))))
            if pending is None:
                return
            await asyncio.sleep(0.02)


async def queue(hub: Hub, tenant: str = "clinic", **kwargs: Any) -> int:
    async with hub.unit_of_work() as uow:
        queued = await hub.queue_notification(uow, tenant=tenant, request=NotificationRequest(**kwargs))
    return queued.id


async def notification(hub: Hub, notification_id: int) -> Notification:
    async with hub.db.sessions() as session:
        return await session.get_one(Notification, notification_id)


async def attempts(hub: Hub, notification_id: int) -> list[tuple[str, str]]:
    async with hub.db.sessions() as session:
        rows = await session.execute(
            select(DeliveryAttempt.channel, DeliveryAttempt.outcome).where(DeliveryAttempt.notification_id == notification_id).order_by(DeliveryAttempt.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def sink_hub(database_url: str, sink: Sink, **tenant_policy: Any) -> Hub:
    tenants = {"clinic": {"name": "Clínica Sol", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es", **tenant_policy}}
    return Hub.build(make_config(database_url, hub=FAST, tenants=tenants, plugins={"http_sink": {"url": sink.url}}))


async def test_sandboxed_notification_is_rendered_and_recorded(hub: Hub) -> None:
    notification_id = await queue(hub, kind="message", address="600 123 456", data={"text": "Hola, ¿qué tal?"})
    await drain(hub)
    row = await notification(hub, notification_id)
    assert (row.status, row.channel, row.attempts) == ("sandboxed", "recorder-sms", 1)
    assert [h["status"] for h in row.status_history] == ["pending", "sandboxed"]
    assert row.sent_at is not None
    async with hub.db.sessions() as session:
        message = await session.scalar(select(Message).where(Message.notification_id == notification_id))
    assert message is not None and message.direction == "out" and message.status == "sandboxed"
    assert message.body == "Hola, ¿qué tal?"
    assert await attempts(hub, notification_id) == [("recorder-sms", "sandboxed")]


async def test_failing_sink_recovers_and_everything_is_delivered(database_url: str) -> None:
    async with Sink(fail_first=6, fail_status=500) as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            ids = [await queue(hub, kind="message", data={"text": "hi"}, address=f"+3460012340{i}", channel_order=("whatsapp",)) for i in range(3)]
            await drain(hub)
            rows = [await notification(hub, i) for i in ids]
            tries = [await attempts(hub, i) for i in ids]
    assert [r.status for r in rows] == ["sent", "sent", "sent"]
    assert sorted(m["to"] for m in sink.received) == ["+34600123400", "+34600123401", "+34600123402"]
    assert sink.refused == 6
    # Every try is on record: 6 transient failures in all, one success each.
    assert sum(outcome == "transient" for t in tries for _, outcome in t) == 6
    assert all(t[-1] == ("sink-whatsapp", "sent") for t in tries)


async def test_transient_failures_give_up_after_the_tenant_limit_then_fall_through(database_url: str) -> None:
    async with Sink(always_status=503) as sink:
        hub = sink_hub(database_url, sink, max_attempts=3)
        async with hub.running():
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"))
            await drain(hub)
            row = await notification(hub, notification_id)
            tries = await attempts(hub, notification_id)
    assert sink.refused == 3
    assert tries == [("sink-whatsapp", "transient"), ("sink-whatsapp", "transient"), ("sink-whatsapp", "exhausted"), ("recorder-sms", "sandboxed")]
    assert (row.status, row.channel) == ("sandboxed", "recorder-sms")


async def test_permanent_failure_falls_through_to_the_next_channel(database_url: str) -> None:
    async with Sink(always_status=400) as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"))
            await drain(hub)
            row = await notification(hub, notification_id)
            tries = await attempts(hub, notification_id)
    assert tries == [("sink-whatsapp", "permanent"), ("recorder-sms", "sandboxed")]
    assert (row.status, row.channel) == ("sandboxed", "recorder-sms")


async def test_nothing_usable_fails_with_every_reason(database_url: str) -> None:
    async with Sink(always_status=400) as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="ana@example.com", channel_order=("whatsapp", "sms"))
            await drain(hub)
            row = await notification(hub, notification_id)
    assert row.status == "failed"
    assert row.last_error == "sink-whatsapp: no phone for this contact; recorder-sms: no phone for this contact"
    assert sink.received == [] and sink.refused == 0


async def test_opted_out_identity_is_skipped(database_url: str) -> None:
    async with Sink() as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            first = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"))
            async with hub.db.sessions.begin() as session:
                await session.execute(update(Identity).values(opted_out={"whatsapp": utcnow().isoformat()}))
            second = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"))
            await drain(hub)
            rows = [await notification(hub, first), await notification(hub, second)]
    # The first was claimed after the opt-out too: both skip WhatsApp, SMS is untouched by it.
    assert [(r.status, r.channel) for r in rows] == [("sandboxed", "recorder-sms")] * 2
    assert sink.received == []


async def test_expired_notification_is_never_sent(database_url: str) -> None:
    async with Sink() as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            past = utcnow() - dt.timedelta(minutes=1)
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", send_at=past - dt.timedelta(hours=2), expires_at=past)
            await drain(hub)
            row = await notification(hub, notification_id)
    assert row.status == "expired"
    assert row.last_error is not None and row.last_error.startswith("not sent before it expired at")
    assert sink.received == []


async def test_missing_template_is_a_permanent_failure_naming_it(hub: Hub) -> None:
    notification_id = await queue(hub, kind="no_such_kind", address="+34600123456")
    await drain(hub)
    row = await notification(hub, notification_id)
    assert row.status == "failed"
    assert "no_such_kind" in (row.last_error or "")
    assert await attempts(hub, notification_id) == [("recorder-sms", "permanent")]


async def test_same_idempotency_key_sends_once(database_url: str) -> None:
    async with Sink() as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            first = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", idempotency_key="k1")
            second = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", idempotency_key="k1")
            other_tenant = await queue(hub, tenant="clinic", kind="message", data={"text": "hi"}, address="+34600123456", idempotency_key="k2")
            await drain(hub)
    assert first == second != other_tenant
    assert len(sink.received) == 2


async def test_future_notification_waits_until_due(hub: Hub) -> None:
    notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", send_at=utcnow() + dt.timedelta(hours=1))
    assert await hub.dispatcher.dispatch_due() == 0
    assert (await notification(hub, notification_id)).status == "pending"
    async with hub.db.sessions.begin() as session:
        await session.execute(update(Notification).values(due_at=utcnow() - dt.timedelta(seconds=1)))
    assert await hub.dispatcher.dispatch_due() == 1
    assert (await notification(hub, notification_id)).status == "sandboxed"


async def test_expired_lease_of_a_dead_worker_is_taken_over(hub: Hub) -> None:
    notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456")
    claimed = await hub.dispatcher._claim(utcnow())  # a worker claims, then dies before recording anything
    assert [row.id for row in claimed] == [notification_id]
    assert await hub.dispatcher.dispatch_due() == 0  # leased
    async with hub.db.sessions.begin() as session:
        await session.execute(update(Notification).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    assert await hub.dispatcher.dispatch_due() == 1
    assert (await notification(hub, notification_id)).status == "sandboxed"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_worker_loop_sends_what_is_queued(hub: Hub, record_file: Path) -> None:
    import asyncio

    async with hub.workers():
        notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456")
        for _ in range(200):
            if (await notification(hub, notification_id)).status == "sandboxed":
                break
            await asyncio.sleep(0.02)
    assert (await notification(hub, notification_id)).status == "sandboxed"


async def test_undelivered_status_falls_back_to_the_next_channel(database_url: str) -> None:
    from hub import DeliveryStatusEvent

    async with Sink() as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"),
                                          expires_at=utcnow() + dt.timedelta(hours=1))
            await drain(hub)
            first = await notification(hub, notification_id)
            assert (first.status, first.channel) == ("sent", "sink-whatsapp")
            provider_id = sink.received and (await attempts(hub, notification_id))
            async with hub.db.sessions() as session:
                message = await session.scalar(select(Message).where(Message.notification_id == notification_id))
            assert message is not None
            event = DeliveryStatusEvent(tenant="clinic", channel="sink-whatsapp", provider_id=message.provider_id or "", status="undelivered", error_code="63016")
            await hub.inbox.accept(event, source="test", dedupe_key="s1")
            await hub.inbox.process_pending()
            await drain(hub)
            final = await notification(hub, notification_id)
            tries = await attempts(hub, notification_id)
    assert provider_id
    assert (final.status, final.channel) == ("sandboxed", "recorder-sms")
    assert tries == [("sink-whatsapp", "sent"), ("sink-whatsapp", "permanent"), ("recorder-sms", "sandboxed")]
    assert [h["status"] for h in final.status_history] == ["pending", "sent", "pending", "sandboxed"]
    assert len(sink.received) == 1  # WhatsApp was not tried again


async def test_undelivered_status_after_expiry_stays_failed(database_url: str) -> None:
    from hub import DeliveryStatusEvent

    async with Sink() as sink:
        hub = sink_hub(database_url, sink)
        async with hub.running():
            notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("whatsapp", "sms"))
            await drain(hub)
            async with hub.db.sessions.begin() as session:
                await session.execute(update(Notification).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
                message = await session.scalar(select(Message).where(Message.notification_id == notification_id))
            assert message is not None
            event = DeliveryStatusEvent(tenant="clinic", channel="sink-whatsapp", provider_id=message.provider_id or "", status="failed", error_code="30008")
            await hub.inbox.accept(event, source="test", dedupe_key="s1")
            await hub.inbox.process_pending()
            final = await notification(hub, notification_id)
    assert final.status == "failed" and final.last_error == "sink-whatsapp: failed: 30008"


async def test_opt_out_event_and_opt_back_in(hub: Hub) -> None:
    from hub import OptOutEvent

    await hub.inbox.accept(OptOutEvent(tenant="clinic", address_kind="phone", address="600 123 456", medium="sms"), source="t", dedupe_key="o1")
    await hub.inbox.process_pending()
    notification_id = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("sms",))
    await drain(hub)
    refused = await notification(hub, notification_id)
    assert refused.status == "failed" and refused.last_error == "recorder-sms: opted out of sms"
    assert await hub.set_opt_out("clinic", "phone", "+34600123456", "sms", False) is True
    assert await hub.set_opt_out("clinic", "phone", "+34600123456", "sms", False) is False
    again = await queue(hub, kind="message", data={"text": "hi"}, address="+34600123456", channel_order=("sms",))
    await drain(hub)
    assert (await notification(hub, again)).status == "sandboxed"
