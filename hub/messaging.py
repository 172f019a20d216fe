"""Processors for the inbox's message events: inbound messages and delivery statuses.

They run inside the inbox worker's transaction and return the hooks to fire
once it is committed, so a plugin never sees a message that was rolled back.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.contacts import link, set_opt_out
from hub.events import (
    Conversation as ConversationView,
)
from hub.events import DeliveryStatus, DeliveryStatusEvent, InboundMessage, InboxEvent, OptOutEvent, ReceivedMessage
from hub.inbox import AfterCommit, Processor
from hub.models import Conversation, DeliveryAttempt, Message, Notification, utcnow
from hub.outbox import NotificationRequest
from hub.responders import Reply

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


REPLY_EXPIRY = dt.timedelta(hours=1)

# How a provider's message status shows on the notification it delivered.
NOTIFICATION_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed"}
NOTIFICATION_RANK_ALIAS = {"sandboxed": "sent", "sending": "sending", "pending": "queued"}


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


def message_processors(hub: Hub) -> dict[str, Processor]:
    """The inbox processors this module provides, keyed by event kind."""

    async def received(session: AsyncSession, event: InboxEvent) -> list[AfterCommit]:
        assert isinstance(event, InboundMessage)
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
        thread = ConversationView(
            conversation.id, tenant.slug, outcome.contact.id, event.medium, event.channel, received_at
        )

        async def fire() -> None:
            await hub.announce_link(outcome)
            await hub.call_all("on_message_received", hub=hub, message=view)
            reply = await hub.call_first("respond_to_message", hub=hub, conversation=thread, message=view)
            if isinstance(reply, Reply):
                await record_reply(hub, thread, reply)

        return [fire]

    async def status(session: AsyncSession, event: InboxEvent) -> list[AfterCommit]:
        assert isinstance(event, DeliveryStatusEvent)
        tenant = await hub.tenants.get(event.tenant)
        message = await session.scalar(
            select(Message).where(
                Message.tenant_id == tenant.id, Message.channel == event.channel, Message.provider_id == event.provider_id
            )
        )
        hub_wake = False
        if message is None:
            # A status for a message this hub did not record (sent by another system): nothing to apply.
            return []
        if not moves_forward(message.status, event.status):
            return []
        at = (event.reported_at or utcnow()).isoformat()
        message.status = event.status
        message.status_history = [*message.status_history, {"status": event.status, "at": at}]
        if message.notification_id is not None:
            notification = await session.get(Notification, message.notification_id)
            outcome = NOTIFICATION_STATUS.get(event.status)
            if notification is not None and outcome and moves_forward(NOTIFICATION_RANK_ALIAS.get(notification.status, notification.status), outcome):
                reason = " ".join(filter(None, [event.error_code, event.error_message])) or None
                if outcome == "failed" and _can_fall_back(notification):
                    # The provider took it but could not deliver: try the next channel while there is time.
                    session.add(DeliveryAttempt(
                        notification_id=notification.id, channel=event.channel, provider_id=event.provider_id,
                        outcome="permanent", error=f"{event.status}: {reason or 'no reason given'}", finished_at=utcnow(),
                    ))
                    outcome = "pending"
                    notification.due_at = utcnow()
                    notification.next_attempt_at = None
                    hub_wake = True
                notification.status = outcome
                notification.status_history = [*notification.status_history, {"status": outcome, "at": at, **({"reason": reason} if reason else {})}]
                if reason:
                    notification.last_error = f"{event.channel}: {event.status}: {reason}"
        view = DeliveryStatus(
            tenant=tenant.slug,
            channel=event.channel,
            provider_id=event.provider_id,
            status=event.status,
            message_id=message.id,
            notification_id=message.notification_id,
            error_code=event.error_code,
            error_message=event.error_message,
        )

        async def fire() -> None:
            if hub_wake:
                hub.dispatcher.wake()
            await hub.call_all("on_delivery_status", hub=hub, status=view)

        return [fire]

    async def opt_out(session: AsyncSession, event: InboxEvent) -> list[AfterCommit]:
        assert isinstance(event, OptOutEvent)
        tenant = await hub.tenants.get(event.tenant)
        await set_opt_out(session, tenant, event.address_kind, event.address, event.medium, event.opted_out)
        return []

    return {InboundMessage.kind: received, DeliveryStatusEvent.kind: status, OptOutEvent.kind: opt_out}


def _can_fall_back(notification: Notification) -> bool:
    """A failed delivery is retried on another channel unless it is too late to matter."""
    return notification.expires_at is None or utcnow() < notification.expires_at


async def record_reply(hub: Hub, conversation: ConversationView, reply: Reply) -> None:
    """Queue a responder's reply on the conversation's channel, through the outbox like any message."""
    if not reply.body.strip():
        return  # handled, nothing to say (e.g. a STOP the channel already confirmed)
    async with hub.db.sessions.begin() as session:
        await hub.notify(
            session,
            tenant=conversation.tenant,
            request=NotificationRequest(
                kind="reply", template="message", contact_id=conversation.contact_id,
                channel_order=(conversation.channel,),
                data={"text": reply.body, "responder": reply.responder, "handoff": reply.handoff, **reply.data},
                # A reply an hour late answers a question nobody is waiting on any more.
                expires_at=utcnow() + REPLY_EXPIRY,
            ),
        )
