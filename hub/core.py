"""The Hub: one object that owns config, plugins, database and workers.

Build it with `Hub.build(config)` (loads plugins and validates their
settings: no I/O), then `await hub.open()` before use and `await
hub.close()` after. Everything else reaches the hub through this object;
there is no module-level state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pluggy
import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from hub import conversations, handoff
from hub.appointments import AppointmentChange, AppointmentInput, appointment_processors, upsert_appointment, upsert_appointments

from hub.channels import Channel, Health
from hub.config import Config, resolve_secrets, validate_table
from hub.contacts import LinkOutcome, set_opt_out
from hub import contact_actions
from hub.contact_reads import load_contact_view
from hub.contact_view import ContactView
from hub.plugin_jobs import PluginJobs
from hub.database import Database
from hub.deferred_events import deferred_processors
from hub.dispatcher import Dispatcher
from hub.errors import ConfigError, PluginLoadError, UnknownContact
from hub.events import AppointmentRef, ContactRef, InboxEvent, OptOutEvent
from hub.inbox import Inbox
from hub.messaging import message_batch_processors, message_processors
from hub.metrics import HubMetrics
from hub.outbound_webhooks import KIND as WEBHOOK_KIND
from hub.outbound_webhooks import appointment_data
from hub.outbound_webhooks import emit as emit_webhooks
from hub.outbound_webhooks import subscriptions as webhook_subscriptions
from hub.webhook_channel import WebhookChannel
from hub.models import Contact, PluginData, WebhookSubscription
from hub.notifications import NotificationRequest
from hub.outbox import Enqueued, enqueue, enqueue_many
from hub.plugins import HookCaller, PluginInfo, build_plugin_manager, discover
from hub.port import AppointmentUpdate, HubPort, JobHandler, TenantProfile
from hub.business import BusinessProfile
from hub.rate_limits import RateLimiter
from hub.responders import ContactDetails, ContextSection, ConversationMessage, Tool
from hub.responding import ResponderRunner
from hub.templates import SHIPPED_TEMPLATES, Templates
from hub.settings import ProviderSettings
from hub.tenant_settings import TenantSettingsStore
from hub.tenants import TenantDirectory, TenantInfo, upsert_tenant
from hub.unit_of_work import UnitOfWork, unit_of_work

T = TypeVar("T")


@dataclass(frozen=True)
class PluginState:
    """A loaded plugin as `hub plugins` and /health show it."""

    info: PluginInfo
    settings: BaseModel | None
    configured: bool
    problem: str = ""

    @property
    def sandbox(self) -> bool | None:
        """True or False for a provider plugin, None when the plugin has no sandbox switch."""
        value = getattr(self.settings, "sandbox", None)
        return value if isinstance(value, bool) else None


class Hub:
    """The running hub; see the module docstring for its life cycle."""

    def __init__(self, config: Config, pm: pluggy.PluginManager, plugins: list[PluginInfo]) -> None:
        self.config = config
        self.pm = pm
        self.hooks = HookCaller(pm)
        self.log = structlog.get_logger("hub")
        self.db = Database(config.hub.database_url)
        self.tenants = TenantDirectory(self.db.sessions)
        # Issue 13: request limits per tenant (API) and per source (webhooks).
        self.rate_limits = RateLimiter(self.db)
        self.inbox = Inbox(
            self.db, self.tenants, max_attempts=config.hub.inbox_max_attempts, poll_seconds=config.hub.inbox_poll_seconds,
            unit_of_work=self.unit_of_work,
        )
        self.inbox.processors.update(message_processors(self))
        self.inbox.batch_processors.update(message_batch_processors(self))
        self.inbox.processors.update(appointment_processors(self))
        self.inbox.processors.update(deferred_processors(self))  # issue 13: webhooks plugins complete later
        self.dispatcher = Dispatcher(self)
        self.responders = ResponderRunner(self)
        self.plugin_jobs = PluginJobs(self.db, self.tenants, poll_seconds=config.hub.inbox_poll_seconds)
        # issue 12: this process's Prometheus metrics (hub/metrics.py)
        self.metrics = HubMetrics()
        self._settings_models: dict[str, type[BaseModel]] = {}
        self.plugins: dict[str, PluginState] = {}
        self.tenant_settings = TenantSettingsStore(config, self.db, self._settings_models, self.plugins)
        self._validate_settings(plugins)
        self._plugin_runtimes: dict[str, Any] = {}
        template_dirs = [Path(d) for _, dirs in self.hooks.call_sync("register_template_dirs") for d in dirs]
        # Plugin folders come before the shipped ones, as the hookspec promises.
        self.templates = Templates([*template_dirs, SHIPPED_TEMPLATES])
        self.channels: dict[str, Channel] = {}
        self.channel_plugins: dict[str, str] = {}
        """Channel name -> the plugin that provides it."""
        # Last: a plugin is handed the hub only once everything else is built.
        self._register_channels()
        # issue 12: outbound webhooks are deliveries on the core's own "webhook" channel.
        if WEBHOOK_KIND in self.channels:
            raise PluginLoadError(f"plugin {self.channel_plugins[WEBHOOK_KIND]!r}: the channel name {WEBHOOK_KIND!r} is the hub's own")
        self.channels[WEBHOOK_KIND] = WebhookChannel(self)

    @classmethod
    def build(cls, config: Config) -> Hub:
        """Load every plugin and validate its settings; raises StartupError naming the cause."""
        sources = discover(config.plugin_dir_paths())
        pm, infos = build_plugin_manager(sources, config.hub.disabled)
        return cls(config, pm, infos)

    # --- plugins and settings ---------------------------------------------

    def _validate_settings(self, infos: list[PluginInfo]) -> None:
        loaded = {info.name for info in infos}
        for name in self.config.plugins:
            if name not in loaded and name not in self.config.hub.disabled:
                raise ConfigError(self.config.path, f"plugins.{name}", "no plugin of that name is loaded")
        for slug, tenant in self.config.tenants.items():
            for name in tenant.plugins:
                if name not in loaded and name not in self.config.hub.disabled:
                    raise ConfigError(self.config.path, f"tenants.{slug}.plugins.{name}", "no plugin of that name is loaded")
        models = dict(self.hooks.call_sync("register_settings"))
        for info in infos:
            model = models.get(info.name)
            if model is None:
                self.plugins[info.name] = PluginState(info, None, True)
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginLoadError(f"plugin {info.name!r}: register_settings must return a pydantic model class")
            self._settings_models[info.name] = model
            table = self.config.plugins.get(info.name)
            if table is None:
                try:
                    settings = model()
                except Exception:
                    # Loaded but not set up: its channels stay off; that is not an error.
                    self.plugins[info.name] = PluginState(info, None, False, "no [plugins.%s] table" % info.name)
                    continue
                self.plugins[info.name] = PluginState(info, settings, True)
                continue
            if (missing := self._missing_keys_only(model, table, f"plugins.{info.name}")) is not None:
                # Issue 13: a global table without the account keys (only `sandbox = false`, say) holds
                # defaults for the tenants that bring their own account; their merged settings are checked below.
                self.plugins[info.name] = PluginState(info, None, False, f"[plugins.{info.name}] has no {missing}: set per tenant")
                continue
            settings = self._validate_plugin_table(model, table, f"plugins.{info.name}")
            self.plugins[info.name] = PluginState(info, settings, True)
        for slug, tenant in self.config.tenants.items():
            for name in tenant.plugins:
                if name in self.plugins:
                    self.settings_for(name, slug)  # fail at start, not on the first event

    def _missing_keys_only(self, model: type[BaseModel], table: Mapping[str, Any], where: str) -> str | None:
        """The first missing key when the table is only defaults for tenants, else None.

        Only defaults: it holds nothing but provider switches (`sandbox`), or a tenant brings its
        own table for the plugin; and all that is wrong with it alone is keys left to the tenants.
        """
        plugin = where.removeprefix("plugins.")
        switches_only = bool(table) and set(table) <= set(ProviderSettings.model_fields)
        if not switches_only and not any(plugin in tenant.plugins for tenant in self.config.tenants.values()):
            return None
        try:
            model.model_validate(resolve_secrets(table, self.config.path, where, self.config.environ))
        except ValidationError as exc:
            errors = exc.errors()
            if errors and all(error["type"] == "missing" for error in errors):
                return ".".join(str(part) for part in errors[0]["loc"])
        return None

    def _validate_plugin_table(self, model: type[BaseModel], table: Mapping[str, Any], where: str) -> BaseModel:
        resolved = resolve_secrets(table, self.config.path, where, self.config.environ)
        return validate_table(model, resolved, self.config.path, where)

    def settings_for(self, plugin: str, tenant: str | None = None) -> Any:
        """A plugin's validated settings, with the tenant's overrides applied; None if not configured.

        Cached: resolved once per tenant, refreshed when config.toml tenants or
        database settings change (see hub.tenant_settings).
        """
        return self.tenant_settings.resolve(plugin, tenant)

    def configured_tenants(self, plugin: str) -> list[str]:
        """Slugs of the tenants with settings for `plugin`: config.toml tenants, and database tenants with their own."""
        return self.tenant_settings.configured_tenants(plugin)

    def _register_channels(self) -> None:
        for plugin, channels in self.hooks.call_sync("register_channels", hub=self):
            for channel in channels:
                if not isinstance(channel, Channel):
                    raise PluginLoadError(f"plugin {plugin!r}: {channel!r} is not a channel (see hub.Channel)")
                if channel.name in self.channels:
                    raise PluginLoadError(f"plugin {plugin!r}: a channel named {channel.name!r} already exists")
                self.channels[channel.name] = channel
                self.channel_plugins[channel.name] = plugin

    # --- hooks ------------------------------------------------------------

    async def call(self, hook: str, /, **kwargs: Any) -> Any:
        """Call an event hook as its spec declares (first result wins, or every result); see `HookCaller.call`."""
        return await self.hooks.call(hook, **kwargs)

    def announce_link(self, uow: UnitOfWork, outcome: LinkOutcome) -> None:
        """Register `on_contact_linked` for each identity a link added and each contact it merged."""
        if outcome.merged:  # issue 12: contact.merged to the tenant's webhooks, once the merge is committed
            uow.after_commit("contact.merged webhooks", partial(self._emit_merged, outcome.contact, list(outcome.merged)))
        announced = list(outcome.added)
        if outcome.merged and not outcome.added:
            announced.append(outcome.identities[0])
        for identity in announced:
            uow.after_commit(
                "on_contact_linked", partial(self.call, "on_contact_linked", hub=self, contact=outcome.contact, identity=identity)
            )

    async def _emit_merged(self, contact: ContactRef, merged: list[int]) -> None:
        info = await self.tenants.get(contact.tenant)
        async with self.unit_of_work() as uow:
            await emit_webhooks(uow.session, info, "contact.merged", {"contact_id": contact.id, "merged_contact_ids": merged})
        self.dispatcher.wake()

    # --- life cycle -------------------------------------------------------

    async def open(self, *, migrate: bool | None = None) -> None:
        """Check (or migrate) the database, create config tenants, and run `on_startup`."""
        auto = self.config.hub.should_auto_migrate if migrate is None else migrate
        await self.db.ensure_migrated(auto)
        async with self.db.sessions.begin() as session:
            for slug, settings in self.config.tenants.items():
                info, _ = await upsert_tenant(session, slug, settings)
                self.tenants.remember(info)
        await self.tenant_settings.start()
        await self.call("on_startup", hub=self)

    async def close(self) -> None:
        """Run `on_shutdown` and close the database."""
        await self.call("on_shutdown", hub=self)
        await self.tenant_settings.stop()
        await self.responders.close()
        await self.db.close()

    @asynccontextmanager
    async def running(self, *, migrate: bool | None = None) -> AsyncIterator[Hub]:
        """`open` ... `close` as a context manager."""
        await self.open(migrate=migrate)
        try:
            yield self
        finally:
            await self.close()

    @asynccontextmanager
    async def workers(self) -> AsyncIterator[None]:
        """Run the background workers (inbox processor, dispatcher) for the duration of the block."""
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self.inbox.run(stop), name="hub-inbox-worker"),
            asyncio.create_task(self.dispatcher.run(stop), name="hub-dispatcher"),
            asyncio.create_task(self.responders.run(stop), name="hub-responders"),
            asyncio.create_task(self.plugin_jobs.run(stop), name="hub-plugin-jobs"),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    # --- use cases ---------------------------------------------------------

    def tenant_template_dir(self, tenant: TenantInfo) -> Path | None:
        """The tenant's own template folder, if it has one (relative paths are from the config file)."""
        if not tenant.templates_dir:
            return None
        return self.config.base_dir / tenant.templates_dir

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction for one use case, with effects that run after it commits (see hub.unit_of_work)."""
        return unit_of_work(self.db.sessions)

    def wake_dispatcher(self, uow: UnitOfWork) -> None:
        """Have the dispatcher look for due work as soon as this unit of work commits."""
        uow.after_commit("wake dispatcher", self.dispatcher.wake, once_key="wake dispatcher")

    async def queue_notification(self, uow: UnitOfWork, *, tenant: str, request: NotificationRequest) -> Enqueued:
        """Queue a notification inside the caller's unit of work; the dispatcher is woken when it commits."""
        info = await self.tenants.get(tenant)
        queued = await enqueue(uow.session, info, request)
        self.wake_dispatcher(uow)
        if queued.link is not None:
            self.announce_link(uow, queued.link)
        return queued

    async def queue_notifications(self, uow: UnitOfWork, *, tenant: str, requests: Sequence[NotificationRequest]) -> list[Enqueued]:
        """Queue a batch inside the caller's unit of work (set-based, see `hub.outbox.enqueue_many`); one answer per request."""
        info = await self.tenants.get(tenant)
        queued = await enqueue_many(uow.session, info, requests)
        if queued:
            self.wake_dispatcher(uow)
        for one in queued:
            if one.link is not None:
                self.announce_link(uow, one.link)
        return queued

    async def notify(self, *, tenant: str, request: NotificationRequest) -> int:
        """Queue a notification in its own unit of work; returns its id (the port's `notify`)."""
        async with self.unit_of_work() as uow:
            queued = await self.queue_notification(uow, tenant=tenant, request=request)
        return queued.id

    async def apply_appointment(self, uow: UnitOfWork, tenant: TenantInfo, data: AppointmentInput) -> AppointmentChange:
        """Store an appointment and its notifications in the caller's unit of work, with its effects."""
        change = await upsert_appointment(uow.session, tenant, data)
        await self._appointment_effects(uow, tenant, change)
        return change

    async def apply_appointments(self, uow: UnitOfWork, tenant: TenantInfo, items: Sequence[AppointmentInput]) -> list[AppointmentChange]:
        """`apply_appointment` for a batch (set-based, see `hub.appointments.upsert_appointments`), each with its effects."""
        changes = await upsert_appointments(uow.session, tenant, items)
        found = await webhook_subscriptions(uow.session, [tenant.id])  # once for the batch
        for change in changes:
            await self._appointment_effects(uow, tenant, change, found)
        return changes

    async def _appointment_effects(
        self, uow: UnitOfWork, tenant: TenantInfo, change: AppointmentChange, found: Sequence[WebhookSubscription] | None = None,
    ) -> None:
        if change.change != "unchanged":  # issue 12: the tenant's webhooks, queued with the change
            await emit_webhooks(uow.session, tenant, f"appointment.{change.change}", appointment_data(change.appointment, change.change),
                                found=found)
        if change.notifications:
            self.wake_dispatcher(uow)
        if change.link is not None:
            self.announce_link(uow, change.link)
        if change.change != "unchanged":
            uow.after_commit(
                "on_appointment_changed",
                partial(self.call, "on_appointment_changed", hub=self, appointment=change.appointment, change=change.change),
            )

    async def upsert_appointment(self, tenant: str, data: AppointmentInput) -> AppointmentUpdate:
        """Store an appointment and its notifications in one unit of work (the port's `upsert_appointment`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            change = await self.apply_appointment(uow, info, data)
        return AppointmentUpdate(change.appointment, change.change, change.notifications)

    async def set_opt_out(self, tenant: str, address_kind: str, address: str, medium: str, opted_out: bool = True) -> bool:
        """Opt an address out of (or back into) one medium now; the dispatcher then skips it there."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions.begin() as session:
            return await set_opt_out(session, info, address_kind, address, medium, opted_out)

    async def request_opt_out(
        self, tenant: str, *, address_kind: str, address: str, medium: str, opted_out: bool, source: str, dedupe_key: str,
        confirm: bool = False,
    ) -> bool:
        """Durably queue an opt-out (or opt-in) through the inbox; see `HubPort.request_opt_out`."""
        event = OptOutEvent(
            tenant=tenant, address_kind=address_kind, address=address, medium=medium, opted_out=opted_out, confirm=confirm,
        )
        return await self.inbox.accept(event, source=source, dedupe_key=dedupe_key)

    # --- the rest of the port ------------------------------------------------

    @property
    def public_url(self) -> str:
        """The hub's public base URL, without a trailing slash."""
        return self.config.hub.public_url.rstrip("/")

    async def tenant(self, slug: str) -> TenantProfile:
        """The tenant with this slug as plugins see it; raises UnknownTenant."""
        info = await self.tenants.get(slug)
        return TenantProfile(info.slug, info.name, info.default_region, info.timezone, info.locale)

    async def accept(self, event: InboxEvent, *, source: str, dedupe_key: str) -> bool:
        """Store a verified webhook event durably (the port's `accept`)."""
        return await self.inbox.accept(event, source=source, dedupe_key=dedupe_key)

    def render_inline(self, source: str, *, locale: str, timezone: str, context: Mapping[str, Any], name: str = "<inline>") -> str:
        """Render a short template given as text (the port's `render_inline`)."""
        return self.templates.render_inline(source, locale=locale, timezone=timezone, context=context, name=name)

    async def tools_for(self, tenant: str) -> list[Tool]:
        """Every tool the plugins offer a responder for this tenant."""
        return [tool for tools in await self.call("register_tools", hub=self, tenant=tenant) for tool in tools]

    async def contact_context(self, tenant: str, contact_id: int) -> list[ContextSection]:
        """Every context section the plugins return for one of the tenant's contacts."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions() as session:
            contact = await session.get(Contact, contact_id)
        if contact is None or contact.tenant_id != info.id:
            raise UnknownContact(f"no contact {contact_id} in tenant {tenant!r}")
        ref = ContactRef(contact.id, info.slug, contact.name, contact.locale, contact.timezone)
        return list(await self.call("contact_context", hub=self, contact=ref))

    def runtime(self, plugin: str, factory: Callable[[HubPort], T]) -> T:
        """The one runtime object a plugin keeps for this hub (clients, caches), made by `factory` on first use.

        Plugins keep no module-level state; what they share between hooks,
        routes and commands lives here, one per hub.
        """
        if plugin not in self._plugin_runtimes:
            self._plugin_runtimes[plugin] = factory(self)
        return self._plugin_runtimes[plugin]

    async def get_plugin_data(self, plugin: str, tenant: str, key: str) -> dict[str, Any] | None:
        """A value a plugin stored for a tenant with `set_plugin_data`, or None."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions() as session:
            row = await session.scalar(
                select(PluginData).where(PluginData.tenant_id == info.id, PluginData.plugin == plugin, PluginData.key == key)
            )
        return dict(row.value) if row is not None else None

    async def set_plugin_data(self, plugin: str, tenant: str, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) a small JSON value for a plugin and tenant."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions.begin() as session:
            row = await session.scalar(
                select(PluginData).where(PluginData.tenant_id == info.id, PluginData.plugin == plugin, PluginData.key == key)
            )
            if row is None:
                session.add(PluginData(tenant_id=info.id, plugin=plugin, key=key, value=value))
            else:
                row.value = value

    # --- chatwoot (issue 11) ---------------------------------------------------

    async def contact_view(self, tenant: str, contact_id: int) -> ContactView:
        """One contact as an agent panel shows it (the port's `contact_view`)."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions() as session:
            return await load_contact_view(session, info, contact_id)

    async def find_contact_id(self, tenant: str, kind: str, address: str) -> int | None:
        """The id of the contact owning an address, or None (the port's `find_contact_id`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            return await contact_actions.find_contact_id(uow, info, kind, address)

    async def link_identities(
        self, tenant: str, addresses: Sequence[tuple[str, str]], *, name: str | None = None, reason: str
    ) -> int:
        """Link addresses of one person into one contact (the port's `link_identities`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            return await contact_actions.link_identities(self, uow, info, addresses, name=name, reason=reason)

    async def record_outbound(
        self, tenant: str, *, contact_id: int, medium: str, channel: str, body: str, provider_id: str,
        sent_at: dt.datetime | None = None,
    ) -> int | None:
        """Record a message sent to the contact outside the hub (the port's `record_outbound`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            return await contact_actions.record_outbound(
                uow, info, contact_id=contact_id, medium=medium, channel=channel, body=body, provider_id=provider_id, sent_at=sent_at
            )

    async def find_conversation_id(self, tenant: str, contact_id: int, medium: str) -> int | None:
        """The contact's conversation on a medium (the port's `find_conversation_id`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            return await contact_actions.find_conversation_id(uow, info, contact_id, medium)

    async def cancel_notification(self, tenant: str, notification_id: int, *, reason: str) -> bool:
        """Cancel one pending notification (the port's `cancel_notification`)."""
        info = await self.tenants.get(tenant)
        async with self.unit_of_work() as uow:
            return await contact_actions.cancel_notification(uow, info, notification_id, reason=reason)

    async def enqueue_job(
        self, plugin: str, tenant: str, kind: str, key: str, payload: Mapping[str, Any], *,
        delay_seconds: float = 0.0, once: bool = False,
    ) -> bool:
        """Durably queue (or coalesce) plugin work (the port's `enqueue_job`)."""
        return await self.plugin_jobs.enqueue(plugin, tenant, kind, key, payload, delay_seconds=delay_seconds, once=once)

    def handle_jobs(self, plugin: str, kind: str, handler: JobHandler) -> None:
        """Register a plugin's job handler (the port's `handle_jobs`)."""
        self.plugin_jobs.handle(plugin, kind, handler)

    # --- end chatwoot (issue 11) ---------------------------------------------

    # --- responders (issue 14) ---

    async def hand_off(self, tenant: str, conversation_id: int, *, reason: str, summary: str) -> None:
        """Give a conversation to a human (the port's `hand_off`)."""
        await handoff.hand_off(self, tenant, conversation_id, reason=reason, summary=summary)

    async def release(self, tenant: str, conversation_id: int, *, reason: str) -> None:
        """Give a conversation back to the bot (the port's `release`)."""
        await handoff.release(self, tenant, conversation_id, reason=reason)

    async def conversation_handler(self, tenant: str, conversation_id: int) -> str:
        """"bot" or "human" (the port's `conversation_handler`)."""
        return await handoff.conversation_handler(self, tenant, conversation_id)

    async def recent_messages(self, tenant: str, conversation_id: int, limit: int = 10) -> list[ConversationMessage]:
        """The conversation's last messages, oldest first (the port's `recent_messages`)."""
        return await conversations.recent_messages(self, tenant, conversation_id, limit)

    async def conversation_context(
        self, plugin: str, tenant: str, conversation_id: int, limit: int = 10
    ) -> tuple[ContactDetails, list[ConversationMessage], dict[str, Any]]:
        """Contact, recent messages and dialogue state in one read (the port's `conversation_context`)."""
        return await conversations.conversation_context(self, plugin, tenant, conversation_id, limit)

    async def contact_details(self, tenant: str, contact_id: int) -> ContactDetails:
        """The contact with its addresses (the port's `contact_details`)."""
        return await conversations.contact_details(self, tenant, contact_id)

    async def contact_appointments(self, tenant: str, contact_id: int, *, include_past: bool = False) -> list[AppointmentRef]:
        """The contact's own scheduled appointments (the port's `contact_appointments`)."""
        return await conversations.contact_appointments(self, tenant, contact_id, include_past=include_past)

    async def confirm_appointment(self, tenant: str, contact_id: int, appointment_id: int) -> AppointmentRef:
        """Mark the contact's appointment confirmed (the port's `confirm_appointment`)."""
        return await conversations.confirm_appointment(self, tenant, contact_id, appointment_id)

    async def cancel_appointment(self, tenant: str, contact_id: int, appointment_id: int, *, reason: str = "") -> AppointmentRef:
        """Cancel the contact's appointment in the hub (the port's `cancel_appointment`)."""
        return await conversations.cancel_appointment(self, tenant, contact_id, appointment_id, reason=reason)

    async def set_contact_email(self, tenant: str, contact_id: int, email: str) -> bool:
        """Keep an email the client gave (the port's `set_contact_email`)."""
        return await conversations.set_contact_email(self, tenant, contact_id, email)

    async def record_call(
        self, tenant: str, conversation_id: int, *, kind: str, name: str, outcome: str, tokens: int = 0,
        latency_ms: int = 0, detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a model or tool call on the conversation (the port's `record_call`)."""
        if kind == "model_call":
            self.metrics.count_tokens(name, tokens)  # issue 12: hub_responder_tokens_total
        await conversations.record_call(self, tenant, conversation_id, kind=kind, name=name, outcome=outcome, tokens=tokens,
                                        latency_ms=latency_ms, detail=detail)

    async def tokens_used_today(self, tenant: str) -> int:
        """The tenant's model tokens today (the port's `tokens_used_today`)."""
        return await conversations.tokens_used_today(self, tenant)

    async def conversation_state(self, plugin: str, tenant: str, conversation_id: int) -> dict[str, Any]:
        """A plugin's dialogue state for a conversation (the port's `conversation_state`)."""
        return await conversations.conversation_state(self, plugin, tenant, conversation_id)

    async def set_conversation_state(self, plugin: str, tenant: str, conversation_id: int, value: dict[str, Any]) -> None:
        """Replace a plugin's dialogue state for a conversation (the port's `set_conversation_state`)."""
        await conversations.set_conversation_state(self, plugin, tenant, conversation_id, value)

    async def business_profile(self, tenant: str) -> BusinessProfile:
        """The tenant's business profile (the port's `business_profile`)."""
        return await conversations.business_profile(self, tenant)

    # --- end responders (issue 14) ---

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(all required parts up, the JSON /health shows)."""
        db_problem = await self.db.ping()
        ok = db_problem is None
        plugins: dict[str, Any] = {}
        for name, state in self.plugins.items():
            entry: dict[str, Any] = {"configured": state.configured, "failures": self.hooks.failures.get(name, 0)}
            if not state.configured and (tenants := self.configured_tenants(name)):
                entry["configured_per_tenant"] = tenants
            if state.sandbox is not None:
                entry["sandbox"] = state.sandbox
            checks = {}
            for channel_name, channel in self.channels.items():
                if self.channel_plugins.get(channel_name) != name:
                    continue
                try:
                    result = await asyncio.wait_for(channel.check(), timeout=5)
                except Exception as exc:
                    result = Health(False, f"check failed: {type(exc).__name__}: {exc}")
                checks[channel_name] = {"ok": result.ok, "detail": result.detail, "required": result.required}
                if result.required and not result.ok:
                    ok = False
            if checks:
                entry["channels"] = checks
            plugins[name] = entry
        body = {
            "status": "ok" if ok else "unavailable",
            "database": {"ok": db_problem is None, "detail": db_problem or ""},
            "plugins": plugins,
        }
        return ok, body


