"""Processors for the inbox's message events: inbound messages and delivery statuses.

They run inside the inbox worker's unit of work and register the hooks to fire
once it is committed, so a plugin never sees a message that was rolled back.
Responders are not called here: a committed inbound message is handed to the
`ResponderRunner` (hub/responding.py), which answers outside the inbox lanes.

Inbound messages are recorded set-based (`record_received`): the inbox hands
over a wave of unrelated messages (no two from one person), their senders
are linked together (`hub.contacts.link_many`), and then their conversations are found or made, updated, and their
messages inserted in one statement each, whatever the wave's size.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, insert, select, tuple_, update

from hub.contacts import LinkOutcome, LinkRequest, link_many, set_opt_out
from hub.events import ContactRef, DeliveryStatus, DeliveryStatusEvent, InboundMessage, InboxEvent, OptOutEvent, ReceivedMessage
from hub import outbox
from hub.inbox import BatchProcessor, Processor
from hub.models import Conversation, Message, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.outbound_webhooks import emit_report
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from hub.core import Hub
    from hub.tenants import TenantInfo

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


_CONVERSATIONS = Conversation.__table__
_MESSAGES = Message.__table__
_NEW_CONVERSATIONS = insert(_CONVERSATIONS).returning(
    _CONVERSATIONS.c.id, _CONVERSATIONS.c.tenant_id, _CONVERSATIONS.c.contact_id, _CONVERSATIONS.c.medium,
    sort_by_parameter_order=True,
)
_TOUCH_CONVERSATIONS = (
    update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("b_id"))
    .values(last_inbound_at=bindparam("b_at"), channel=bindparam("b_channel"))
)
_NEW_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)


async def record_received(hub: Hub, uow: UnitOfWork, events: list[InboundMessage]) -> None:
    """Record inbound messages (no two from one person): their senders linked, conversations and messages set-based.

    Registers, per message and in order, its contact's links, `on_message_received`
    and the responders' turn, all to run once the unit of work commits.
    """
    session = uow.session
    by_tenant: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_tenant.setdefault(event.tenant, []).append(index)
    resolved: dict[int, tuple[TenantInfo, LinkOutcome]] = {}
    for slug, indexes in by_tenant.items():
        tenant = await hub.tenants.get(slug)
        requests = []
        for index in indexes:
            event = events[index]
            others = [(kind, address) for kind, address in event.linked_addresses]
            requests.append(LinkRequest(
                [(event.sender_kind, event.sender), *others], profile={"name": event.profile_name},
                reason=f"{event.channel} says these are one account", certain=bool(others),
            ))
        # Set-based: one lookup for the known senders, bulk inserts for new ones (hub.contacts.link_many).
        for index, outcome in zip(indexes, await link_many(session, tenant, requests)):
            resolved[index] = (tenant, outcome)
    linked: list[tuple[InboundMessage, TenantInfo, LinkOutcome]] = []
    absorbed: dict[int, ContactRef] = {}
    for index, event in enumerate(events):
        tenant, outcome = resolved[index]
        for merged_id in outcome.merged:
            absorbed[merged_id] = outcome.contact
        linked.append((event, tenant, outcome))

    def owner(contact: ContactRef) -> ContactRef:
        # A later message's link may have merged an earlier one's contact away: its message goes to the keeper.
        while contact.id in absorbed and absorbed[contact.id].id != contact.id:
            contact = absorbed[contact.id]
        return contact

    keys = [(tenant.id, owner(outcome.contact).id, event.medium) for event, tenant, outcome in linked]
    wanted = list(dict.fromkeys(keys))
    conversations: dict[tuple[int, int, str], int] = {
        (row.tenant_id, row.contact_id, row.medium): row.id
        for row in await session.execute(
            select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.tenant_id, _CONVERSATIONS.c.contact_id, _CONVERSATIONS.c.medium)
            .where(tuple_(_CONVERSATIONS.c.tenant_id, _CONVERSATIONS.c.contact_id, _CONVERSATIONS.c.medium).in_(wanted))
        )
    }
    first_channel = {key: event.channel for key, (event, _, _) in reversed(list(zip(keys, linked)))}
    missing = [key for key in wanted if key not in conversations]
    if missing:
        rows = await session.execute(_NEW_CONVERSATIONS, [
            {"tenant_id": t, "contact_id": c, "medium": m, "channel": first_channel[(t, c, m)]} for t, c, m in missing
        ])
        conversations.update({(row.tenant_id, row.contact_id, row.medium): row.id for row in rows})
    now = utcnow()
    received = [event.received_at or now for event, _, _ in linked]
    latest: dict[int, dict[str, object]] = {}
    for key, (event, _, _), at in zip(keys, linked, received):
        conversation_id = conversations[key]
        latest[conversation_id] = {"b_id": conversation_id, "b_at": at, "b_channel": event.channel}
    await session.execute(_TOUCH_CONVERSATIONS, list(latest.values()))
    message_ids = list((await session.execute(_NEW_MESSAGES, [
        {
            "tenant_id": tenant.id, "conversation_id": conversations[key], "direction": "in", "channel": event.channel,
            "address": outcome.identities[0].value, "body": event.body, "media": list(event.media),
            "provider_id": event.provider_id, "status": "received",
            "status_history": [{"status": "received", "at": at.isoformat()}],
        }
        for key, (event, tenant, outcome), at in zip(keys, linked, received)
    ])).scalars())
    for key, (event, tenant, outcome), message_id in zip(keys, linked, message_ids):
        contact = owner(outcome.contact)
        conversation_id = conversations[key]
        view = ReceivedMessage(
            tenant=tenant.slug, contact_id=contact.id, conversation_id=conversation_id, message_id=message_id,
            medium=event.medium, channel=event.channel, address=outcome.identities[0].value, body=event.body,
            media=list(event.media), profile_name=event.profile_name, address_kind=outcome.identities[0].kind,
        )
        hub.announce_link(uow, outcome)
        uow.after_commit("on_message_received", partial(hub.call, "on_message_received", hub=hub, message=view))
        uow.after_commit("answer conversation", partial(hub.responders.schedule, conversation_id))


def message_batch_processors(hub: Hub) -> dict[str, BatchProcessor]:
    """The set-based processors this module provides, keyed by event kind (see `hub.inbox.BatchProcessor`)."""

    async def received(uow: UnitOfWork, events: list[InboxEvent]) -> None:
        assert all(isinstance(event, InboundMessage) for event in events)
        await record_received(hub, uow, events)  # type: ignore[arg-type]

    return {InboundMessage.kind: received}


def message_processors(hub: Hub) -> dict[str, Processor]:
    """The inbox processors this module provides, keyed by event kind."""

    async def received(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, InboundMessage)
        await record_received(hub, uow, [event])

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


