"""Chatwoot: agents see each client's context; two-way messages; private notes; merges proposed, never silent.

Each tenant connects its own Chatwoot account (see docs/chatwoot.md for the
step-by-step):

```toml
[tenants.clinic.plugins.chatwoot]
base_url = "https://chat.clinic.example"      # required; also the Dashboard App's only allowed origin
account_id = 1                                 # required
api_access_token = {env = "CLINIC_CHATWOOT_TOKEN"}  # required, secret: an administrator's access token
inbox_id = 3                                   # required: the inbox the hub writes into (the WhatsApp inbox)
webhook_secret = {env = "CLINIC_CHATWOOT_WEBHOOK_SECRET"}  # secret shown for the account webhook (Chatwoot 4.11+)
# agent_bot_secret = {env = "CLINIC_CHATWOOT_BOT_SECRET"}  # the agent bot's secret (4.13+), if a bot posts here too
sandbox = false                                # default true: the channel records instead of posting
# allow_unsigned = false       # true only for Chatwoot older than 4.11 (no signatures): anyone with the URL can post
# tolerance_seconds = 300      # how old a signed delivery may be (30 s ahead is allowed for clock skew)
# create_contacts = false      # create a Chatwoot contact for a hub client who has none, when their context changes
# coalesce_seconds = 5         # attribute updates of one contact within this window go out as one
# dashboard_app_key = {env = "..."}  # default: a key the plugin makes and stores (`hub chatwoot setup` prints the URL)
# whatsapp_template = "hub_notice"   # approved template with one body parameter, used outside the 24-hour window
# whatsapp_template_language = "es"
# whatsapp_template_category = "UTILITY"
# bot_enabled = false          # true: inbound Chatwoot messages go to the responders (false: the agents have them)
# handoff_team_id = 2          # on a hand-off, assign the conversation to this team ...
# handoff_assignee_id = 7      # ... and/or this agent
# timeout_seconds = 15
```

(`hub tenants configure clinic chatwoot base_url=... api_access_token=...`
does the same in the database; secrets are encrypted there.)

**Webhooks** (`POST /webhooks/chatwoot/events?tenant=clinic`; without
`?tenant=` the payload's account id picks the tenant): the
`X-Chatwoot-Signature` (`sha256=` hex HMAC-SHA256 of
`"<X-Chatwoot-Timestamp>.<body>"` with `webhook_secret`) must verify and be
fresh, else 401 (missing or malformed) or 403 (wrong or stale), with
nothing stored. Unsigned deliveries pass only with `allow_unsigned`.
`message_created` from the client becomes an inbound message on the
`chatwoot` medium (linked by normalised phone, else email, else Chatwoot
contact id; a redelivery is processed once, keyed by the message id); an
agent's reply is recorded on the hub (keyed by its id); private notes and
the hub's own echoes are ignored. `contact_created`, `contact_updated`,
`conversation_created` and `conversation_status_changed` link the Chatwoot
contact's id, phone and email to one hub contact; two Chatwoot contacts
that land on one hub contact become a merge proposal (a private note and
`hub chatwoot merges`), merged in Chatwoot only by `hub chatwoot merge`.

**Hand-off**: with `bot_enabled`, the responders answer Chatwoot
conversations; a hand-off (`Reply(handoff=True)`, `hub.hand_off`) opens the
client's latest conversation to the agents, assigns it to
`handoff_team_id` / `handoff_assignee_id`, and leaves a private note of
what the client wants. An agent's reply hands the hub's conversation to
humans too (the bot stays silent, up to the tenant's
`handoff_release_after`); resolving it in Chatwoot gives it back to the
bot. Without `bot_enabled` every Chatwoot conversation is the agents'.

**Context**: after each appointment change, delivery status or new link,
the contact's `hub_*` custom attributes (next and last appointment, count,
no-shows, consent per channel, last reminder, a link to the hub) are
pushed through durable plugin jobs, coalesced per contact, retried with
backoff on 429/5xx. Bookings made, moved or canceled, no-shows and
reminders that failed on every channel leave a one-line private note in
the client's latest conversation, in the tenant's language.

**Channel** `chatwoot` (medium `chatwoot`, address: the Chatwoot contact id):
posts into the contact's latest conversation of `inbox_id` (opening one when
there is none); outside the 24-hour window with `whatsapp_template` set, it
sends that template through `template_params`.

**Dashboard App**: `GET /webhooks/chatwoot/app?tenant=T&key=K` (URL printed
by `hub chatwoot setup`), see plugins/chatwoot/dashboard.py.

**Commands**: `hub chatwoot setup | sync | merges | merge --tenant T`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from hub import (
    AppointmentRef,
    Channel,
    ContactRef,
    ContextSection,
    Conversation,
    DeliveryStatus,
    HubPort,
    IdentityRef,
    ReceivedMessage,
    hookimpl,
)

from .channel import ChatwootChannel
from .runtime import IDENTITY, MEDIUM, NAME, ChatwootPlugin
from .settings import Settings
from .sync import AGENT_REPLIED, BOT_OFF, PROPOSALS_KEY, Sync, chatwoot_ids

if TYPE_CHECKING:
    import click
    from aiohttp import web

__all__ = ["NAME", "Settings"]

NOTE_CHANGES = ("created", "rescheduled", "reinstated", "canceled", "no_show")


def _sync(hub: HubPort) -> Sync:
    return hub.runtime("chatwoot.sync", lambda port: Sync(ChatwootPlugin.of(port)))


def _configured(hub: HubPort, tenant: str) -> bool:
    return hub.settings_for(NAME, tenant) is not None


@hookimpl
async def contact_context(hub: HubPort, contact: ContactRef) -> ContextSection | None:
    """The client's Chatwoot side, for the console and `hub contacts show`: linked contacts and open merge proposals."""
    settings = hub.settings_for(NAME, contact.tenant)
    if settings is None:
        return None
    view = await hub.contact_view(contact.tenant, contact.id)
    base = f"{settings.base_url.rstrip('/')}/app/accounts/{settings.account_id}/contacts"
    lines = [f"Chatwoot contact {i.value}: {base}/{i.value}" for i in view.identities if i.kind == IDENTITY]
    stored = await hub.get_plugin_data(NAME, contact.tenant, PROPOSALS_KEY) or {}
    for item in stored.get("items", []):
        if item.get("hub_contact") == contact.id:
            lines.append(f"Possible duplicate in Chatwoot: contacts {item.get('keep')} and {item.get('merge')} (`hub chatwoot merges`)")
    return ContextSection("Chatwoot", lines or ["Not linked to a Chatwoot contact yet."])


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_channels(hub: HubPort) -> list[Channel] | None:
    return [ChatwootChannel(ChatwootPlugin.of(hub))]


