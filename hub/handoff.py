"""Who answers a conversation: the bot (the responders) or a human, and the hand-off between them.

A conversation starts with the bot. `hand_off` gives it to a human: it is
marked `handler = "human"` with when and why, a `conversation_events` row
records it, and once that commits `on_handoff` tells the plugins (Chatwoot
opens the conversation to its agents). While a human has it, the
`ResponderRunner` calls no responder. `release` gives it back to the bot
(Chatwoot resolved it, a command, or the tenant's `handoff_release_after`
passed without one: `conversation_handler` notices that and releases it).

When no plugin says it delivered the hand-off (no `on_handoff`
implementation returned True), the humans are told by email: a message to
the tenant's `handoff_email` through the outbox. Without that setting the
hand-off is only logged (and visible in `hub conversations`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hub.errors import HubError
from hub.events import Conversation as ConversationView
from hub.models import Contact, Conversation, ConversationEvent, utcnow
from hub.notifications import NotificationRequest
from hub.outbound_webhooks import emit as emit_webhooks
from hub.reminders import parse_offset
from hub.tenants import TenantInfo
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from hub.core import Hub

BOT = "bot"
HUMAN = "human"
HANDLERS = (BOT, HUMAN)

_EMAIL_TEXT = {
    "es": ("Conversación para una persona: {name}", "{name} ({medium}) necesita que una persona le atienda.\n\nMotivo: {reason}\n\nResumen:\n{summary}\n\nEl asistente no contestará en esta conversación hasta que se libere."),
    "en": ("Conversation for a person: {name}", "{name} ({medium}) needs a person to take over.\n\nReason: {reason}\n\nSummary:\n{summary}\n\nThe assistant stays silent in this conversation until it is released."),
}


class UnknownConversation(HubError):
    """No conversation with that id in that tenant."""


def conversation_view(row: Conversation, tenant: str) -> ConversationView:
    """The hook-facing view of a conversation row."""
    return ConversationView(row.id, tenant, row.contact_id, row.medium, row.channel, row.last_inbound_at, row.handler)


async def load_conversation(session: AsyncSession, tenant: TenantInfo, conversation_id: int) -> Conversation:
    """The tenant's conversation row; raises UnknownConversation (a conversation of another tenant is unknown too)."""
    row = await session.get(Conversation, conversation_id)
    if row is None or row.tenant_id != tenant.id:
        raise UnknownConversation(f"no conversation {conversation_id} in tenant {tenant.slug!r}")
    return row


def expired(row: Conversation, tenant: TenantInfo, now: dt.datetime) -> bool:
    """Whether a human's hold on the conversation ran past the tenant's `handoff_release_after`."""
    if row.handler != HUMAN:
        return False
    since = row.handler_since or now
    return now - since >= parse_offset(tenant.handoff_release_after)


def record_event(
    uow: UnitOfWork, tenant: TenantInfo, conversation_id: int, *, kind: str, name: str, outcome: str = "ok",
    tokens: int = 0, latency_ms: int = 0, detail: dict[str, object] | None = None,
) -> None:
    """Add a `conversation_events` row in the caller's unit of work."""
    uow.session.add(ConversationEvent(
        tenant_id=tenant.id, conversation_id=conversation_id, kind=kind, name=name[:200], outcome=outcome[:32],
        tokens=tokens, latency_ms=latency_ms, detail=dict(detail or {}),
    ))


