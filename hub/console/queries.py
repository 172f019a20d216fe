"""Read functions the console's pages need and the API has none for: today's work, a contact's timeline, rates.

Every function takes the tenant and filters on it: a page never shows, nor
reveals the existence of, another tenant's rows. Contact lookup by address
uses the same `find_contact` as the API.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.contacts import find_contact
from hub.models import (
    Appointment,
    Contact,
    ContactMerge,
    Conversation,
    DeliveryAttempt,
    Identity,
    InboxEventRow,
    Message,
    Notification,
    utcnow,
)
from hub.outbox import NotificationStatus
from hub.phones import InvalidAddress
from hub.tenants import TenantInfo

SUCCESS = (NotificationStatus.SENT, NotificationStatus.SANDBOXED, NotificationStatus.DELIVERED, NotificationStatus.READ)
WEBHOOK_KIND = "webhook"
"""The identity kind of outbound webhook endpoints (hub.webhooks): not people, left out of contact search."""
_PHONE_LIKE = re.compile(r"[\d\s()+\-./]+")


def local_day(tenant: TenantInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Start and end (UTC) of the tenant's current local day."""
    zone = ZoneInfo(tenant.timezone)
    local = now.astimezone(zone)
    start = dt.datetime.combine(local.date(), dt.time(0), zone)
    end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


@dataclass(frozen=True)
class ChannelRate:
    """Outcomes of one channel's notifications over a period."""

    channel: str
    succeeded: int
    failed: int

    @property
    def total(self) -> int:
        """Notifications that ended one way or the other."""
        return self.succeeded + self.failed

    @property
    def percent(self) -> int:
        """Share that went out, 0-100."""
        return round(100 * self.succeeded / self.total) if self.total else 0


@dataclass
class Today:
    """What the front desk looks at first."""

    appointments: list[tuple[Appointment, str | None]]
    due_soon: list[tuple[Notification, str | None]]
    rates: list[ChannelRate]
    failures: list[tuple[Notification, str | None]]
    failed_events: int


async def today(session: AsyncSession, tenant: TenantInfo, *, now: dt.datetime | None = None, hours: int = 6) -> Today:
    """Appointments of the local day, reminders due in the next `hours`, 7-day delivery rates, failures."""
    now = now or utcnow()
    start, end = local_day(tenant, now)
    appointments = (
        await session.execute(
            select(Appointment, Contact.name)
            .outerjoin(Contact, Contact.id == Appointment.contact_id)
            .where(Appointment.tenant_id == tenant.id, Appointment.start_at >= start, Appointment.start_at < end)
            .order_by(Appointment.start_at)
        )
    ).all()
    due_soon = (
        await session.execute(
            select(Notification, Contact.name)
            .outerjoin(Contact, Contact.id == Notification.contact_id)
            .where(
                Notification.tenant_id == tenant.id, Notification.status == NotificationStatus.PENDING,
                Notification.due_at <= now + dt.timedelta(hours=hours),
            )
            .order_by(Notification.due_at)
            .limit(50)
        )
    ).all()
    failures = (
        await session.execute(
            select(Notification, Contact.name)
            .outerjoin(Contact, Contact.id == Notification.contact_id)
            .where(
                Notification.tenant_id == tenant.id, Notification.status == NotificationStatus.FAILED,
                Notification.updated_at >= now - dt.timedelta(days=7),
            )
            .order_by(Notification.updated_at.desc())
            .limit(20)
        )
    ).all()
    failed_events = await session.scalar(
        select(func.count()).select_from(InboxEventRow).where(InboxEventRow.tenant_id == tenant.id, InboxEventRow.failed_at.is_not(None))
    )
    return Today(
        [(a, n) for a, n in appointments], [(x, n) for x, n in due_soon], await delivery_rates(session, tenant, since=now - dt.timedelta(days=7)),
        [(x, n) for x, n in failures], int(failed_events or 0),
    )


async def delivery_rates(session: AsyncSession, tenant: TenantInfo, *, since: dt.datetime) -> list[ChannelRate]:
    """Per channel: notifications created since `since` that went out, and those that failed."""
    rows = await session.execute(
        select(Notification.channel, Notification.status, func.count())
        .where(
            Notification.tenant_id == tenant.id, Notification.created_at >= since,
            Notification.status.in_([*SUCCESS, NotificationStatus.FAILED]),
        )
        .group_by(Notification.channel, Notification.status)
    )
    counts: dict[str, list[int]] = {}
    for channel, status, count in rows:
        # A notification no channel could take has none: it counts under "no channel".
        pair = counts.setdefault(channel or "no channel", [0, 0])
        pair[0 if status in SUCCESS else 1] += int(count)
    return [ChannelRate(channel, ok, bad) for channel, (ok, bad) in sorted(counts.items())]


