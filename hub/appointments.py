"""Appointments from any booking system, and the notifications they drive.

`upsert_appointment` is the one use case behind `PUT /api/v1/appointments`,
Calendly webhooks and backfills: it stores the appointment, links its
contact, and (re)schedules its notifications in the same transaction:
a confirmation when it is booked, reminders at the tenant's offsets, a
reschedule notice (never a cancellation) when it moves, a cancellation
notice when it is canceled. Every notification has an idempotency key per
(appointment, purpose), so replaying the same upsert changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

# AppointmentInput lives in its own light module (events import it); still importable from here.
from hub.appointment_input import APPOINTMENT_STATUSES
from hub.appointment_input import AppointmentInput as AppointmentInput
from hub.contacts import LinkOutcome, LinkRequest, link, link_many
from hub.events import AppointmentEvent, AppointmentRef, InboxEvent
from hub.inbox import Processor
from hub.models import Appointment, AppointmentReplacement, Contact, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.outbox import NotificationStatus, cancel, cancel_pending, enqueue, enqueue_many, rearm
from hub.reminders import PlannedReminder, QuietHours, parse_offset, plan_reminders
from hub.tenants import TenantInfo
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from hub.core import Hub

@dataclass(frozen=True)
class AppointmentChange:
    """What an upsert did: the appointment after it, and the change ("unchanged" fires no hook)."""

    appointment: AppointmentRef
    change: str
    link: LinkOutcome | None
    notifications: tuple[int, ...]
    """Ids of the notifications this upsert created or re-armed."""


def appointment_ref(row: Appointment, tenant: TenantInfo) -> AppointmentRef:
    """The hook-facing view of an appointment row."""
    return AppointmentRef(
        row.id, tenant.slug, row.contact_id, row.source, row.external_id, row.start_at, row.end_at,
        row.timezone, row.status, row.service, row.location, row.confirmed_at,
    )


async def upsert_appointment(session: AsyncSession, tenant: TenantInfo, data: AppointmentInput) -> AppointmentChange:
    """Create or update an appointment and (re)schedule its notifications; never commits."""
    if data.status not in APPOINTMENT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(APPOINTMENT_STATUSES)}")
    now = utcnow()
    outcome = None
    if data.addresses:
        profile = {"name": data.contact_name, "locale": data.contact_locale, "timezone": data.contact_timezone}
        outcome = await link(session, tenant, list(data.addresses), profile=profile, reason=f"appointment from {data.source}")
    row, successor = await _find(session, tenant, data.source, data.external_id)
    if row is None and data.replaces:
        row, _ = await _find(session, tenant, data.source, data.replaces)
        if row is not None:
            row.data = {**(row.data or {}), "replaced_ids": [*(row.data or {}).get("replaced_ids", []), row.external_id]}
            await _record_replacement(session, tenant, row, row.external_id)
            row.external_id = data.external_id
    if row is None and successor is not None:
        # A late redelivery about a booking that was since replaced (rescheduled): it must not
        # bring the old booking back as a second appointment.
        return AppointmentChange(appointment_ref(successor, tenant), "unchanged", outcome, ())
    created = row is None
    old_start = row.start_at if row is not None else None
    old_status = row.status if row is not None else None
    if row is None:
        row = Appointment(tenant_id=tenant.id, source=data.source, external_id=data.external_id, booked_at=data.booked_at or now, data={})
        session.add(row)
    before = _snapshot(row) if not created else None
    if outcome is not None:
        row.contact_id = outcome.contact.id
    row.start_at = data.start_at
    row.end_at = data.end_at
    row.timezone = data.timezone or row.timezone
    row.status = data.status
    for name in ("service", "location", "event_type", "cancel_url", "reschedule_url"):
        value = getattr(data, name)
        if value is not None:
            setattr(row, name, value)
    moved = not created and old_start != data.start_at
    if moved:
        row.confirmed_at = None  # a yes to the old time is not a yes to the new one
        row.data = {**(row.data or {}), **data.data, "sequence": int((row.data or {}).get("sequence", 0)) + 1}
    elif data.data:
        row.data = {**(row.data or {}), **data.data}
    await session.flush()
    change = _classify(created, old_status, data.status, moved, before, _snapshot(row))
    touched: list[int] = []
    if row.contact_id is not None and change == "created":
        # The link just read the contact: its time zone needs no second look.
        known_zone = outcome.contact.timezone if outcome is not None and outcome.contact.id == row.contact_id else None
        touched = await _first_notifications(session, tenant, row, data, now, known_zone)
    elif row.contact_id is not None:
        touched = await _notifications_for(session, tenant, row, change, data, now, old_start, old_status)
    return AppointmentChange(appointment_ref(row, tenant), change, outcome, tuple(touched))


async def _find(
    session: AsyncSession, tenant: TenantInfo, source: str, external_id: str
) -> tuple[Appointment | None, Appointment | None]:
    """(the appointment with this external id, the one that took it over through `replaces`): one indexed query."""
    replaced = select(AppointmentReplacement.appointment_id).where(
        AppointmentReplacement.tenant_id == tenant.id, AppointmentReplacement.source == source,
        AppointmentReplacement.external_id == external_id,
    )
    rows = (
        await session.scalars(
            select(Appointment).where(
                Appointment.tenant_id == tenant.id, Appointment.source == source,
                or_(Appointment.external_id == external_id, Appointment.id.in_(replaced)),
            )
        )
    ).all()
    direct = next((row for row in rows if row.external_id == external_id), None)
    successor = next((row for row in rows if row.external_id != external_id), None)
    return direct, successor


async def _record_replacement(session: AsyncSession, tenant: TenantInfo, row: Appointment, old_external_id: str) -> None:
    """Remember that `row` took over `old_external_id`, so late news about it finds `row`."""
    insert = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(AppointmentReplacement)
    await session.execute(
        insert.values(tenant_id=tenant.id, source=row.source, external_id=old_external_id, appointment_id=row.id)
        .on_conflict_do_update(index_elements=["tenant_id", "source", "external_id"], set_={"appointment_id": row.id})
    )


def _snapshot(row: Appointment) -> tuple[Any, ...]:
    return (row.contact_id, row.start_at, row.end_at, row.timezone, row.status, row.service, row.location,
            row.event_type, row.cancel_url, row.reschedule_url)


def _classify(created: bool, old_status: str | None, status: str, moved: bool, before: Any, after: Any) -> str:
    if created:
        return "created" if status == "scheduled" else status
    if status == "canceled":
        return "canceled" if old_status != "canceled" else "unchanged"
    if status == "no_show":
        return "no_show" if old_status != "no_show" else "unchanged"
    if moved:
        return "rescheduled"
    if old_status != "scheduled":
        return "reinstated"  # back on at the same time: a no-show undone, a cancellation reversed
    return "updated" if before != after else "unchanged"


async def _notifications_for(
    session: AsyncSession, tenant: TenantInfo, row: Appointment, change: str, data: AppointmentInput,
    now: dt.datetime, old_start: dt.datetime | None, old_status: str | None,
) -> list[int]:
    touched: list[int] = []

    async def notice(kind: str, key: str, extra: dict[str, Any] | None = None) -> None:
        queued = await enqueue(
            session,
            tenant,
            NotificationRequest(
                kind=kind, contact_id=row.contact_id, appointment_id=row.id, idempotency_key=key,
                expires_at=row.start_at, data=extra or {},
            ),
        )
        if queued.created:
            touched.append(queued.id)

    if change == "created":
        if data.confirm:
            await notice("confirmation", f"appointment:{row.id}:confirmation")
        touched += await schedule_reminders(session, tenant, row, now)
    elif change == "reinstated":
        if old_status == "canceled":  # they were told it was off: tell them it is on again
            await notice("confirmation", f"appointment:{row.id}:confirmation:reinstated:{now.isoformat()}")
        touched += await schedule_reminders(session, tenant, row, now)
    elif change == "rescheduled":
        await cancel_pending(session, row.id, "superseded by a newer time", kinds=("reschedule", "cancellation"))
        await notice("reschedule", f"appointment:{row.id}:reschedule:{row.start_at.isoformat()}",
                     {"previous_start": old_start.isoformat() if old_start else None})
        touched += await schedule_reminders(session, tenant, row, now)
    elif change == "canceled":
        await cancel_pending(session, row.id, "appointment canceled")
        if old_status is None:
            # First heard of already canceled: the client was never told about it, so nothing to take back.
            return touched
        await notice("cancellation", f"appointment:{row.id}:cancellation:{row.start_at.isoformat()}", {"reason": data.reason})
    elif change == "no_show":
        await cancel_pending(session, row.id, "appointment marked no-show")
    elif change == "updated":
        touched += await schedule_reminders(session, tenant, row, now)
    return touched


async def _first_notifications(
    session: AsyncSession, tenant: TenantInfo, row: Appointment, data: AppointmentInput, now: dt.datetime,
    contact_timezone: str | None,
) -> list[int]:
    """A new appointment's confirmation and reminders: nothing can be queued for its id yet, so
    there is nothing to look up first."""
    requests: list[NotificationRequest] = []
    if data.confirm:
        requests.append(NotificationRequest(
            kind="confirmation", contact_id=row.contact_id, appointment_id=row.id,
            idempotency_key=f"appointment:{row.id}:confirmation", expires_at=row.start_at, data={},
        ))
    for plan in _plan(tenant, row, now, contact_timezone):
        requests.append(_reminder_request(row, plan))
    return await _enqueue_all(session, tenant, requests)


async def _enqueue_all(session: AsyncSession, tenant: TenantInfo, requests: list[NotificationRequest]) -> list[int]:
    """Queue the requests in one go; the ids of the rows this call created."""
    return [queued.id for queued in await enqueue_many(session, tenant, requests) if queued.created]


def _plan(tenant: TenantInfo, row: Appointment, now: dt.datetime, contact_timezone: str | None) -> list[PlannedReminder]:
    return _plan_at(tenant, row.start_at, row.booked_at, contact_timezone or row.timezone or tenant.timezone, now)


def _plan_at(tenant: TenantInfo, start_at: dt.datetime, booked_at: dt.datetime, timezone: str, now: dt.datetime) -> list[PlannedReminder]:
    quiet = QuietHours.parse(tenant.quiet_hours) if tenant.quiet_hours else None
    return plan_reminders(
        start_at=start_at, booked_at=booked_at, now=now,
        offsets=[parse_offset(o) for o in tenant.reminders], timezone=timezone, quiet_hours=quiet,
    )


def _reminder_request(row: Appointment, plan: PlannedReminder) -> NotificationRequest:
    return NotificationRequest(
        kind="reminder", contact_id=row.contact_id, appointment_id=row.id, send_at=plan.send_at, expires_at=row.start_at,
        idempotency_key=f"appointment:{row.id}:reminder:{plan.label}", data={"offset": plan.label},
    )


async def schedule_reminders(session: AsyncSession, tenant: TenantInfo, row: Appointment, now: dt.datetime) -> list[int]:
    """Make the appointment's pending reminders match the tenant's plan; returns ids created or moved."""
    contact = await session.get(Contact, row.contact_id) if row.contact_id else None
    planned = _plan(tenant, row, now, contact.timezone if contact else None)
    existing = {
        n.idempotency_key: n
        for n in (
            await session.scalars(select(Notification).where(Notification.appointment_id == row.id, Notification.kind == "reminder"))
        ).all()
    }
    touched: list[int] = []
    wanted: set[str] = set()
    for plan in planned:
        key = f"appointment:{row.id}:reminder:{plan.label}"
        wanted.add(key)
        current = existing.get(key)
        if current is None:
            queued = await enqueue(session, tenant, _reminder_request(row, plan))
            touched.append(queued.id)
        elif (
            current.due_at != plan.send_at or current.expires_at != row.start_at
            or current.status == NotificationStatus.CANCELED
        ):
            # The reminder for the new time is a new promise, even if the old one went out (and a
            # reminder canceled with the appointment comes back with it).
            if rearm(current, due_at=plan.send_at, expires_at=row.start_at, reason="rescheduled"):
                touched.append(current.id)
    for existing_key, current in existing.items():
        if existing_key not in wanted:
            cancel(current, "no longer planned")
    await session.flush()
    return touched


def appointment_processors(hub: Hub) -> dict[str, Processor]:
    """The inbox processor for `AppointmentEvent`s from booking sources."""

    async def changed(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, AppointmentEvent)
        tenant = await hub.tenants.get(event.tenant)
        await hub.apply_appointment(uow, tenant, event.appointment)

    return {AppointmentEvent.kind: changed}


# --- batches ---------------------------------------------------------------------------------------

BATCH_CHUNK = 500
"""Rows per multi-row statement: well under SQLite's and asyncpg's bound-parameter limits."""


async def upsert_appointments(
    session: AsyncSession, tenant: TenantInfo, items: Sequence[AppointmentInput]
) -> list[AppointmentChange]:
    """`upsert_appointment` for a batch: each item's change, as upserting them one by one in order would give; never commits.

    New bookings (an external id neither stored, nor replaced, nor earlier in the batch, and no
    `replaces`) are linked with `link_many`, inserted with one multi-row INSERT and their
    notifications queued with one `enqueue_many`, a run of consecutive ones at a time; every other
    item goes through `upsert_appointment`, in its place in the order.
    """
    for index, data in enumerate(items):
        if data.status not in APPOINTMENT_STATUSES:
            raise ValueError(f"item {index}: status must be one of {', '.join(APPOINTMENT_STATUSES)}")
    known = await _known_ids(session, tenant, items)
    seen: set[tuple[str, str]] = set()
    fresh: list[bool] = []
    for data in items:
        key = (data.source, data.external_id)
        fresh.append(bool(data.addresses) and not data.replaces and key not in known and key not in seen)
        seen.add(key)
    changes: list[AppointmentChange] = []
    index = 0
    while index < len(items):
        if not fresh[index]:
            changes.append(await upsert_appointment(session, tenant, items[index]))
            index += 1
            continue
        end = index
        while end < len(items) and fresh[end] and end - index < BATCH_CHUNK:
            end += 1
        changes += await _create_many(session, tenant, items[index:end])
        index = end
    return changes


async def _known_ids(session: AsyncSession, tenant: TenantInfo, items: Sequence[AppointmentInput]) -> set[tuple[str, str]]:
    """(source, external id) of the items that name a stored appointment or one that was replaced."""
    wanted: dict[str, list[str]] = {}
    for data in items:
        wanted.setdefault(data.source, []).append(data.external_id)
    found: set[tuple[str, str]] = set()
    for source, ids in wanted.items():
        for start in range(0, len(ids), BATCH_CHUNK):
            chunk = list(dict.fromkeys(ids[start:start + BATCH_CHUNK]))
            stored = select(Appointment.external_id).where(
                Appointment.tenant_id == tenant.id, Appointment.source == source, Appointment.external_id.in_(chunk)
            )
            replaced = select(AppointmentReplacement.external_id).where(
                AppointmentReplacement.tenant_id == tenant.id, AppointmentReplacement.source == source,
                AppointmentReplacement.external_id.in_(chunk),
            )
            rows = await session.execute(stored.union_all(replaced))
            found.update((source, external_id) for (external_id,) in rows)
    return found


async def _create_many(session: AsyncSession, tenant: TenantInfo, items: Sequence[AppointmentInput]) -> list[AppointmentChange]:
    """New bookings, as `upsert_appointment` creates them, set-based; one that a concurrent request
    created first goes through `upsert_appointment` after the others."""
    now = utcnow()
    outcomes = await link_many(session, tenant, [
        LinkRequest(list(data.addresses), profile={"name": data.contact_name, "locale": data.contact_locale,
                                                   "timezone": data.contact_timezone},
                    reason=f"appointment from {data.source}")
        for data in items
    ])
    values: list[dict[str, Any]] = [
        {
            "tenant_id": tenant.id, "contact_id": outcome.contact.id, "source": data.source, "external_id": data.external_id,
            "start_at": data.start_at, "end_at": data.end_at, "timezone": data.timezone, "status": data.status,
            "service": data.service, "location": data.location, "event_type": data.event_type, "cancel_url": data.cancel_url,
            "reschedule_url": data.reschedule_url, "booked_at": data.booked_at or now, "confirmed_at": None,
            "data": dict(data.data), "created_at": now, "updated_at": now,
        }
        for data, outcome in zip(items, outcomes)
    ]
    table = Appointment.__table__
    insert = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)
    # One statement compiled once and run over the rows (SQLAlchemy's "insertmanyvalues" batches them
    # into multi-row INSERTs): `.values(rows)` would compile a bound parameter per cell, every time.
    connection = await session.connection()
    returned = await connection.execute(
        insert.on_conflict_do_nothing(index_elements=["tenant_id", "source", "external_id"])
        .returning(table.c.id, table.c.external_id),
        values,
    )
    ids = {external_id: int(row_id) for row_id, external_id in returned}
    requests: list[NotificationRequest] = []
    owners: list[int] = []
    refs: dict[int, AppointmentRef] = {}
    for position, (data, outcome) in enumerate(zip(items, outcomes)):
        if data.external_id not in ids:
            continue
        # The hook-facing view straight from the values: an ORM object per row costs more than its INSERT.
        row = values[position]
        ref = AppointmentRef(
            ids[data.external_id], tenant.slug, row["contact_id"], data.source, data.external_id, data.start_at, data.end_at,
            data.timezone, data.status, data.service, data.location, None,
        )
        refs[position] = ref
        if data.status != "scheduled":
            continue  # first heard of already canceled or a no-show: nothing to tell anyone
        if data.confirm:
            requests.append(NotificationRequest(
                kind="confirmation", contact_id=ref.contact_id, appointment_id=ref.id,
                idempotency_key=f"appointment:{ref.id}:confirmation", expires_at=ref.start_at, data={},
            ))
            owners.append(position)
        timezone = outcome.contact.timezone or data.timezone or tenant.timezone
        for plan in _plan_at(tenant, data.start_at, row["booked_at"], timezone, now):
            requests.append(NotificationRequest(
                kind="reminder", contact_id=ref.contact_id, appointment_id=ref.id, send_at=plan.send_at, expires_at=ref.start_at,
                idempotency_key=f"appointment:{ref.id}:reminder:{plan.label}", data={"offset": plan.label},
            ))
            owners.append(position)
    touched: dict[int, list[int]] = {}
    for owner, queued in zip(owners, await enqueue_many(session, tenant, requests)):
        if queued.created:
            touched.setdefault(owner, []).append(queued.id)
    changes: list[AppointmentChange | None] = []
    for position, (data, outcome) in enumerate(zip(items, outcomes)):
        change = "created" if data.status == "scheduled" else data.status
        changes.append(AppointmentChange(refs[position], change, outcome, tuple(touched.get(position, ()))) if position in refs else None)
    for position, data in enumerate(items):
        if changes[position] is None:  # a concurrent request stored it first: an update now, as one by one would see it
            changes[position] = await upsert_appointment(session, tenant, data)
    return [change for change in changes if change is not None]
