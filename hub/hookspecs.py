"""Every hook a plugin can implement: the plugin author's reference.

Implement a hook by defining a function of the same name decorated with
`hub.hookimpl`; take only the arguments you need (pluggy passes them by
name). Any event implementation may be `async def`: the core awaits it.
The `hub` argument is the port, `hub.HubPort`: the only part of the hub a
plugin may use.

Each spec declares how it is called:
- `@once` (registration): runs once while the hub starts; must be a plain
  `def`. An async one, or one that raises, stops start-up with an error
  naming the plugin.
- `firstresult=True`: implementations run in order until one returns
  something other than None, which wins.
- otherwise every implementation runs; a failing one is logged with its
  plugin name and counted, and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pluggy

if TYPE_CHECKING:
    import click
    from aiohttp import web
    from pydantic import BaseModel

    from hub.channels import Channel
    from hub.port import HubPort
    from hub.events import (
        AppointmentRef, ContactRef, Conversation, DeferredEvent, DeliveryStatus, IdentityRef, InboxEvent, ReceivedMessage,
    )
    from hub.responders import ContextSection, Reply, Tool

hookspec = pluggy.HookspecMarker("hub")

ONCE_ATTRIBUTE = "hub_once"

F = TypeVar("F", bound=Callable[..., object])


def once(function: F) -> F:
    """Mark a spec as a registration hook: called once at start-up, never per event."""
    setattr(function, ONCE_ATTRIBUTE, True)
    return function


# --- Registration: called once at start-up -------------------------------


@once
@hookspec
def register_settings() -> type[BaseModel] | None:
    """Return the pydantic model of this plugin's settings, or None if it has none.

    Called once, before anything else, to validate `[plugins.<name>]` in
    config.toml (and a tenant's `[tenants.<slug>.plugins.<name>]` overrides).
    Subclass `hub.PluginSettings` (unknown keys are errors) or
    `hub.ProviderSettings` (adds `sandbox = true`). Mark secrets with
    pydantic's `SecretStr`; config supplies them as `{env = "NAME"}` and
    they are masked everywhere. Read the result with
    `hub.settings_for("<name>", tenant)`. A plugin whose table is absent and whose
    model has required fields is loaded but "not configured".
    """


@once
@hookspec
def register_channels(hub: HubPort) -> list[Channel] | None:
    """Return the channels this plugin provides (see `hub.Channel`).

    Called once after settings are validated. Channel names must be unique
    across plugins; a plugin that is not configured should return none.
    """


@once
@hookspec
def register_routes(hub: HubPort) -> list[web.AbstractRouteDef] | web.RouteTableDef | None:
    """Return aiohttp routes; they are mounted as the sub-app `/webhooks/<plugin>/`.

    Called once when the HTTP app is built. Handlers verify the vendor's
    signature, build a `hub.InboxEvent`, `await hub.accept(...)` it and
    answer at once: slow work belongs to the workers.
    """


@hookspec
def register_tools(hub: HubPort, tenant: str) -> list[Tool] | None:
    """Return the tools a responder may call for this tenant (each a `hub.Tool`).

    Called each time a responder prepares to answer, and by `hub tools`.
    Return none for a tenant this plugin is not configured for.
    """


@once
@hookspec
def register_template_dirs() -> list[str] | None:
    """Return extra template folders, searched after the tenant's own and before the defaults.

    Called once at start-up.
    """


@once
@hookspec
def register_commands(cli: click.Group) -> None:
    """Add this plugin's sub-commands to the `hub` command line.

    Called once when the CLI starts, before arguments are parsed, e.g.
    `cli.add_command(calendly_group)` for `hub calendly subscribe`. A
    command's body runs with the opened hub through `hub.run_with_hub(body)`
    (import click and your command module inside this hook, so importing the
    plugin stays light).
    """


# --- Lifecycle -------------------------------------------------------------


@hookspec
def on_startup(hub: HubPort) -> None:
    """Open clients and sessions; called each time a process opens the hub.

    That is `hub serve`, `hub worker`, and every CLI command that uses the
    database. Keep it cheap: connect lazily where you can.
    """


@hookspec
def on_shutdown(hub: HubPort) -> None:
    """Close what `on_startup` opened; called each time a process closes the hub."""


# --- Events: called once per event, every implementation runs --------------


@hookspec
def on_message_received(hub: HubPort, message: ReceivedMessage) -> None:
    """An inbound message was recorded and its contact linked.

    Called by the inbox worker once the message is committed, before
    `respond_to_message`. Keep it quick (it runs in the worker's lane);
    anything that must not be lost goes through `hub.accept` or
    `hub.request_opt_out`. Return value is ignored.
    """


@hookspec
def on_delivery_status(hub: HubPort, status: DeliveryStatus) -> None:
    """A provider reported sent / delivered / read / undelivered / failed for a message.

    Called after the status was applied to the stored message (a status
    never moves backwards; a stale one is not reported).
    """


@hookspec
def on_appointment_changed(hub: HubPort, appointment: AppointmentRef, change: str) -> None:
    """An appointment was created, rescheduled, canceled or marked no-show.

    `change` is one of "created", "updated", "rescheduled", "reinstated" (scheduled
    again at the same time after a cancellation or no-show), "canceled", "no_show";
    fired by `hub.upsert_appointment` (API, booking sources) after commit; or
    "confirmed" (the client said yes, `appointment.confirmed_at` is set), fired by
    `hub.confirm_appointment` after commit.

    Called after the change and its reminders were stored.
    """


@hookspec
def on_contact_linked(hub: HubPort, contact: ContactRef, identity: IdentityRef) -> None:
    """A new identity joined a contact, or another contact was merged into it.

    Called after the link is committed; `identity` is the address that
    was added (for a merge, the one that proved the two were one person).
    """


@hookspec
def on_handoff(hub: HubPort, conversation: Conversation, reason: str, summary: str) -> bool | None:
    """A conversation was handed to a human: deliver it to where the humans work.

    Called after the transaction that marked the conversation human-handled
    committed (`hub.hand_off`, or a responder's `Reply(handoff=True)`);
    `conversation.handler` is "human". `reason` says why ("asked for a
    person", "repeated misunderstanding", "tool failed"...), `summary` is what
    a person needs to pick the conversation up. Return True when this plugin
    delivered it (Chatwoot opened it to its agents) for this tenant; when no
    implementation returns True, the core emails the tenant's `handoff_email`.
    """


# --- Answers: called in order, the first non-None result wins --------------


@hookspec(firstresult=True)
def respond_to_message(hub: HubPort, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    """Return a `hub.Reply` to answer the message, or None to let the next responder try.

    Called after `on_message_received`, outside the inbox worker and any
    database transaction, one message at a time per conversation, in the
    order the messages arrived (also across worker processes), within the
    tenant's responder timeout. Responders that should run last (an
    offline rule engine) use `@hookimpl(trylast=True)`. The reply is queued
    through the outbox on the conversation's channel.
    """


# Issue 13: webhooks completed later, through the inbox.
@hookspec(firstresult=True)
def complete_event(hub: HubPort, event: DeferredEvent) -> list[InboxEvent] | None:
    """Return the events a `hub.DeferredEvent` of yours stands for (an empty list: nothing to do), or None if it is not yours.

    Called by the inbox worker for each `DeferredEvent` a plugin accepted
    (`hub.accept(DeferredEvent(tenant=..., plugin=..., name=..., payload=...), ...)`),
    inside the event's transaction; the events returned are processed there
    at once. Raise (or let a vendor error out) when it cannot be completed
    yet: the inbox retries the event with its backoff, up to
    `inbox_max_attempts`.
    """


@hookspec
def contact_context(hub: HubPort, contact: ContactRef) -> ContextSection | None:
    """Return a `hub.ContextSection` an agent should see about this contact, or None.

    Called each time a contact's context is shown (`hub contacts show`,
    the Chatwoot panel); every section returned is shown.
    """
