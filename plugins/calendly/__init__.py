"""Calendly bookings as appointments, and Calendly's scheduling API as responder tools.

Each tenant has its own Calendly organisation, token and signing key, so the
settings usually live in the tenant's table:

```toml
[tenants.clinic.plugins.calendly]
token = {env = "CLINIC_CALENDLY_TOKEN"}   # personal access token or OAuth token: required
# api_base_url = "https://api.calendly.com"
# signing_key = {env = "CLINIC_CALENDLY_SIGNING_KEY"}  # default: the one `hub calendly subscribe` stored
# organization = "https://api.calendly.com/organizations/AAAAAAAAAAAAAAAA"  # default: the token user's
tolerance_seconds = 180                   # how old a webhook signature may be
phone_questions = ["Teléfono", "WhatsApp", "Phone number"]  # booking questions whose answers are phones
```

Then `hub calendly subscribe --tenant clinic` creates the organisation's
webhook subscription to `<public_url>/webhooks/calendly/events?tenant=clinic`
with a new signing key (stored for the tenant), `hub calendly sync --tenant
clinic` backfills upcoming bookings, and `hub calendly check --tenant clinic`
shows the token's user and event types.

**Webhooks** (`POST /webhooks/calendly/events`): the
`Calendly-Webhook-Signature` (`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`)
must verify with the key of the tenant named in `?tenant=` (or, without
it, of some configured tenant) and be no older than `tolerance_seconds`,
else 401 (missing or malformed) or 403 (wrong or stale), with nothing
stored. `invitee.created`, `invitee.canceled`, `invitee_no_show.created`
and `invitee_no_show.deleted` become an `AppointmentEvent` keyed by the
invitee URI, stored in the inbox under the event's identity (a
redelivery is acknowledged, not processed again); other events are
acknowledged and ignored. A reschedule is Calendly's `invitee.canceled`
with `rescheduled: true` plus an `invitee.created` whose `old_invitee`
names the old booking, in either order: the canceled half changes
nothing, the created half carries `replaces` so the core moves the
appointment (reminders moved, one reschedule notice, no cancellation).

**Linking**: the invitee's email, `text_reminder_number`, answers to the
phone questions and an `outbound_call` location's number all go to the
core's resolver, so a client who booked on Calendly and writes on WhatsApp
is one contact; numbers that do not parse in the tenant's region are left
out rather than failing the booking. The invitee's time zone becomes the
contact's when it has none.

**Tools** (`register_tools`): `calendly_availability`, `calendly_book`
(the Scheduling API, `POST /invitees`; a single-use link for that day when
the plan refuses it or its rate limit is reached), `calendly_scheduling_link`
and `calendly_cancel`, for tenants with Calendly. See tools.py and
docs/responders.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import DeferredEvent, HubPort, InboxEvent, Tool, hookimpl

from .runtime import NAME, CalendlyPlugin
from .settings import Settings
from .tools import tools_for

if TYPE_CHECKING:
    import click
    from aiohttp import web

# The webhook handlers (aiohttp's server) load when the routes are mounted or an event is completed:
# `hub --help` and the other commands load this module too.

__all__ = ["NAME", "Settings"]


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_routes(hub: HubPort) -> list[web.RouteDef] | None:
    from .webhooks import routes

    # Always mounted: a tenant may get Calendly settings while the hub runs.
    return routes(CalendlyPlugin.of(hub))


@hookimpl
def register_tools(hub: HubPort, tenant: str) -> list[Tool] | None:
    plugin = CalendlyPlugin.of(hub)
    if plugin.settings(tenant) is None:
        return None
    return tools_for(plugin, tenant)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import calendly  # the CLI loads only when a command line is built

    cli.add_command(calendly)


@hookimpl
async def on_startup(hub: HubPort) -> None:
    await CalendlyPlugin.of(hub).open()


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    await CalendlyPlugin.of(hub).close()


@hookimpl
async def complete_event(hub: HubPort, event: DeferredEvent) -> list[InboxEvent] | None:
    """A webhook that named its scheduled event by URI only: fetch the event, then the appointment (issue 13)."""
    if event.plugin != NAME:
        return None
    from .webhooks import complete

    return await complete(CalendlyPlugin.of(hub), event)
