"""The inbox: verified webhooks stored once, processed by the worker, failures retried and bounded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from hub import InboundMessage
from hub.core import Hub
from hub.models import Contact, Conversation, Identity, InboxEventRow, Message, Notification, utcnow
from tests.conftest import read_records, wait_for


async def count(hub: Hub, model: Any, *where: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_webhook_is_stored_processed_and_linked(hub: Hub, client: Any, record_file: Path) -> None:
    response = await client.post(
        "/webhooks/recorder/inbound",
        json={"tenant": "salon", "from": "whatsapp:+5215512345678", "body": "hola", "id": "SM1", "medium": "whatsapp", "name": "Ana"},
    )
    assert response.status == 200
    assert await response.json() == {"accepted": True}
    await wait_for(lambda: count(hub, InboxEventRow, InboxEventRow.processed_at.is_not(None)))
    received = [r for r in read_records(record_file) if r["hook"] == "on_message_received"]
    assert received == [
        {"hook": "on_message_received", "tenant": "salon", "contact_id": received[0]["contact_id"], "body": "hola", "medium": "whatsapp", "address": "+525512345678"}
    ]
    async with hub.db.sessions() as session:
        identity = await session.scalar(select(Identity).where(Identity.value == "+525512345678"))
        assert identity is not None and identity.contact_id == received[0]["contact_id"]
        contact = await session.get(Contact, identity.contact_id)
        assert contact is not None and contact.name == "Ana"
        conversation = await session.scalar(select(Conversation).where(Conversation.contact_id == contact.id))
        assert conversation is not None and conversation.medium == "whatsapp" and conversation.last_inbound_at is not None
        message = await session.scalar(select(Message).where(Message.provider_id == "SM1"))
        assert message is not None and message.body == "hola" and message.direction == "in"
    linked = [r for r in read_records(record_file) if r["hook"] == "on_contact_linked"]
    assert [(r["kind"], r["value"]) for r in linked] == [("phone", "+525512345678")]


async def test_duplicate_webhook_is_processed_once(hub: Hub, client: Any, record_file: Path) -> None:
    body = {"tenant": "clinic", "from": "+34600123456", "body": "hi", "id": "SM-dup"}
    first = await client.post("/webhooks/recorder/inbound", json=body)
    second = await client.post("/webhooks/recorder/inbound", json=body)
    assert (await first.json(), await second.json()) == ({"accepted": True}, {"accepted": False})
    await wait_for(lambda: count(hub, InboxEventRow, InboxEventRow.processed_at.is_not(None)))
    await hub.inbox.process_pending()
    assert await count(hub, InboxEventRow) == 1
    assert await count(hub, Message, Message.provider_id == "SM-dup") == 1
    assert len([r for r in read_records(record_file) if r["hook"] == "on_message_received"]) == 1


async def test_failing_event_is_recorded_retried_and_bounded(hub: Hub) -> None:
    # A sender address the resolver cannot read makes the processor fail every time.
    event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="not a phone", provider_id="SMbad")
    good = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="+34600111222", provider_id="SMgood")
    assert await hub.inbox.accept(event, source="recorder", dedupe_key="SMbad")
    assert await hub.inbox.accept(good, source="recorder", dedupe_key="SMgood")
    for attempt in range(1, hub.inbox.max_attempts + 1):
        assert await hub.inbox.process_pending() >= 1
        async with hub.db.sessions.begin() as session:
            row = await session.scalar(select(InboxEventRow).where(InboxEventRow.dedupe_key == "SMbad"))
            assert row is not None and row.attempts == attempt
            assert row.error is not None and "not a number" in row.error
            # Skip the backoff wait so the next round retries at once.
            await session.execute(update(InboxEventRow).where(InboxEventRow.id == row.id).values(next_attempt_at=row.received_at))
    async with hub.db.sessions() as session:
        bad = await session.scalar(select(InboxEventRow).where(InboxEventRow.dedupe_key == "SMbad"))
        ok = await session.scalar(select(InboxEventRow).where(InboxEventRow.dedupe_key == "SMgood"))
    assert bad is not None and bad.failed_at is not None and bad.processed_at is None
    assert ok is not None and ok.processed_at is not None and ok.error is None
    assert await hub.inbox.process_pending() == 0  # given up: never claimed again


async def test_expired_lease_is_taken_over(hub: Hub) -> None:
    event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="+34600123456", provider_id="SMlease")
    await hub.inbox.accept(event, source="recorder", dedupe_key="SMlease")
    claimed = await hub.inbox._claim(10)  # a worker claims it, then dies without processing
    assert [row.dedupe_key for row in claimed] == ["SMlease"]
    assert await hub.inbox.process_pending() == 0  # leased: nobody else takes it
    async with hub.db.sessions.begin() as session:
        await session.execute(update(InboxEventRow).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    assert await hub.inbox.process_pending() == 1
    assert await count(hub, Message, Message.provider_id == "SMlease") == 1


async def test_delivery_status_never_moves_backwards(hub: Hub, client: Any, record_file: Path) -> None:
    await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "body": "echo hola", "id": "SMin"})
    # The responder's reply goes out through the outbox on the conversation's channel.
    await wait_for(lambda: count(hub, Message, Message.direction == "out"))
    async with hub.db.sessions() as session:
        reply = await session.scalar(select(Message).where(Message.direction == "out"))
    assert reply is not None and reply.body == "hola" and reply.status == "sandboxed" and reply.provider_id
    for status in ("sent", "read", "delivered"):
        await client.post("/webhooks/recorder/status", json={"tenant": "clinic", "channel": "recorder-sms", "id": reply.provider_id, "status": status})

    async def all_processed() -> bool:
        return await count(hub, InboxEventRow, InboxEventRow.processed_at.is_not(None)) == 4

    await wait_for(all_processed)
    await wait_for(lambda: len([r for r in read_records(record_file) if r["hook"] == "on_delivery_status"]) == 2 or None)
    async with hub.db.sessions() as session:
        stored = await session.scalar(select(Message).where(Message.id == reply.id))
        notification = await session.get(Notification, stored.notification_id) if stored else None
    assert stored is not None and stored.status == "read"
    assert [h["status"] for h in stored.status_history] == ["sandboxed", "sent", "read"]
    assert notification is not None and notification.status == "read" and notification.kind == "reply"
    statuses = [r["status"] for r in read_records(record_file) if r["hook"] == "on_delivery_status"]
    assert statuses == ["sent", "read"]


async def test_concurrent_accepts_share_a_commit_and_keep_duplicates_out(hub: Hub) -> None:
    import asyncio

    events = [
        InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender=f"+3460012{i:04d}", provider_id=f"SM{i}")
        for i in range(40)
    ]
    # Every event twice, all at once: a vendor retry can land in the same group commit as its original.
    results = await asyncio.gather(*(hub.inbox.accept(e, source="recorder", dedupe_key=e.provider_id or "") for e in events + events))
    assert sum(results) == 40
    assert all(results[i] != results[i + 40] for i in range(40))
    assert await count(hub, InboxEventRow) == 40
    while await hub.inbox.process_pending():
        pass
    assert await count(hub, Message) == 40
    assert await count(hub, InboxEventRow, InboxEventRow.processed_at.is_(None)) == 0
