"""Each notification transition leaves its status, reason and history entry, whoever triggered it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from hub import AppointmentInput, NotificationRequest
from hub.core import Hub
from hub.models import Notification, utcnow


def booking(start: dt.datetime, **kwargs: Any) -> AppointmentInput:
    return AppointmentInput(source="api", external_id="b-1", start_at=start, addresses=(("phone", "+34600123456"),), **kwargs)


async def reminders(hub: Hub) -> dict[str, Notification]:
    async with hub.db.sessions() as session:
        rows = (await session.scalars(select(Notification).where(Notification.kind == "reminder"))).all()
    return {row.idempotency_key.rsplit(":", 1)[-1]: row for row in rows if row.idempotency_key}


def last(row: Notification) -> tuple[str, str | None]:
    entry = row.status_history[-1]
    return entry["status"], entry.get("reason")


# (what happens after a booking 30 h ahead, reminder label -> (status, last history entry, last_error))
APPOINTMENT_CASES = [
    (
        "moved later: rearmed",
        [{"start": dt.timedelta(hours=50)}],
        {"24h": ("pending", ("pending", "rescheduled"), None), "2h": ("pending", ("pending", "rescheduled"), None)},
    ),
    (
        "moved to 3 h ahead: the 24 h reminder is no longer planned",
        [{"start": dt.timedelta(hours=3)}],
        {"24h": ("canceled", ("canceled", "no longer planned"), "no longer planned"), "2h": ("pending", ("pending", "rescheduled"), None)},
    ),
    (
        "canceled",
        [{"status": "canceled"}],
        {"24h": ("canceled", ("canceled", "appointment canceled"), "appointment canceled")},
    ),
    (
        "no-show",
        [{"status": "no_show"}],
        {"2h": ("canceled", ("canceled", "appointment marked no-show"), "appointment marked no-show")},
    ),
    (
        "canceled, then on again: rearmed",
        [{"status": "canceled"}, {"status": "scheduled"}],
        {"24h": ("pending", ("pending", "rescheduled"), None)},
    ),
]


@pytest.mark.parametrize(("steps", "expected"), [c[1:] for c in APPOINTMENT_CASES], ids=[c[0] for c in APPOINTMENT_CASES])
async def test_appointment_changes_move_reminders(hub: Hub, steps: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    before = await reminders(hub)
    assert {label: row.status for label, row in before.items()} == {"24h": "pending", "2h": "pending", "30m": "pending"}
    for step in steps:
        moved = (utcnow() + step["start"]).replace(microsecond=0) if "start" in step else start
        await hub.upsert_appointment("clinic", booking(moved, status=step.get("status", "scheduled")))
    after = await reminders(hub)
    for label, (status, entry, error) in expected.items():
        row = after[label]
        assert (row.status, last(row), row.last_error) == (status, entry, error), label
        # One history entry per transition: the history only grows.
        assert row.status_history[: len(before[label].status_history)] == before[label].status_history
        assert len(row.status_history) == len(before[label].status_history) + len(steps)


async def test_expired_before_it_went_out(hub: Hub) -> None:
    notification_id = await hub.notify(tenant="clinic", request=NotificationRequest(
        kind="message", address="+34600123456", data={"text": "hola"}, expires_at=utcnow() - dt.timedelta(seconds=1),
    ))
    await hub.dispatcher.dispatch_due()
    async with hub.db.sessions() as session:
        row = await session.get_one(Notification, notification_id)
    assert row.status == "expired" and [h["status"] for h in row.status_history] == ["pending", "expired"]
    assert row.status_history[-1]["reason"].startswith("not sent before it expired at") and row.attempts == 0


async def test_a_late_report_about_the_old_message_does_not_move_a_rearmed_reminder(hub: Hub) -> None:
    from hub import DeliveryStatusEvent
    from hub.models import Message

    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    first = (await reminders(hub))["24h"]
    async with hub.db.sessions.begin() as session:
        (await session.get_one(Notification, first.id)).due_at = utcnow()  # its time has come
    await hub.dispatcher.dispatch_due()
    async with hub.db.sessions() as session:
        old = await session.scalar(select(Message).where(Message.notification_id == first.id))
    assert old is not None and old.provider_id
    # The appointment moves: the 24 h reminder is a new promise, pending again.
    await hub.upsert_appointment("clinic", booking(start + dt.timedelta(days=2)))
    assert (await reminders(hub))["24h"].status == "pending"
    # The provider's late "delivered" is about the message of the old time: it must not mark the new one done.
    event = DeliveryStatusEvent(tenant="clinic", channel=old.channel, provider_id=old.provider_id, status="delivered")
    await hub.accept(event, source="test", dedupe_key="late-delivered")
    await hub.inbox.process_pending()
    rearmed = (await reminders(hub))["24h"]
    assert rearmed.status == "pending" and rearmed.due_at > utcnow()
    async with hub.db.sessions() as session:
        assert (await session.get_one(Message, old.id)).status == "delivered"  # the old message's own record moves
