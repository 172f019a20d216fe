"""`hub chat`: talk to the tenant's responders in a terminal, as a client would.

Each line typed is an inbound message from `--from` on the "chat" medium:
it goes through the inbox (the contact is linked, so the responders see that
client's appointments) and the responders, exactly as a WhatsApp message
would. What they answer is printed, with the intent, the model and tool
calls and any hand-off, instead of being sent: replies on the chat medium
are shown here and then cancelled in the outbox, so nothing reaches a
provider. Tools are the tenant's real ones (a booking made here is made):
point them at a test account while trying things out.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING

import click

from hub.cli import with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub

MEDIUM = "chat"
CHANNEL = "terminal"
SHOWN_KINDS = ("reply", "opt_out_confirmation")


@click.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--from", "sender", required=True, help="The client's phone number or email address.")
@with_open_hub
async def chat(hub: Hub, tenant: str, sender: str) -> None:
    """Talk to the responders as the client `--from`: one message per line, answers printed (nothing is sent)."""
    await hub.tenants.get(tenant)
    kind = "email" if "@" in sender else "phone"
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(f"Chatting with {tenant}'s responders as {sender} (sandbox: nothing is sent). Ctrl-D to end.", err=True)
    while True:
        if interactive:
            click.echo("> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            break
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        for shown in await exchange(hub, tenant, kind, sender, body):
            click.echo(shown)


async def exchange(hub: Hub, tenant: str, kind: str, sender: str, body: str) -> list[str]:
    """Send one message through the inbox and the responders; the lines that describe what happened."""
    from sqlalchemy import select

    from hub import outbox
    from hub.events import InboundMessage
    from hub.models import ConversationEvent, Notification

    provider_id = f"chat-{uuid.uuid4().hex}"
    event = InboundMessage(tenant=tenant, medium=MEDIUM, channel=CHANNEL, sender=sender, sender_kind=kind, body=body, provider_id=provider_id)
    await hub.accept(event, source="hub-chat", dedupe_key=provider_id)
    while await hub.inbox.process_pending():
        pass
    info = await hub.tenants.get(tenant)
    conversation = await _conversation(hub, provider_id)
    async with hub.db.sessions() as session:
        last_event = await session.scalar(select(ConversationEvent.id).order_by(ConversationEvent.id.desc()).limit(1)) or 0
        last_notification = await session.scalar(select(Notification.id).order_by(Notification.id.desc()).limit(1)) or 0
    await hub.responders.answer_pending()
    while await hub.inbox.process_pending():  # an opt-out a responder asked for, and its confirmation
        pass
    lines: list[str] = []
    async with hub.unit_of_work() as uow:
        events = (await uow.session.scalars(
            select(ConversationEvent).where(ConversationEvent.conversation_id == conversation, ConversationEvent.id > last_event)
            .order_by(ConversationEvent.id)
        )).all()
        for row in events:
            if row.kind in ("model_call", "tool_call"):
                tokens = f", {row.tokens} tokens" if row.tokens else ""
                lines.append(f"  [{row.kind.replace('_', ' ')}] {row.name}: {row.outcome} ({row.latency_ms} ms{tokens})")
            elif row.kind == "handoff":
                lines.append(f"  [handed off to a person] {row.detail.get('reason', '')}")
        notifications = (await uow.session.scalars(
            select(Notification).where(Notification.tenant_id == info.id, Notification.id > last_notification).order_by(Notification.id)
        )).all()
        for notification in notifications:
            if notification.kind in SHOWN_KINDS and list(notification.channel_order or []) in ([CHANNEL], [MEDIUM]):
                if notification.kind == "reply":
                    intent = notification.data.get("intent")
                    responder = notification.data.get("responder") or "responder"
                    lines.append(f"  [{responder}]" + (f" intent: {intent}" if intent else ""))
                    lines.append(f"< {notification.data.get('text', '')}")
                else:
                    lines.append("< (the opt-out confirmation)")
                outbox.cancel(notification, "hub chat: shown in the terminal, not sent")
            else:
                lines.append(f"  [queued] {notification.kind} notification {notification.id}")
    if not any(line.startswith("<") for line in lines):
        lines.append("  (no answer)")
    return lines


async def _conversation(hub: Hub, provider_id: str) -> int:
    from sqlalchemy import select

    from hub.models import Message

    async with hub.db.sessions() as session:
        conversation_id = await session.scalar(select(Message.conversation_id).where(Message.provider_id == provider_id))
    if conversation_id is None:
        raise click.ClickException("the message was not recorded (see the log)")
    return int(conversation_id)
