"""The port: everything a plugin may use of the hub, and nothing else.

Every hook that receives the hub receives it typed as `HubPort`. Plugins
code against this interface only (a test and the type checker enforce it):
the core behind it may change, the port changes only on purpose, and each
member is documented here for plugin authors (see also docs/plugins.md).

The hub is handed to plugins only once it is fully built; `on_startup`
runs after the database is ready. Importing this module is light: it pulls
in no database engine, CLI or HTTP server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from hub.appointment_input import AppointmentInput
    from hub.business import BusinessProfile
    from hub.contact_view import ContactView
    from hub.events import AppointmentRef, InboxEvent
    from hub.notifications import NotificationRequest
    from hub.responders import ContactDetails, ContextSection, ConversationMessage, Tool

T = TypeVar("T")


@dataclass(frozen=True)
class TenantProfile:
    """What a plugin may know about a tenant."""

    slug: str
    name: str
    default_region: str
    """ISO 3166 region used to read phone numbers written without a country code."""
    timezone: str
    """IANA time zone, e.g. "Europe/Madrid"."""
    locale: str
    """Default locale of the tenant's messages, e.g. "es" or "es-MX"."""


@dataclass(frozen=True)
class AppointmentUpdate:
    """What `HubPort.upsert_appointment` did: the appointment after it, and the change.

    `change` is "created", "updated", "rescheduled", "reinstated", "canceled",
    "no_show" or "unchanged".
    """

    appointment: AppointmentRef
    change: str
    notifications: tuple[int, ...] = ()
    """Ids of the notifications this upsert created or re-armed."""


@dataclass(frozen=True)
class Job:
    """One plugin job as its handler sees it (`HubPort.enqueue_job`); `attempt` is 1 on the first try."""

    tenant: str
    plugin: str
    kind: str
    key: str
    payload: dict[str, Any]
    attempt: int


JobHandler = Callable[[Job], Awaitable[None]]
"""Runs one job; raise `hub.TransientError` to retry later, `hub.PermanentError` to give up."""


