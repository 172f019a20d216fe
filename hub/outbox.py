"""The outbox: notifications the hub has promised to send.

`enqueue` writes one `notifications` row inside the caller's transaction,
so a notification exists exactly when the change that caused it was
committed. An idempotency key makes a second enqueue of the same thing
return the first row instead of a new message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.contacts import LinkOutcome, link
from hub.models import Notification, utcnow
from hub.phones import WHATSAPP_ID, is_whatsapp_id
from hub.tenants import TenantInfo

WAKE_CHANNEL = "hub_outbox"
FINAL_STATUSES = frozenset({"sent", "delivered", "read", "failed", "expired", "canceled", "sandboxed"})
STATUSES = ("pending", "sending", *sorted(FINAL_STATUSES))


@dataclass(frozen=True)
class NotificationRequest:
    """What to send: to a contact (or an address, linked to its contact), when, and how."""

    kind: str
    contact_id: int | None = None
    address: str | None = None
    """"+34600123456", "whatsapp:+34600123456" or "ana@example.com" when there is no contact id."""
    data: dict[str, Any] = field(default_factory=dict)
    send_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    channel_order: tuple[str, ...] = ()
    """Mediums or channel names; empty means the tenant's order."""
    idempotency_key: str | None = None
    template: str | None = None
    appointment_id: int | None = None
    locale: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """The outbox row for a request, and whether this call created it."""

    id: int
    status: str
    created: bool
    link: LinkOutcome | None = None


def address_identity(address: str) -> tuple[str, str]:
    """(identity kind, raw value) for an address as callers write it."""
    raw = address.strip()
    if is_whatsapp_id(raw):  # `whatsapp:US.1349...`: a WhatsApp user who hides their number
        return WHATSAPP_ID, raw
    return ("email", raw) if "@" in raw else ("phone", raw)


def history_entry(status: str, at: dt.datetime, reason: str | None = None) -> dict[str, Any]:
    """One timestamped status change, as stored in `status_history`."""
    entry: dict[str, Any] = {"status": status, "at": at.isoformat()}
    if reason:
        entry["reason"] = reason
    return entry


async def enqueue(session: AsyncSession, tenant: TenantInfo, request: NotificationRequest) -> Enqueued:
    """Write the outbox row (or find the one with the same idempotency key); never commits."""
    if request.idempotency_key:
        existing = await _by_key(session, tenant.id, request.idempotency_key)
        if existing is not None:
            return Enqueued(existing.id, existing.status, False)
    outcome = None
    contact_id = request.contact_id
    if contact_id is None:
        if not request.address:
            raise ValueError("a notification needs a contact_id or an address")
        outcome = await link(session, tenant, [address_identity(request.address)], reason="notification")
        contact_id = outcome.contact.id
    now = utcnow()
    due = request.send_at or now
    values = {
        "tenant_id": tenant.id,
        "contact_id": contact_id,
        "appointment_id": request.appointment_id,
        "address": request.address,
        "kind": request.kind,
        "template": request.template or request.kind,
        "data": request.data,
        "locale": request.locale,
        "channel_order": list(request.channel_order),
        "idempotency_key": request.idempotency_key,
        "status": "pending",
        "status_history": [history_entry("pending", now)],
        "due_at": due,
        "expires_at": request.expires_at,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.bind.dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(Notification)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
    new_id = await session.scalar(statement.returning(Notification.id))
    if new_id is None:  # a concurrent request with the same key won the insert
        existing = await _by_key(session, tenant.id, request.idempotency_key or "")
        assert existing is not None
        return Enqueued(existing.id, existing.status, False)
    if dialect == "postgresql" and due <= now + dt.timedelta(seconds=1):
        # Delivered to listening workers when this transaction commits, not before.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})
    return Enqueued(int(new_id), "pending", True, outcome)


async def _by_key(session: AsyncSession, tenant_id: int, key: str) -> Notification | None:
    return await session.scalar(
        select(Notification).where(Notification.tenant_id == tenant_id, Notification.idempotency_key == key)
    )