@hookimpl
def register_routes(hub: HubPort) -> list[web.RouteDef] | None:
    # aiohttp's server loads with the routes, not with the plugin (every `hub` command loads this module).
    from .dashboard import app_routes
    from .webhooks import routes

    # Always mounted: a tenant may get Chatwoot settings while the hub runs.
    plugin = ChatwootPlugin.of(hub)
    return [*routes(plugin), *app_routes(plugin)]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import chatwoot  # the CLI loads only when a command line is built

    cli.add_command(chatwoot)


@hookimpl
async def on_startup(hub: HubPort) -> None:
    await ChatwootPlugin.of(hub).open()
    _sync(hub).register()


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    await ChatwootPlugin.of(hub).close()


@hookimpl
async def on_appointment_changed(hub: HubPort, appointment: AppointmentRef, change: str) -> None:
    if appointment.contact_id is None or not _configured(hub, appointment.tenant):
        return
    sync = _sync(hub)
    await sync.schedule_push(appointment.tenant, appointment.contact_id)
    if change in NOTE_CHANGES:
        # A booking moved twice gets two notes: the start time tells the changes apart.
        version = hashlib.sha256(appointment.start_at.isoformat().encode()).hexdigest()[:12]
        await sync.appointment_note(
            appointment.tenant, contact_id=appointment.contact_id, appointment_id=appointment.id, change=change,
            start=appointment.start_at, service=appointment.service, version=version,
        )


@hookimpl
async def on_delivery_status(hub: HubPort, status: DeliveryStatus) -> None:
    if status.notification_id is None or not _configured(hub, status.tenant):
        return
    contact_id = status.contact_id
    if contact_id is None:
        return
    sync = _sync(hub)
    await sync.schedule_push(status.tenant, contact_id)
    if status.status in ("failed", "undelivered"):
        # The outbox may still hand it to another channel: whether it failed on all of them is seen later.
        await sync.schedule_failure_check(status.tenant, contact_id, status.notification_id)


@hookimpl
async def on_contact_linked(hub: HubPort, contact: ContactRef, identity: IdentityRef) -> None:
    if not _configured(hub, contact.tenant):
        return
    sync = _sync(hub)
    view = await hub.contact_view(contact.tenant, contact.id)
    ids = sorted(chatwoot_ids(view))
    # Hub contacts merged (by new evidence, or an operator accepting a proposal) can bring two Chatwoot contacts together.
    for other in ids[1:]:
        await sync.propose_merge(contact.tenant, view, keep=ids[0], merge=other)
    if ids or ChatwootPlugin.of(hub).require_settings(contact.tenant).create_contacts:
        await sync.schedule_push(contact.tenant, view.id)


@hookimpl
async def on_message_received(hub: HubPort, message: ReceivedMessage) -> None:
    if message.medium != MEDIUM or not _configured(hub, message.tenant):
        return
    if ChatwootPlugin.of(hub).require_settings(message.tenant).bot_enabled:
        return
    # The bot is off for Chatwoot: the agents have the conversation before any responder sees it.
    # A hold that timed out is released first, so the hand-off below starts a fresh one.
    await hub.conversation_handler(message.tenant, message.conversation_id)
    await hub.hand_off(message.tenant, message.conversation_id, reason=BOT_OFF, summary="")


@hookimpl
async def on_handoff(hub: HubPort, conversation: Conversation, reason: str, summary: str) -> bool | None:
    if not _configured(hub, conversation.tenant):
        return None
    if reason in (AGENT_REPLIED, BOT_OFF):
        # Chatwoot already shows the conversation to its agents: nothing to open or tell.
        return True if conversation.medium == MEDIUM else None
    key = f"{conversation.id}:{hashlib.sha256(f'{reason}|{summary}|{conversation.last_inbound_at}'.encode()).hexdigest()[:16]}"
    delivered = await _sync(hub).schedule_handoff(conversation.tenant, conversation.contact_id, reason=reason, summary=summary, key=key)
    return True if delivered else None