class HubPort(Protocol):
    """The hub as plugins see it."""

    @property
    def public_url(self) -> str:
        """The hub's public base URL (no trailing slash), for callback and webhook URLs given to vendors."""
        ...

    # --- settings and tenants ------------------------------------------------

    def settings_for(self, plugin: str, tenant: str | None = None) -> Any:
        """The plugin's validated settings (its `register_settings` model) for a tenant, or None.

        With `tenant=None`, the plugin-wide settings. A tenant's own settings
        override the plugin-wide ones key by key. Cheap: resolved once and cached.
        """
        ...

    def configured_tenants(self, plugin: str) -> list[str]:
        """Slugs of the tenants for which `settings_for(plugin, slug)` is not None."""
        ...

    async def tenant(self, slug: str) -> TenantProfile:
        """The tenant with this slug; raises `hub.UnknownTenant`."""
        ...

    # --- events in --------------------------------------------------------------

    async def accept(self, event: InboxEvent, *, source: str, dedupe_key: str) -> bool:
        """Store a verified webhook event durably; False if (source, dedupe_key) was already stored.

        Returns once the event is committed: answer the vendor only after it.
        The event is processed later by the workers (linking, hooks, replies).
        """
        ...

    async def request_opt_out(
        self, tenant: str, *, address_kind: str, address: str, medium: str, opted_out: bool, source: str, dedupe_key: str,
        confirm: bool = False,
    ) -> bool:
        """Durably ask for an address to be opted out of (or back into) a medium.

        The request travels the inbox like a webhook event: it survives a
        crash, is retried, and is applied exactly once per dedupe key.
        Returns False for a duplicate. With `confirm=True`, an opt-out that
        changes anything also queues the tenant's one confirmation message
        (kind "opt_out_confirmation", template "opt_out") on that medium:
        for channels whose provider does not confirm by itself (WhatsApp).
        """
        ...

    # --- use cases --------------------------------------------------------------

    async def notify(self, *, tenant: str, request: NotificationRequest) -> int:
        """Queue a notification (its own transaction); returns the notification id.

        With an `idempotency_key`, a repeat returns the first notification's id.
        """
        ...

    async def upsert_appointment(self, tenant: str, data: AppointmentInput) -> AppointmentUpdate:
        """Create or update an appointment and (re)plan its confirmation, reminders and notices."""
        ...

    def render_inline(self, source: str, *, locale: str, timezone: str, context: Mapping[str, Any], name: str = "<inline>") -> str:
        """Render a short template given as text with the hub's filters and sandbox.

        Raises `hub.TemplateError` naming the template and the problem.
        """
        ...

    async def tools_for(self, tenant: str) -> list[Tool]:
        """Every tool the plugins offer a responder for this tenant (`register_tools`)."""
        ...

    async def contact_context(self, tenant: str, contact_id: int) -> list[ContextSection]:
        """Every section the plugins return for this contact (`contact_context`)."""
        ...

    # --- conversations: bot or human ------------------------------------------------

    async def hand_off(self, tenant: str, conversation_id: int, *, reason: str, summary: str) -> None:
        """Give the conversation to a human: the responders stay silent in it until it is released.

        Marks it human-handled (with when and why) and, once that commits,
        fires `on_handoff(hub, conversation, reason, summary)`; when no plugin
        takes the hand-off, the tenant's `handoff_email` gets it through the
        outbox. Handing off a conversation a human already has does nothing.
        Raises `hub.HubError` for a conversation that is not the tenant's.
        """
        ...

    async def release(self, tenant: str, conversation_id: int, *, reason: str) -> None:
        """Give the conversation back to the bot (a human resolved it, a command); nothing if the bot has it."""
        ...

    async def conversation_handler(self, tenant: str, conversation_id: int) -> str:
        """Who answers the conversation: "bot" or "human".

        A human's hold older than the tenant's `handoff_release_after` is
        released (reason "timeout") before answering, so this says "bot" then.
        """
        ...

    # --- responders: the person being answered, and only them -----------------------

    async def recent_messages(self, tenant: str, conversation_id: int, limit: int = 10) -> list[ConversationMessage]:
        """The conversation's last messages (at most `limit`, up to 100), oldest first.

        Outbound ones carry the kind of notification that sent them ("reminder",
        "reply"...) and its appointment, so a reply to a reminder can act on it.
        """
        ...

    async def conversation_context(
        self, plugin: str, tenant: str, conversation_id: int, limit: int = 10
    ) -> tuple[ContactDetails, list[ConversationMessage], dict[str, Any]]:
        """(`contact_details` of the conversation's contact, `recent_messages`, this plugin's `conversation_state`).

        The three reads a responder makes for every message, read together (fewer round trips);
        raises `hub.HubError` for a conversation of another tenant.
        """
        ...

    async def contact_details(self, tenant: str, contact_id: int) -> ContactDetails:
        """The contact's name, locale, time zone, phones and emails; raises `hub.UnknownContact`."""
        ...

    async def contact_appointments(self, tenant: str, contact_id: int, *, include_past: bool = False) -> list[AppointmentRef]:
        """The contact's own scheduled appointments, soonest first; upcoming only unless `include_past`."""
        ...

    async def confirm_appointment(self, tenant: str, contact_id: int, appointment_id: int) -> AppointmentRef:
        """Mark one of the contact's own appointments confirmed by the client (`confirmed_at`).

        Fires `on_appointment_changed` with change "confirmed" after commit (once:
        confirming again changes nothing). Raises `hub.HubError` for an
        appointment that is not this contact's, or not scheduled.
        """
        ...

    async def cancel_appointment(self, tenant: str, contact_id: int, appointment_id: int, *, reason: str = "") -> AppointmentRef:
        """Cancel one of the contact's own appointments in the hub (reminders dropped, cancellation notice sent).

        A booking source's own cancellation (Calendly's `calendly_cancel` tool)
        is the responder's to call first. Raises `hub.HubError` for an
        appointment that is not this contact's.
        """
        ...

    async def set_contact_email(self, tenant: str, contact_id: int, email: str) -> bool:
        """Keep an email address the client gave on their contact; False when it is another contact's (nothing merged).

        Raises `hub.InvalidAddress` for something that is not an email address.
        """
        ...

    async def record_call(
        self, tenant: str, conversation_id: int, *, kind: str, name: str, outcome: str, tokens: int = 0,
        latency_ms: int = 0, detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a "model_call" or a "tool_call" on the conversation: name, outcome, tokens, latency, detail."""
        ...

    async def tokens_used_today(self, tenant: str) -> int:
        """Model tokens recorded for the tenant since midnight in its time zone (for daily budgets)."""
        ...

    async def conversation_state(self, plugin: str, tenant: str, conversation_id: int) -> dict[str, Any]:
        """This plugin's small dialogue state for a conversation (slots offered, a yes awaited); {} at first."""
        ...

    async def set_conversation_state(self, plugin: str, tenant: str, conversation_id: int, value: dict[str, Any]) -> None:
        """Replace this plugin's dialogue state for a conversation; {} clears it."""
        ...

    async def business_profile(self, tenant: str) -> BusinessProfile:
        """The tenant's business profile: services, prices, address, opening hours (the `business` policy key)."""
        ...

    # --- plugin state -------------------------------------------------------------

    async def get_plugin_data(self, plugin: str, tenant: str, key: str) -> dict[str, Any] | None:
        """A small JSON value this plugin stored for a tenant with `set_plugin_data`, or None."""
        ...

    async def set_plugin_data(self, plugin: str, tenant: str, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) a small JSON value for this plugin and tenant (durable, shared by processes)."""
        ...

    def runtime(self, plugin: str, factory: Callable[[HubPort], T]) -> T:
        """The one per-process object this plugin keeps for this hub (clients, caches), made on first use.

        Plugins keep no module-level state: what their hooks, routes and
        commands share lives here. Close what it opened in `on_shutdown`.
        """
        ...

    # --- chatwoot (issue 11): contact read model, linking, durable plugin jobs ----

    async def contact_view(self, tenant: str, contact_id: int) -> ContactView:
        """One contact as an agent panel shows it: identities and opt-outs, appointments, notifications, timeline.

        A merged contact's id gives the contact it was merged into. Raises
        `hub.UnknownContact` for an id of another tenant.
        """
        ...

    async def find_contact_id(self, tenant: str, kind: str, address: str) -> int | None:
        """The id of the contact owning an address (normalised as the hub stores it), or None."""
        ...

    async def link_identities(
        self, tenant: str, addresses: Sequence[tuple[str, str]], *, name: str | None = None, reason: str
    ) -> int:
        """Link (kind, raw address) pairs known to be one person into one contact; returns its id.

        Goes through the hub's one resolver: addresses are normalised (a
        phone in the tenant's region), contacts sharing any of them are
        merged, and `on_contact_linked` fires for each new identity.
        Addresses that do not parse are left out; raises ValueError when
        none is usable. Its own transaction.
        """
        ...

    async def record_outbound(
        self, tenant: str, *, contact_id: int, medium: str, channel: str, body: str, provider_id: str,
        sent_at: dt.datetime | None = None,
    ) -> int | None:
        """Record a message a person sent to the contact outside the hub (an agent's reply in a helpdesk).

        It shows in the contact's timeline. Returns the id of the hub
        conversation it was recorded in, or None when a message with this
        (channel, provider_id) is already recorded, e.g. one the hub sent
        itself and the vendor echoed back.
        """
        ...

    async def find_conversation_id(self, tenant: str, contact_id: int, medium: str) -> int | None:
        """The id of the contact's conversation on a medium (what `hand_off` and `release` take), or None."""
        ...

    async def cancel_notification(self, tenant: str, notification_id: int, *, reason: str) -> bool:
        """Cancel a pending notification; False when it is no longer pending. Raises `hub.UnknownContact` for another tenant's id."""
        ...

    async def enqueue_job(
        self, plugin: str, tenant: str, kind: str, key: str, payload: Mapping[str, Any], *,
        delay_seconds: float = 0.0, once: bool = False,
    ) -> bool:
        """Durably queue plugin work under a key (committed when this returns).

        While a job with this key is pending, enqueueing it again replaces
        its payload and keeps its due time: a burst becomes one run, at
        most `delay_seconds` after the first. A key whose job is done is
        armed again, unless `once`, which makes the key a dedupe key and
        returns False for a repeat. The handler registered with
        `handle_jobs` runs it in a worker; see `hub.Job`.
        """
        ...

    def handle_jobs(self, plugin: str, kind: str, handler: JobHandler) -> None:
        """Register the coroutine that runs this plugin's jobs of one kind (call it from `on_startup`).

        The handler gets a `hub.Job`; raising `hub.TransientError` retries it
        with backoff (its `retry_after` honoured), `hub.PermanentError` sets
        it aside, anything else retries a bounded number of times.
        """
        ...
