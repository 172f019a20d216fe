"""The `chatwoot` channel: a notification posted into the client's conversation in the tenant's inbox.

Agents see reminders in the thread, and the client receives them through
the inbox's own channel (WhatsApp, SMS...). Outside WhatsApp's 24-hour
window the tenant's approved template goes out through Chatwoot's
`template_params`, with the rendered text as its one body parameter.
"""

from __future__ import annotations

import datetime as dt

from hub import Delivery, Health, OutboundMessage, PermanentError

from .client import ChatwootClient, ChatwootError
from .runtime import CHANNEL, MEDIUM, ChatwootPlugin
from .sync import latest_conversation

SESSION_WINDOW = dt.timedelta(hours=24)


class ChatwootChannel:
    """Sends to a Chatwoot contact id (the hub identity kind "chatwoot")."""

    name = CHANNEL
    medium = MEDIUM
    address_kind = "chatwoot"

    def __init__(self, plugin: ChatwootPlugin) -> None:
        self.plugin = plugin
        tenants = plugin.hub.configured_tenants("chatwoot")
        # What `hub plugins` shows; each send follows its own tenant's `sandbox` switch.
        self.sandbox = bool(tenants) and all(plugin.require_settings(t).sandbox for t in tenants)

    async def send(self, message: OutboundMessage) -> Delivery:
        """Post the message in the contact's latest conversation of `inbox_id` (opened when there is none)."""
        settings = self.plugin.settings(message.tenant)
        if settings is None:
            raise PermanentError(f"Chatwoot is not configured for tenant {message.tenant}")
        if not message.to.isdigit():
            raise PermanentError("not a Chatwoot contact id", code="address")
        if settings.sandbox:
            return Delivery(None, status="sandboxed", detail="sandbox: not posted to Chatwoot")
        client = self.plugin.client(message.tenant)
        contact_id = int(message.to)
        template = None
        outside_window = message.last_inbound_at is None or dt.datetime.now(dt.UTC) - message.last_inbound_at > SESSION_WINDOW
        if outside_window and settings.whatsapp_template:
            template = {
                "name": settings.whatsapp_template, "category": settings.whatsapp_template_category,
                "language": settings.whatsapp_template_language, "processed_params": {"body": {"1": message.body}},
            }
        try:
            conversation = await latest_conversation(client, [contact_id], settings.inbox_id)
            if conversation is None:
                conversation = await self._open(client, contact_id, settings.inbox_id)
            posted = await client.post_message(conversation, message.body, template_params=template)
        except ChatwootError as exc:
            raise exc.as_channel_error() from None
        return Delivery(str(posted.get("id")) if posted.get("id") is not None else None, detail=f"conversation {conversation}")

    async def _open(self, client: ChatwootClient, contact_id: int, inbox_id: int) -> int:
        source_id = await client.create_contact_inbox(contact_id, inbox_id)
        return await client.create_conversation(source_id=source_id, inbox_id=inbox_id, contact_id=contact_id)

    async def check(self) -> Health:
        """Chatwoot is not required for /health: a tenant's outage only holds its own messages back."""
        return Health(True, "chatwoot", required=False)
