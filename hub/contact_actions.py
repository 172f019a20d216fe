"""Small contact use cases the port offers integrations: link evidence, record a message sent elsewhere, cancel a notification.

Each function takes the caller's unit of work (it flushes, never commits)
and registers the effects of what it did, as the core's other use cases do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub import outbox
from hub.contacts import find_contact, identity_key, link
from hub.errors import UnknownContact
from hub.messaging import conversation_for
from hub.models import Contact, Conversation, Message, Notification, utcnow
from hub.phones import InvalidAddress
from hub.tenants import TenantInfo
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from hub.core import Hub


async def find_contact_id(uow: UnitOfWork, tenant: TenantInfo, kind: str, address: str) -> int | None:
    """The id of the contact owning this address, or None (also for an address that does not parse)."""
    try:
        contact = await find_contact(uow.session, tenant, kind, address)
    except InvalidAddress:
        return None
    return contact.id if contact is not None else None


async def link_identities(
    hub: Hub, uow: UnitOfWork, tenant: TenantInfo, addresses: Sequence[tuple[str, str]], *, name: str | None, reason: str
) -> int:
    """Link (kind, raw address) evidence of one person to one contact; addresses that do not parse are left out.

    Returns the contact id. Raises ValueError when no address is usable.
    """
    usable: list[tuple[str, str]] = []
    for kind, raw in addresses:
        try:
            identity_key(kind, raw, tenant.default_region)
        except InvalidAddress:
            continue
        usable.append((kind, raw))
    if not usable:
        raise ValueError("no usable address to link")
    outcome = await link(uow.session, tenant, usable, profile={"name": name} if name else None, reason=reason)
    hub.announce_link(uow, outcome)
    return outcome.contact.id


async def record_outbound(
    uow: UnitOfWork, tenant: TenantInfo, *, contact_id: int, medium: str, channel: str, body: str, provider_id: str,
    sent_at: dt.datetime | None,
) -> int | None:
    """Record a message a person sent to the contact from another system; returns its conversation's id, None if (channel, provider_id) is known."""
    session = uow.session
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.tenant_id != tenant.id:
        raise UnknownContact(f"no contact {contact_id} in tenant {tenant.slug!r}")
    known = await session.scalar(select(Message.id).where(Message.channel == channel, Message.provider_id == provider_id))
    if known is not None:
        return None
    at = sent_at or utcnow()
    conversation = await conversation_for(session, tenant.id, contact.merged_into_id or contact.id, medium, channel)
    conversation.last_outbound_at = at
    session.add(Message(
        tenant_id=tenant.id, conversation_id=conversation.id, direction="out", channel=channel, body=body, media=[],
        provider_id=provider_id, status="sent", status_history=[{"status": "sent", "at": at.isoformat()}], created_at=at,
    ))
    await session.flush()
    return conversation.id


async def find_conversation_id(uow: UnitOfWork, tenant: TenantInfo, contact_id: int, medium: str) -> int | None:
    """The id of the contact's (or the contact it was merged into) conversation on a medium, or None."""
    contact = await uow.session.get(Contact, contact_id)
    if contact is None or contact.tenant_id != tenant.id:
        return None
    return await uow.session.scalar(
        select(Conversation.id).where(
            Conversation.tenant_id == tenant.id, Conversation.contact_id == (contact.merged_into_id or contact.id),
            Conversation.medium == medium,
        )
    )


async def cancel_notification(uow: UnitOfWork, tenant: TenantInfo, notification_id: int, *, reason: str) -> bool:
    """Cancel one pending notification of the tenant; False when it is not pending (already sent, canceled...)."""
    row = await uow.session.get(Notification, notification_id)
    if row is None or row.tenant_id != tenant.id:
        raise UnknownContact(f"no notification {notification_id} in tenant {tenant.slug!r}")
    canceled = outbox.cancel(row, reason)
    await uow.session.flush()
    return canceled