@dataclass(frozen=True)
class Search:
    """Contacts found for a query, and a problem with the query to show (e.g. an unreadable number)."""

    contacts: list[Contact]
    how: str = ""
    problem: str = ""


async def search_contacts(session: AsyncSession, tenant: TenantInfo, query: str) -> Search:
    """By email, by phone in any format (read with the tenant's region, as the API does), else by name."""
    text = query.strip()
    if not text:
        return Search([])
    if "@" in text or (_PHONE_LIKE.fullmatch(text) and sum(c.isdigit() for c in text) >= 5):
        kind = "email" if "@" in text else "phone"
        try:
            contact = await find_contact(session, tenant, kind, text)
        except InvalidAddress as exc:
            return Search([], kind, f"{kind}: {exc.reason}")
        return Search([contact] if contact else [], kind)
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await session.scalars(
        select(Contact)
        .where(Contact.tenant_id == tenant.id, Contact.merged_into_id.is_(None), Contact.name.ilike(pattern, escape="\\"))
        .order_by(Contact.name)
        .limit(50)
    )
    return Search(list(rows), "name")


async def recent_contacts(session: AsyncSession, tenant: TenantInfo, limit: int = 20) -> list[Contact]:
    """The tenant's most recently changed people (webhook endpoints left out)."""
    endpoints = select(Identity.contact_id).where(Identity.tenant_id == tenant.id, Identity.kind == WEBHOOK_KIND)
    rows = await session.scalars(
        select(Contact)
        .where(Contact.tenant_id == tenant.id, Contact.merged_into_id.is_(None), Contact.id.not_in(endpoints))
        .order_by(Contact.updated_at.desc())
        .limit(limit)
    )
    return list(rows)


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened with a contact, on any channel."""

    at: dt.datetime
    what: str
    """"message-in", "message-out", "notification" or "appointment"."""
    title: str
    detail: str = ""
    status: str = ""
    channel: str = ""
    link_id: int | None = None
    attempts: tuple[DeliveryAttempt, ...] = ()


@dataclass
class ContactPage:
    """A contact with everything the console shows about them."""

    contact: Contact
    identities: list[Identity]
    merges: list[ContactMerge]
    timeline: list[TimelineEntry] = field(default_factory=list)
    proposals: list[tuple[Any, str | None, str | None]] = field(default_factory=list)


async def contact_page(session: AsyncSession, tenant: TenantInfo, contact_id: int) -> ContactPage | None:
    """One of the tenant's contacts with identities, merge history and timeline; None if not the tenant's."""
    contact = await session.scalar(select(Contact).where(Contact.id == contact_id, Contact.tenant_id == tenant.id))
    if contact is None:
        return None
    identities = list(await session.scalars(select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id)))
    merges = list(
        await session.scalars(
            select(ContactMerge)
            .where(ContactMerge.tenant_id == tenant.id, or_(ContactMerge.kept_contact_id == contact.id, ContactMerge.merged_contact_id == contact.id))
            .order_by(ContactMerge.created_at.desc())
        )
    )
    page = ContactPage(contact, identities, merges, proposals=await open_proposals(session, tenant, contact.id))
    for appointment in await session.scalars(select(Appointment).where(Appointment.contact_id == contact.id)):
        page.timeline.append(TimelineEntry(
            appointment.start_at, "appointment", appointment.service or "Appointment",
            detail=appointment.location or "", status=appointment.status, link_id=appointment.id,
        ))
    notifications = list(await session.scalars(select(Notification).where(Notification.contact_id == contact.id)))
    attempts: dict[int, list[DeliveryAttempt]] = {}
    if notifications:
        for attempt in await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.notification_id.in_([n.id for n in notifications])).order_by(DeliveryAttempt.id)
        ):
            attempts.setdefault(attempt.notification_id, []).append(attempt)
    for notification in notifications:
        page.timeline.append(TimelineEntry(
            notification.sent_at or notification.due_at, "notification", notification.kind, detail=notification.last_error or "",
            status=notification.status, channel=notification.channel or "", link_id=notification.id,
            attempts=tuple(attempts.get(notification.id, ())),
        ))
    messages = await session.execute(
        select(Message, Conversation.medium)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.contact_id == contact.id, Message.tenant_id == tenant.id)
        .order_by(Message.id.desc())
        .limit(200)
    )
    for message, medium in messages:
        page.timeline.append(TimelineEntry(
            message.created_at, f"message-{message.direction}", f"{'From' if message.direction == 'in' else 'To'} {medium}",
            detail=message.body, status=message.status, channel=message.channel, link_id=message.notification_id,
        ))
    page.timeline.sort(key=lambda entry: entry.at, reverse=True)
    return page


@dataclass(frozen=True)
class OutboxFilter:
    """The outbox page's filters (empty means any)."""

    status: str = ""
    kind: str = ""
    channel: str = ""


