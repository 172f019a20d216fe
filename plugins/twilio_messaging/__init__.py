"""WhatsApp and SMS through Twilio: the built-in `twilio-whatsapp` and `twilio-sms` channels.

Sends through the official SDK's async client, receives inbound messages and
delivery statuses on `/webhooks/twilio_messaging/inbound` and `/status`, and
keeps each phone's opt-outs per medium.

```toml
[plugins.twilio_messaging]
account_sid = "AC00000000000000000000000000000000"
auth_token = {env = "TWILIO_AUTH_TOKEN"}     # API calls, and the key webhooks are signed with
whatsapp_from = "+14155238886"               # the WhatsApp sender
sms_from = "+15017122661"                    # an SMS number, or an alphanumeric sender ID ("ClinicaSol")
# messaging_service_sid = "MG..."            # sends for a medium with no sender number of its own
# public_url = "https://hub.example.com"     # what Twilio calls, behind a proxy (default: [hub] public_url)
# webhook_signing_key = {env = "TWILIO_SHARED_KEY"}   # only for HMAC-SHA256 signed webhooks
# api_base_url = "https://api.twilio.com"    # a Twilio-compatible server instead
help_text = "Clínica Sol: citas al 910 000 000. Responde BAJA para no recibir más mensajes."
timeout_seconds = 15
sandbox = false                              # true (the default): build every message, send none

# The approved WhatsApp template per locale and notification kind, sent when the
# contact has not written in the last 24 hours. Variables are Jinja expressions
# over the same context as the hub's templates, rendered in the contact's locale
# and time zone; ContentVariables is their JSON.
[plugins.twilio_messaging.content_templates.es.reminder]
content_sid = "HX00000000000000000000000000000001"
variables = {"1" = "{{ contact.name or 'hola' }}", "2" = "{{ appointment.start | datetime }}"}

[plugins.twilio_messaging.content_templates.es.confirmation]
content_sid = "HX00000000000000000000000000000002"
variables = {"1" = "{{ tenant.name }}", "2" = "{{ appointment.start | datetime }}"}

# A tenant with its own account and numbers; keys it leaves out come from the table
# above. The merge is per key: a tenant's content_templates replaces the whole mapping.
[tenants.salon.plugins.twilio_messaging]
account_sid = "AC11111111111111111111111111111111"
auth_token = {env = "SALON_TWILIO_AUTH_TOKEN"}
whatsapp_from = "+5215550001111"
sms_from = "+525550001111"

[tenants.salon.plugins.twilio_messaging.content_templates.es-MX.reminder]
content_sid = "HX00000000000000000000000000000003"
variables = {"1" = "{{ appointment.start | date }}", "2" = "{{ appointment.start | time }}"}
```

Without a `[plugins.twilio_messaging]` table the plugin is "not configured",
yet tenants with their own table still get both channels and the webhooks.

**Sending.** The To is the contact's E.164 phone (`whatsapp:` added on
WhatsApp); From is the medium's sender, with `MessagingServiceSid` when one is
set (alone when the medium has no number). Every send carries
`StatusCallback = <public_url>/webhooks/twilio_messaging/status?tenant=<slug>`.
On WhatsApp a free-form body goes out only if the contact wrote on WhatsApp
in the last 24 hours (less a 5-minute margin); otherwise the Content template
for (locale, kind) does, the locale falling back from `es-MX` to `es` but
never to another language; none mapped is a permanent failure that hands the
notification to the next channel. SMS is always the rendered body.
Attachments are not sent (Twilio takes media by URL only). Errors: 429 /
20429 and 5xx are transient with Retry-After honoured, as are connection
failures and 20003 (bad credentials, reported as such); 21211, 21610, 21614,
63016 and any other 4xx are permanent, and 21610 also opts the phone out of
that medium. Sandbox mode builds the same request (a missing template fails
the same way), sends nothing and returns `sandboxed` with no provider id.
`hub twilio templates [--tenant]` lists the mapping and flags appointment
kinds with none (exit status 1).

**Webhooks.** Point the numbers' "A message comes in" at
`<public_url>/webhooks/twilio_messaging/inbound`. The tenant is the one
whose sender or Messaging Service the message was sent to (or `?tenant=` in
the URL), and the request must carry that tenant's `X-Twilio-Signature` over
the public URL (see `webhooks`). A bad or missing signature is 403, a number
no tenant uses 404, a form without From or MessageSid 400; nothing is stored
for any of them. Otherwise the event is stored in the inbox under its
MessageSid (a retry is acknowledged and processed once) and answered with
empty TwiML.

**Opt-out.** A message that is only STOP, STOPALL, UNSUBSCRIBE, END, QUIT,
BAJA or ALTO (and CANCEL, on SMS only) opts that phone out of the medium it
came on; START, UNSTOP or ALTA opt it back in; HELP or AYUDA is answered with
`help_text` (see `keywords`). Those messages get no other answer: the
responders after this one never see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from hub import Conversation, HubPort, ReceivedMessage, Reply, hookimpl

from .keywords import classify
from .sending import CHANNEL_NAMES, NAME, SMS, WHATSAPP, TwilioChannel, TwilioClients
from .settings import Settings

if TYPE_CHECKING:
    import click
    from aiohttp import web

__all__ = ["Settings", "TwilioChannel"]


def clients(hub: HubPort) -> TwilioClients:
    """The process's Twilio clients: tenants on one account share one connection pool for both mediums."""
    return hub.runtime(NAME, lambda _hub: TwilioClients())


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_channels(hub: HubPort) -> list[TwilioChannel]:
    # Always registered: a tenant may be configured while the hub runs; a send for a tenant
    # without settings fails permanently and the dispatcher skips the channel for it.
    settings = hub.settings_for(NAME)
    return [TwilioChannel(hub, WHATSAPP, clients(hub), settings), TwilioChannel(hub, SMS, clients(hub), settings)]


@hookimpl
def register_routes(hub: HubPort) -> list[web.RouteDef]:
    from .webhooks import routes  # aiohttp's server loads with the routes, not with the plugin

    return routes(hub)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import add_commands  # the CLI loads only when a command line is built

    add_commands(cli)


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    await clients(hub).close()


@hookimpl(tryfirst=True)
def respond_to_message(hub: HubPort, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    """HELP gets the tenant's help text; STOP and START are handled with no reply (Twilio confirms STOP on SMS)."""
    if message.channel not in CHANNEL_NAMES:
        return None
    action = classify(message.body, message.medium)
    if action == "help":
        settings = hub.settings_for(NAME, message.tenant)
        text = settings.help_text if settings is not None else None
        return Reply(text, responder=NAME) if text else None
    if action in ("stop", "start"):
        return Reply("", responder=NAME)
    return None
