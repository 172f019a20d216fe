"""Every hook a plugin can implement: the plugin author's reference.

Implement a hook by defining a function of the same name decorated with
`hub.hookimpl`; take only the arguments you need (pluggy passes them by
name). Any event implementation may be `async def`: the core awaits it.
Event hooks are called only through `Hub.call_all` (every implementation, a
failing one is logged with its plugin name and counted, the others still
run) and `Hub.call_first` (in order, the first non-None result wins);
registration hooks through `HookCaller.call_sync`.

"Once" hooks run while the hub starts; "each" hooks run per event. The
`register_*` hooks that run once at start-up (settings, channels, routes,
template dirs, commands) must be plain `def`: an async one, or one that
raises, stops start-up with an error naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    from aiohttp import web
    from pydantic import BaseModel

    from hub.channels import Channel
    from hub.core import Hub
    from hub.events import AppointmentRef, ContactRef, Conversation, DeliveryStatus, IdentityRef, ReceivedMessage
    from hub.responders import ContextSection, Reply, Tool

hookspec = pluggy.HookspecMarker("hub")


# --- Registration: called once at start-up -------------------------------


@hookspec
def register_settings() -> type[BaseModel] | None:
    """Return the pydantic model of this plugin's settings, or None if it has none.

    Called once, before anything else, to validate `[plugins.<name>]` in
    config.toml (and a tenant's `[tenants.<slug>.plugins.<name>]` overrides).
    Subclass `hub.PluginSettings` (unknown keys are errors) or
    `hub.ProviderSettings` (adds `sandbox = true`). Mark secrets with
    pydantic's `SecretStr`; config supplies them as `{env = "NAME"}` and
    they are masked everywhere. Read the result with
    `hub.settings_for("<name>")`. A plugin whose table is absent and whose
    model has required fields is loaded but "not configured".
    """


@hookspec
def register_channels(hub: Hub) -> list[Channel] | None:
    """Return the channels this plugin provides (see `hub.Channel`).

    Called once after settings are validated. Channel names must be unique
    across plugins; a plugin that is not configured should return none.
    """


@hookspec
def register_routes(hub: Hub) -> list[web.AbstractRouteDef] | web.RouteTableDef | None:
    """Return aiohttp routes; they are mounted as the sub-app `/webhooks/<plugin>/`.

    Called once when the HTTP app is built. Handlers verify the vendor's
    signature, build a `hub.InboxEvent`, `await hub.inbox.accept(...)` it
    and answer at once: slow work belongs to the workers.
    """


@hookspec
def register_tools(hub: Hub, tenant: str) -> list[Tool] | None:
    """Return the tools a responder may call for this tenant (each a `hub.Tool`).

    Called each time a responder prepares to answer, and by `hub tools`.
    Return none for a tenant this plugin is not configured for.
    """


@hookspec
def register_template_dirs() -> list[str] | None:
    """Return extra template folders, searched after the tenant's own and before the defaults.

    Called once at start-up.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add this plugin's sub-commands to the `hub` command line.

    Called once when the CLI starts, before arguments are parsed, e.g.
    `cli.add_command(calendly_group)` for `hub calendly subscribe`. The
    command's callback finds the hub through `hub.cli.hub_from_context()`.
    """


# --- Lifecycle -------------------------------------------------------------


@hookspec
def on_startup(hub: Hub) -> None:
    """Open clients and sessions; called each time a process opens the hub.

    That is `hub serve`, `hub worker`, and every CLI command that uses the
    database. Keep it cheap: connect lazily where you can.
    """


@hookspec
def on_shutdown(hub: Hub) -> None:
    """Close what `on_startup` opened; called each time a process closes the hub."""


# --- Events: called once per event, every implementation runs --------------


@hookspec
def on_message_received(hub: Hub, message: ReceivedMessage) -> None:
    """An inbound message was recorded and its contact linked.

    Called by the inbox worker after the message is stored, before
    `respond_to_message`. Return value is ignored.
    """


@hookspec
def on_delivery_status(hub: Hub, status: DeliveryStatus) -> None:
    """A provider reported sent / delivered / read / undelivered / failed for a message.

    Called after the status was applied to the stored message (a status
    never moves backwards; a stale one is not reported).
    """


@hookspec
def on_appointment_changed(hub: Hub, appointment: AppointmentRef, change: str) -> None:
    """An appointment was created, rescheduled, canceled or marked no-show.

    `change` is one of "created", "updated", "rescheduled", "reinstated" (scheduled
    again at the same time after a cancellation or no-show), "canceled", "no_show";
    fired by `Hub.upsert_appointment` (API, booking sources) after commit.

    Called after the change and its reminders were stored.
    """


@hookspec
def on_contact_linked(hub: Hub, contact: ContactRef, identity: IdentityRef) -> None:
    """A new identity joined a contact, or another contact was merged into it.

    Called after the link is committed; `identity` is the address that
    was added (for a merge, the one that proved the two were one person).
    """


# --- Answers: called in order, the first non-None result wins --------------


@hookspec
def respond_to_message(hub: Hub, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    """Return a `hub.Reply` to answer the message, or None to let the next responder try.

    Called by the inbox worker after `on_message_received`. Responders
    that should run last (an offline rule engine) use
    `@hookimpl(trylast=True)`.
    """


@hookspec
def contact_context(hub: Hub, contact: ContactRef) -> ContextSection | None:
    """Return a `hub.ContextSection` an agent should see about this contact, or None.

    Called each time a contact's context is shown (`hub contacts show`,
    the Chatwoot panel); every section returned is shown.
    """