async def outbox_rows(session: AsyncSession, tenant: TenantInfo, chosen: OutboxFilter, limit: int = 100) -> list[tuple[Notification, str | None]]:
    """The tenant's newest notifications matching the filters, with the contact's name."""
    query = (
        select(Notification, Contact.name)
        .outerjoin(Contact, Contact.id == Notification.contact_id)
        .where(Notification.tenant_id == tenant.id)
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    if chosen.status:
        query = query.where(Notification.status == chosen.status)
    if chosen.kind:
        query = query.where(Notification.kind == chosen.kind)
    if chosen.channel:
        query = query.where(Notification.channel == chosen.channel)
    return [(n, name) for n, name in (await session.execute(query)).all()]


async def outbox_kinds(session: AsyncSession, tenant: TenantInfo) -> list[str]:
    """The notification kinds this tenant has, for the filter."""
    return sorted(await session.scalars(select(Notification.kind).where(Notification.tenant_id == tenant.id).distinct()))


async def notification_detail(session: AsyncSession, tenant: TenantInfo, notification_id: int) -> tuple[Notification, list[DeliveryAttempt]] | None:
    """One of the tenant's notifications with every attempt; None if not the tenant's."""
    row = await session.scalar(select(Notification).where(Notification.id == notification_id, Notification.tenant_id == tenant.id))
    if row is None:
        return None
    attempts = list(await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == row.id).order_by(DeliveryAttempt.id)))
    return row, attempts


def sample_context(tenant: TenantInfo, now: dt.datetime) -> dict[str, Any]:
    """Made-up data to preview a tenant's templates with (tomorrow at 10:30 local time)."""
    zone = ZoneInfo(tenant.timezone)
    start = dt.datetime.combine(now.astimezone(zone).date() + dt.timedelta(days=1), dt.time(10, 30), zone)
    return {
        "reason": None,
        "text": "Sample message text.",
        "contact": {"name": "Ana García", "id": 0},
        "tenant": {"name": tenant.name, "slug": tenant.slug},
        "appointment": {
            "id": 0, "external_id": "sample", "start": start.isoformat(), "end": (start + dt.timedelta(minutes=30)).isoformat(),
            "service": "Check-up", "location": "Main street 1", "timezone": tenant.timezone, "status": "scheduled",
            "cancel_url": "https://example.com/cancel", "reschedule_url": "https://example.com/reschedule", "sequence": 0,
        },
    }


async def webhook_deliveries(session: AsyncSession, tenant: TenantInfo, limit: int = 50) -> tuple[list[Any], list[Notification]]:
    """The tenant's outbound webhook subscriptions and latest deliveries (dead letters are the failed ones)."""
    from hub.models import WebhookSubscription

    subscriptions = list(
        await session.scalars(select(WebhookSubscription).where(WebhookSubscription.tenant_id == tenant.id).order_by(WebhookSubscription.id))
    )
    deliveries = list(
        await session.scalars(
            select(Notification).where(Notification.tenant_id == tenant.id, Notification.kind == WEBHOOK_KIND).order_by(Notification.id.desc()).limit(limit)
        )
    )
    return subscriptions, deliveries


async def open_proposals(session: AsyncSession, tenant: TenantInfo, contact_id: int | None = None, limit: int = 50) -> list[tuple[Any, str | None, str | None]]:
    """Open merge proposals (all, or those naming one contact), with both contacts' names."""
    from sqlalchemy.orm import aliased

    from hub.merges import PROPOSAL_OPEN
    from hub.models import MergeProposal

    first, second = aliased(Contact), aliased(Contact)
    query = (
        select(MergeProposal, first.name, second.name)
        .join(first, first.id == MergeProposal.contact_id)
        .join(second, second.id == MergeProposal.other_contact_id)
        .where(MergeProposal.tenant_id == tenant.id, MergeProposal.status == PROPOSAL_OPEN)
        .order_by(MergeProposal.id)
        .limit(limit)
    )
    if contact_id is not None:
        query = query.where(or_(MergeProposal.contact_id == contact_id, MergeProposal.other_contact_id == contact_id))
    return [(p, a, b) for p, a, b in (await session.execute(query)).all()]
