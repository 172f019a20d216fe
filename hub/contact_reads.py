"""Reading one contact's view (hub/contact_view.py) in one session, filtered on the tenant.

No ORM row leaves this module: agent-facing integrations get the frozen
dataclasses of hub/contact_view.py through the port's `contact_view`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.contact_view import ContactView, IdentityView, MessageView, NotificationView
from hub.events import AppointmentRef
from hub.errors import UnknownContact
from hub.models import Appointment, Contact, Conversation, DeliveryAttempt, Identity, Message, Notification
from hub.tenants import TenantInfo

TIMELINE_LIMIT = 50
NOTIFICATION_LIMIT = 50


async def load_contact_view(session: AsyncSession, tenant: TenantInfo, contact_id: int) -> ContactView:
    """Read one contact's view; raises UnknownContact for an id of another tenant or a merged contact."""
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.tenant_id != tenant.id:
        raise UnknownContact(f"no contact {contact_id} in tenant {tenant.slug!r}")
    if contact.merged_into_id is not None:
        return await load_contact_view(session, tenant, contact.merged_into_id)
    identities = (await session.scalars(select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id))).all()
    appointments = (
        await session.scalars(select(Appointment).where(Appointment.contact_id == contact.id).order_by(Appointment.start_at))
    ).all()
    notifications = (
        await session.scalars(
            select(Notification)
            .where(Notification.contact_id == contact.id)
            .order_by(Notification.due_at.desc(), Notification.id.desc())
            .limit(NOTIFICATION_LIMIT)
        )
    ).all()
    tries: dict[int, int] = {}
    if notifications:
        for notification_id in (
            await session.scalars(
                select(DeliveryAttempt.notification_id).where(DeliveryAttempt.notification_id.in_([n.id for n in notifications]))
            )
        ).all():
            tries[notification_id] = tries.get(notification_id, 0) + 1
    messages = (
        await session.execute(
            select(Message, Conversation.medium)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.contact_id == contact.id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(TIMELINE_LIMIT)
        )
    ).all()
    return ContactView(
        id=contact.id,
        tenant=tenant.slug,
        name=contact.name,
        locale=contact.locale,
        timezone=contact.timezone,
        identities=tuple(IdentityView(i.kind, i.value, tuple(sorted(i.opted_out or {}))) for i in identities),
        appointments=tuple(
            AppointmentRef(
                a.id, tenant.slug, contact.id, a.source, a.external_id, a.start_at, a.end_at, a.timezone, a.status,
                a.service, a.location,
            )
            for a in appointments
        ),
        notifications=tuple(
            NotificationView(
                n.id, n.kind, n.template, n.status, n.due_at, n.sent_at, tries.get(n.id, 0), n.channel, n.last_error,
                n.appointment_id, dict(n.data or {}),
            )
            for n in notifications
        ),
        timeline=tuple(
            MessageView(m.id, m.direction, medium, m.channel, m.body, m.status, m.created_at, m.notification_id)
            for m, medium in messages
        ),
    )