async def mark_human(hub: Hub, uow: UnitOfWork, tenant: TenantInfo, row: Conversation, *, reason: str, summary: str) -> bool:
    """Give the conversation to a human in the caller's unit of work; `on_handoff` fires after commit.

    False (and nothing fired) when a human already has it.
    """
    if row.handler == HUMAN:
        return False
    row.handler = HUMAN
    row.handler_since = utcnow()
    row.handler_reason = reason[:500]
    record_event(uow, tenant, row.id, kind="handoff", name="handoff", detail={"reason": reason})
    view = conversation_view(row, tenant.slug)
    # issue 12: the tenant's conversation.handed_off webhooks, queued with the hand-off (no summary: it quotes the client)
    await emit_webhooks(uow.session, tenant, "conversation.handed_off",
                        {"conversation_id": row.id, "contact_id": row.contact_id, "medium": row.medium, "reason": reason})
    hub.wake_dispatcher(uow)

    async def announce() -> None:
        await deliver(hub, tenant, view, reason, summary)

    uow.after_commit("on_handoff", announce)
    return True


async def deliver(hub: Hub, tenant: TenantInfo, conversation: ConversationView, reason: str, summary: str) -> None:
    """Fire `on_handoff`; if no plugin took the hand-off, email the tenant's `handoff_email`."""
    log = structlog.get_logger("hub.handoff")
    results = await hub.hooks.call_all_named("on_handoff", hub=hub, conversation=conversation, reason=reason, summary=summary)
    takers = [plugin for plugin, result in results if result is True]
    if takers:
        log.info("handoff_delivered", tenant=tenant.slug, conversation_id=conversation.id, plugins=takers)
        return
    if not tenant.handoff_email:
        log.warning("handoff_undelivered", tenant=tenant.slug, conversation_id=conversation.id,
                    detail="no plugin took it and the tenant has no handoff_email")
        return
    async with hub.db.sessions() as session:
        contact = await session.get(Contact, conversation.contact_id)
    name = (contact.name if contact is not None else None) or f"contact {conversation.contact_id}"
    subject, text = _EMAIL_TEXT.get(tenant.locale.split("-")[0].lower(), _EMAIL_TEXT["en"])
    values = {"name": name, "medium": conversation.medium, "reason": reason, "summary": summary or "-"}
    await hub.notify(tenant=tenant.slug, request=NotificationRequest(
        kind="handoff", template="message", address=tenant.handoff_email, channel_order=("email",),
        data={"subject": subject.format(**values), "text": text.format(**values), "conversation_id": conversation.id},
        idempotency_key=f"handoff:{conversation.id}:{utcnow().isoformat()}",
    ))
    log.info("handoff_emailed", tenant=tenant.slug, conversation_id=conversation.id)


async def hand_off(hub: Hub, tenant: str, conversation_id: int, *, reason: str, summary: str) -> None:
    """Mark the conversation human-handled; `on_handoff` fires once that commits (see `HubPort.hand_off`)."""
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        row = await load_conversation(uow.session, info, conversation_id)
        await mark_human(hub, uow, info, row, reason=reason, summary=summary)


def mark_bot(uow: UnitOfWork, tenant: TenantInfo, row: Conversation, *, reason: str) -> bool:
    """Give the conversation back to the bot in the caller's unit of work; False if the bot already has it."""
    if row.handler == BOT:
        return False
    row.handler = BOT
    row.handler_since = utcnow()
    row.handler_reason = reason[:500]
    record_event(uow, tenant, row.id, kind="release", name="release", detail={"reason": reason})
    return True


async def release(hub: Hub, tenant: str, conversation_id: int, *, reason: str) -> None:
    """Give the conversation back to the bot (see `HubPort.release`)."""
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        row = await load_conversation(uow.session, info, conversation_id)
        mark_bot(uow, info, row, reason=reason)


async def conversation_handler(hub: Hub, tenant: str, conversation_id: int) -> str:
    """"bot" or "human"; a human hold past the tenant's timeout is released first (see `HubPort.conversation_handler`)."""
    info = await hub.tenants.get(tenant)
    async with hub.db.sessions() as session:
        row = await load_conversation(session, info, conversation_id)
        if not expired(row, info, utcnow()):
            return row.handler
    async with hub.unit_of_work() as uow:
        row = await load_conversation(uow.session, info, conversation_id)
        if expired(row, info, utcnow()):
            mark_bot(uow, info, row, reason="timeout")
        return row.handler
