"""Outbound webhooks: signed copies of hub events sent to the tenant's own systems, through the outbox.

A subscription is a URL, the events it wants (`appointment.*`,
`notification.failed`...) and a signing secret (stored encrypted). Each
subscription has its own endpoint contact with one identity of kind
"webhook" (its id), so a delivery is an ordinary outbox notification of
kind "webhook" on the "webhook" channel: the outbox owns its status, the
dispatcher retries it with backoff up to the tenant's `max_attempts`, and
one that runs out of tries ends `failed` (the dead letter), which the
console replays. Events are queued in the same transaction as the change
they report (appointments, dispatch outcomes, provider reports), so a
committed change always has its deliveries queued.

The signature: `Hub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the secret>`; see docs/operations.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import Contact, Identity, WebhookSubscription, utcnow
from hub.notifications import NotificationRequest
from hub.outbox import enqueue
from hub.tenants import TenantInfo

if TYPE_CHECKING:
    from hub.secret_keys import Keyring

KIND = "webhook"
"""The notification kind, identity kind and channel name of outbound webhooks."""
EVENTS = (
    "appointment.created", "appointment.updated", "appointment.rescheduled", "appointment.reinstated",
    "appointment.canceled", "appointment.no_show",
    "notification.sent", "notification.delivered", "notification.read", "notification.failed",
    "contact.merged", "conversation.handed_off",
)
SECRET_CONTEXT = "webhook_subscription"
SIGNATURE_HEADER = "Hub-Signature"
ID_HEADER = "Hub-Webhook-Id"
EVENT_HEADER = "Hub-Event"


class SubscriptionError(ValueError):
    """A subscription that cannot be made as asked; the message names the field."""


@dataclass(frozen=True)
class NewSubscription:
    """A subscription just made, with its secret (shown this once)."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """Validated event patterns: known names, `family.*`, or `*`; raises SubscriptionError."""
    if not patterns:
        raise SubscriptionError("events: give at least one (e.g. appointment.* or notification.failed)")
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(event, pattern) for event in EVENTS):
            raise SubscriptionError(f"events: {pattern!r} matches no event (known: {', '.join(EVENTS)})")
    return tuple(dict.fromkeys(patterns))


def check_url(url: str) -> str:
    """An http(s) URL with a host; raises SubscriptionError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubscriptionError("url: an http:// or https:// URL with a host")
    return url.strip()


def wants(patterns: Sequence[str], event: str) -> bool:
    """Whether a subscription's patterns take this event."""
    return any(fnmatch.fnmatchcase(event, pattern) for pattern in patterns)


async def subscribe(session: AsyncSession, keyring: Keyring, tenant: TenantInfo, url: str, events: Sequence[str]) -> NewSubscription:
    """Store a subscription and its endpoint contact (never commits); the secret is returned once."""
    url = check_url(url)
    patterns = check_patterns(events)
    secret = "whsec_" + secrets.token_urlsafe(32)
    contact = Contact(tenant_id=tenant.id, name=None, attributes={"webhook_endpoint": True})
    session.add(contact)
    await session.flush()
    row = WebhookSubscription(
        tenant_id=tenant.id, url=url, events=list(patterns), secret=keyring.encrypt(secret, SECRET_CONTEXT),
        contact_id=contact.id, created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    session.add(Identity(tenant_id=tenant.id, contact_id=contact.id, kind=KIND, value=str(row.id), match_key=str(row.id), opted_out={}))
    await session.flush()
    return NewSubscription(row.id, url, patterns, secret)


async def subscriptions(session: AsyncSession, tenant_ids: Sequence[int]) -> list[WebhookSubscription]:
    """Active subscriptions of these tenants."""
    if not tenant_ids:
        return []
    rows = await session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.tenant_id.in_(list(tenant_ids)), WebhookSubscription.disabled_at.is_(None))
        .order_by(WebhookSubscription.id)
    )
    return list(rows)


async def emit(session: AsyncSession, tenant: TenantInfo, event: str, data: dict[str, Any], *, found: Sequence[WebhookSubscription] | None = None) -> list[int]:
    """Queue one delivery of `event` per subscription that wants it, in the caller's transaction; the notification ids."""
    rows = found if found is not None else await subscriptions(session, [tenant.id])
    queued = []
    for row in rows:
        if row.tenant_id != tenant.id or not wants(row.events, event):
            continue
        delivery = str(uuid.uuid4())
        envelope = {"id": delivery, "type": event, "created_at": utcnow().isoformat(), "tenant": tenant.slug, "data": data}
        result = await enqueue(session, tenant, NotificationRequest(
            kind=KIND, contact_id=row.contact_id, template=KIND, channel_order=(KIND,),
            data={"event": event, "envelope": envelope, "subscription_id": row.id},
        ))
        queued.append(result.id)
    return queued


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Hub-Signature` header value for a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Check a `Hub-Signature` header as a receiver does (constant-time, timestamp within `tolerance` seconds)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def appointment_data(appointment: Any, change: str) -> dict[str, Any]:
    """The `data` of an appointment.* event: the appointment as the API shows it (ids, no addresses)."""
    return {
        "change": change,
        "appointment": {
            "id": appointment.id, "source": appointment.source, "external_id": appointment.external_id,
            "status": appointment.status, "start": appointment.start_at.isoformat(),
            "end": appointment.end_at.isoformat() if appointment.end_at else None,
            "service": appointment.service, "location": appointment.location, "contact_id": appointment.contact_id,
        },
    }


def notification_data(row: Any, status: str, error: str | None) -> dict[str, Any]:
    """The `data` of a notification.* event (ids and outcome, no message body or address)."""
    return {
        "notification": {
            "id": row.id, "kind": row.kind, "status": status, "channel": row.channel, "contact_id": row.contact_id,
            "appointment_id": row.appointment_id, "error": error,
        },
    }



_OUTCOME_EVENTS = {"sent": "notification.sent", "sandboxed": "notification.sent", "failed": "notification.failed"}
_REPORT_EVENTS = {"delivered": "notification.delivered", "read": "notification.read", "failed": "notification.failed"}


async def emit_outcomes(session: AsyncSession, tenants: Any, verdicts: Sequence[Any]) -> None:
    """notification.sent / .failed for a dispatch batch's verdicts, in the batch's own transaction."""
    chosen = [v for v in verdicts if v.status in _OUTCOME_EVENTS and v.row.kind != KIND]
    if not chosen:
        return
    found = await subscriptions(session, sorted({v.row.tenant_id for v in chosen}))
    if not found:
        return
    for verdict in chosen:
        tenant = await tenants.by_id(verdict.row.tenant_id)
        data = notification_data(verdict.row, str(verdict.status), verdict.reason)
        data["notification"]["channel"] = verdict.channel or verdict.row.channel
        await emit(session, tenant, _OUTCOME_EVENTS[verdict.status], data, found=found)


async def emit_report(session: AsyncSession, tenant: TenantInfo, notification: Any, before: str) -> None:
    """notification.delivered / .read / .failed when a provider's report moved a notification there."""
    if notification.kind == KIND or notification.status == before or notification.status not in _REPORT_EVENTS:
        return
    await emit(session, tenant, _REPORT_EVENTS[notification.status], notification_data(notification, notification.status, notification.last_error))
