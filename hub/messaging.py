"""Processors for the inbox's message events: inbound messages and delivery statuses.

They run inside the inbox worker's unit of work and register the hooks to fire
once it is committed, so a plugin never sees a message that was rolled back.
Responders are not called here: a committed inbound message is handed to the
`ResponderRunner` (hub/responding.py), which answers outside the inbox lanes.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from hub.contacts import link, set_opt_out
from hub.events import DeliveryStatus, DeliveryStatusEvent, InboundMessage, InboxEvent, OptOutEvent, ReceivedMessage
from hub import outbox
from hub.inbox import Processor
from hub.models import Conversation, Message, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.outbound_webhooks import emit_report
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from hub.core import Hub

# A status only moves forward: a late "delivered" never undoes "read".
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "undelivered": 3,
    "failed": 3,
    "delivered": 4,
    "read": 5,
}




def moves_forward(current: str | None, new: str) -> bool:
    """Whether a reported status should replace the current one."""
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current or "", -1)


async def conversation_for(session: AsyncSession, tenant_id: int, contact_id: int, medium: str, channel: str) -> Conversation:
    """The contact's conversation on this medium, created on first use."""
    row = await session.scalar(
        select(Conversation).where(
            Conversation.tenant_id == tenant_id, Conversation.contact_id == contact_id, Conversation.medium == medium
        )
    )
    if row is None:
        row = Conversation(tenant_id=tenant_id, contact_id=contact_id, medium=medium, channel=channel)
        session.add(row)
        await session.flush()
    return row


OPT_OUT_CONFIRMATION = "opt_out_confirmation"
"""The one message an address gets after opting out of a medium (the dispatcher lets it through, briefly)."""
OPT_OUT_CONFIRMATION_WINDOW = dt.timedelta(hours=1)


def confirms_opt_out(kind: str, opted_out_at: str, now: dt.datetime) -> bool:
    """Whether a notification may still reach an address that opted out: only its confirmation, within the hour."""
    if kind != OPT_OUT_CONFIRMATION:
        return False
    try:
        since = dt.datetime.fromisoformat(opted_out_at)
    except (TypeError, ValueError):
        return False
    return now - since <= OPT_OUT_CONFIRMATION_WINDOW


async def queue_opt_out_confirmation(hub: Hub, uow: UnitOfWork, tenant: str, event: OptOutEvent) -> None:
    """Queue the confirmation of an opt-out just applied, on that medium only, in the same transaction."""
    await hub.queue_notification(uow, tenant=tenant, request=NotificationRequest(
        kind=OPT_OUT_CONFIRMATION, template="opt_out", address=event.address,
        channel_order=(event.medium,), expires_at=utcnow() + OPT_OUT_CONFIRMATION_WINDOW,
        idempotency_key=f"opt-out:{event.address_kind}:{event.address}:{event.medium}:{utcnow().isoformat()}",
    ))


def message_processors(hub: Hub) -> dict[str, Processor]:
    """The inbox processors this module provides, keyed by event kind."""

    async def received(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, InboundMessage)
        session = uow.session
        tenant = await hub.tenants.get(event.tenant)
        linked = [(kind, address) for kind, address in event.linked_addresses]
        outcome = await link(
            session, tenant, [(event.sender_kind, event.sender), *linked], profile={"name": event.profile_name},
            reason=f"{event.channel} says these are one account", certain=bool(linked),
        )
        conversation = await conversation_for(session, tenant.id, outcome.contact.id, event.medium, event.channel)
        received_at = event.received_at or utcnow()
        conversation.last_inbound_at = received_at
        conversation.channel = event.channel
        message = Message(
            tenant_id=tenant.id,
            conversation_id=conversation.id,
            direction="in",
            channel=event.channel,
            address=outcome.identities[0].value,
            body=event.body,
            media=list(event.media),
            provider_id=event.provider_id,
            status="received",
            status_history=[{"status": "received", "at": received_at.isoformat()}],
        )
        session.add(message)
        await session.flush()
        view = ReceivedMessage(
            tenant=tenant.slug,
            contact_id=outcome.contact.id,
            conversation_id=conversation.id,
            message_id=message.id,
            medium=event.medium,
            channel=event.channel,
            address=outcome.identities[0].value,
            body=event.body,
            media=list(event.media),
            profile_name=event.profile_name,
            address_kind=outcome.identities[0].kind,
        )
        hub.announce_link(uow, outcome)
        uow.after_commit("on_message_received", partial(hub.call, "on_message_received", hub=hub, message=view))
        conversation_id = conversation.id
        uow.after_commit("answer conversation", partial(hub.responders.schedule, conversation_id))

    async def status(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, DeliveryStatusEvent)
        session = uow.session
        tenant = await hub.tenants.get(event.tenant)
        message = await session.scalar(
            select(Message).where(
                Message.tenant_id == tenant.id, Message.channel == event.channel, Message.provider_id == event.provider_id
            )
        )
        if message is None:
            # A status for a message this hub did not record (sent by another system): nothing to apply.
            return
        if not moves_forward(message.status, event.status):
            return
        reported_at = event.reported_at or utcnow()
        message.status = event.status
        message.status_history = [*message.status_history, {"status": event.status, "at": reported_at.isoformat()}]
        contact_id: int | None = None
        if message.notification_id is not None:
            notification = await session.get(Notification, message.notification_id)
            if notification is not None:
                contact_id = notification.contact_id
            latest = await session.scalar(select(func.max(Message.id)).where(Message.notification_id == message.notification_id))
            # Only the notification's latest message speaks for it: an older one went out for an earlier time.
            if notification is not None and latest == message.id:
                # True when the provider could not deliver it and the outbox handed it to the next channel.
                before = notification.status
                handed_on = outbox.report(
                    session, notification, provider_status=event.status, channel=event.channel, provider_id=event.provider_id,
                    at=reported_at, reason=" ".join(filter(None, [event.error_code, event.error_message])) or None,
                )
                await emit_report(session, tenant, notification, before)  # issue 12: the tenant's webhooks
                if handed_on:
                    hub.wake_dispatcher(uow)
        view = DeliveryStatus(
            tenant=tenant.slug,
            channel=event.channel,
            provider_id=event.provider_id,
            status=event.status,
            message_id=message.id,
            notification_id=message.notification_id,
            error_code=event.error_code,
            error_message=event.error_message,
            contact_id=contact_id,
        )

        uow.after_commit("on_delivery_status", partial(hub.call, "on_delivery_status", hub=hub, status=view))

    async def opt_out(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, OptOutEvent)
        tenant = await hub.tenants.get(event.tenant)
        changed = await set_opt_out(uow.session, tenant, event.address_kind, event.address, event.medium, event.opted_out)
        if changed and event.opted_out and event.confirm:
            await queue_opt_out_confirmation(hub, uow, tenant.slug, event)

    return {InboundMessage.kind: received, DeliveryStatusEvent.kind: status, OptOutEvent.kind: opt_out}


