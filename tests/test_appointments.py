"""Appointments drive notifications: confirmation, reminders by the tenant's policy, reschedules, cancellations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from hub.appointments import AppointmentInput
from hub.core import Hub
from hub.models import Notification, utcnow
from tests.conftest import make_config, read_records


def booking(start: dt.datetime, **kwargs: object) -> AppointmentInput:
    values: dict[str, object] = {
        "source": "api", "external_id": "b-1", "start_at": start, "addresses": (("phone", "+34600123456"),),
        "contact_name": "Ana", "service": "Limpieza",
    }
    values.update(kwargs)
    return AppointmentInput(**values)  # type: ignore[arg-type]


async def rows(hub: Hub) -> list[Notification]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(Notification).order_by(Notification.id))).all())


async def test_booking_26_hours_ahead_gets_confirmation_and_three_reminders(hub: Hub, record_file: Path) -> None:
    start = (utcnow() + dt.timedelta(hours=26)).replace(microsecond=0)
    change = await hub.upsert_appointment("clinic", booking(start))
    assert change.change == "created"
    notifications = await rows(hub)
    assert [(n.kind, n.idempotency_key.rsplit(":", 1)[-1]) for n in notifications] == [
        ("confirmation", "confirmation"), ("reminder", "24h"), ("reminder", "2h"), ("reminder", "30m"),
    ]
    reminders = notifications[1:]
    assert [start - n.due_at for n in reminders] == [dt.timedelta(hours=24), dt.timedelta(hours=2), dt.timedelta(minutes=30)]
    assert all(n.expires_at == start for n in notifications)
    assert [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"] == ["created"]
    again = await hub.upsert_appointment("clinic", booking(start))
    assert again.change == "unchanged" and again.notifications == ()
    assert len(await rows(hub)) == 4


async def test_reschedule_moves_reminders_and_sends_one_notice(hub: Hub, record_file: Path) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    new_start = start + dt.timedelta(days=2)
    change = await hub.upsert_appointment("clinic", booking(new_start))
    assert change.change == "rescheduled"
    notifications = await rows(hub)
    kinds = [n.kind for n in notifications]
    assert kinds.count("reschedule") == 1 and "cancellation" not in kinds
    reminders = [n for n in notifications if n.kind == "reminder"]
    assert len(reminders) == 3 and all(n.status == "pending" for n in reminders)
    assert sorted(new_start - n.due_at for n in reminders) == [dt.timedelta(minutes=30), dt.timedelta(hours=2), dt.timedelta(hours=24)]
    assert [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"] == ["created", "rescheduled"]


async def test_cancel_cancels_pending_reminders_and_queues_the_notice(hub: Hub) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    change = await hub.upsert_appointment("clinic", booking(start, status="canceled", reason="Enfermedad"))
    assert change.change == "canceled"
    notifications = await rows(hub)
    assert {n.status for n in notifications if n.kind == "reminder"} == {"canceled"}
    cancellation = [n for n in notifications if n.kind == "cancellation"]
    assert len(cancellation) == 1 and cancellation[0].data == {"reason": "Enfermedad"}
    again = await hub.upsert_appointment("clinic", booking(start, status="canceled", reason="Enfermedad"))
    assert again.change == "unchanged" and len(await rows(hub)) == len(notifications)


async def test_quiet_hours_move_reminders_earlier(database_url: str) -> None:
    tenants = {"clinic": {"default_region": "ES", "timezone": "Europe/Madrid", "locale": "es", "quiet_hours": "21:00-08:00"}}
    hub = Hub.build(make_config(database_url, tenants=tenants))
    async with hub.running():
        # 08:30 Madrid, three days ahead: the 2 h reminder (06:30) falls in the quiet night and moves to 20:59.
        day = (utcnow() + dt.timedelta(days=3)).date()
        start = dt.datetime.combine(day, dt.time(7, 30), tzinfo=dt.UTC)
        start -= ZoneInfo("Europe/Madrid").utcoffset(start.replace(tzinfo=None)) - dt.timedelta(hours=1)  # summer time
        await hub.upsert_appointment("clinic", booking(start))
        reminders = {n.data["offset"]: n.due_at for n in await rows(hub) if n.kind == "reminder"}
    madrid = {k: v.astimezone(ZoneInfo("Europe/Madrid")) for k, v in reminders.items()}
    assert madrid["24h"].time() == dt.time(8, 30)
    assert madrid["2h"].time() == dt.time(20, 59) and madrid["2h"].date() == day - dt.timedelta(days=1)
    assert madrid["30m"].time() == dt.time(8, 0)  # quiet hours end at 08:00: not moved


async def test_booking_source_reschedule_as_new_booking_moves_the_appointment(hub: Hub, record_file: Path) -> None:
    from hub import AppointmentEvent

    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    first = AppointmentEvent(tenant="clinic", appointment=AppointmentInput(
        source="calendly", external_id="inv-1", start_at=start, addresses=(("email", "ana@example.com"),)))
    moved = AppointmentEvent(tenant="clinic", appointment=AppointmentInput(
        source="calendly", external_id="inv-2", start_at=start + dt.timedelta(days=1), addresses=(("email", "ana@example.com"),),
        replaces="inv-1"))
    for n, event in enumerate((first, moved, moved)):
        await hub.inbox.accept(event, source="calendly", dedupe_key=f"e{n}")
        await hub.inbox.process_pending()
    notifications = await rows(hub)
    assert [n.kind for n in notifications].count("reschedule") == 1
    assert "cancellation" not in [n.kind for n in notifications]
    changes = [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"]
    assert changes == ["created", "rescheduled"]
    async with hub.db.sessions() as session:
        from hub.models import Appointment

        appointments = (await session.scalars(select(Appointment))).all()
    assert [(a.external_id, a.start_at) for a in appointments] == [("inv-2", start + dt.timedelta(days=1))]


async def test_no_show_undone_rearms_reminders_without_a_notice(hub: Hub) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    assert (await hub.upsert_appointment("clinic", booking(start, status="no_show"))).change == "no_show"
    assert {n.status for n in await rows(hub) if n.kind == "reminder"} == {"canceled"}
    change = await hub.upsert_appointment("clinic", booking(start))
    assert change.change == "reinstated"
    notifications = await rows(hub)
    assert {n.status for n in notifications if n.kind == "reminder"} == {"pending"}
    assert [n.kind for n in notifications].count("confirmation") == 1


async def test_cancellation_reversed_confirms_again(hub: Hub) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    await hub.upsert_appointment("clinic", booking(start))
    await hub.upsert_appointment("clinic", booking(start, status="canceled"))
    assert (await hub.upsert_appointment("clinic", booking(start))).change == "reinstated"
    notifications = await rows(hub)
    assert [n.kind for n in notifications].count("confirmation") == 2
    assert {n.status for n in notifications if n.kind == "reminder"} == {"pending"}


async def test_backfill_without_confirmation(hub: Hub) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    change = await hub.upsert_appointment("clinic", booking(start, confirm=False))
    assert change.change == "created"
    assert [n.kind for n in await rows(hub)] == ["reminder", "reminder", "reminder"]


async def test_late_redelivery_of_a_replaced_booking_changes_nothing(hub: Hub) -> None:
    start = (utcnow() + dt.timedelta(hours=30)).replace(microsecond=0)
    original = booking(start, external_id="inv-old", source="calendly")
    await hub.upsert_appointment("clinic", original)
    moved = await hub.upsert_appointment("clinic", booking(start + dt.timedelta(days=1), external_id="inv-new", source="calendly", replaces="inv-old"))
    assert moved.change == "rescheduled"
    late = await hub.upsert_appointment("clinic", original)
    assert late.change == "unchanged" and late.appointment.id == moved.appointment.id
    async with hub.db.sessions() as session:
        from hub.models import Appointment

        appointments = (await session.scalars(select(Appointment))).all()
    assert [(a.external_id, a.start_at) for a in appointments] == [("inv-new", start + dt.timedelta(days=1))]
