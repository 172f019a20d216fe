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
