"""`hub calendly subscribe | sync | check --tenant T`."""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from hub import run_with_hub

from .backfill import backfill, list_upcoming
from .client import WEBHOOK_EVENTS, CalendlyError
from .runtime import CalendlyPlugin
from .tools import list_event_types

T = TypeVar("T")

_tenant_option = click.option("--tenant", required=True, help="Tenant slug.")


def _run(body: Callable[[CalendlyPlugin], Awaitable[T]]) -> T:
    """Open the hub around an async command body; hub errors become one line and exit status 1."""
    return run_with_hub(lambda hub: body(CalendlyPlugin.of(hub)))


@click.group(name="calendly")
def calendly() -> None:
    """Calendly: the webhook subscription, a backfill of bookings, a token check."""


@calendly.command()
@_tenant_option
@click.option("--replace", is_flag=True, help="Delete Calendly's subscription to the same URL first (its key cannot be read back).")
def subscribe(tenant: str, replace: bool) -> None:
    """Subscribe the tenant's organisation to booking webhooks and store the signing key."""

    async def body(plugin: CalendlyPlugin) -> None:
        await plugin.hub.tenant(tenant)
        settings = plugin.require_settings(tenant)
        client = plugin.client(tenant)
        _, organization = await plugin.owner(tenant, client)
        url = plugin.callback_url(tenant)
        key = settings.signing_key.get_secret_value() if settings.signing_key else secrets.token_urlsafe(32)
        try:
            subscription = await client.create_webhook_subscription(url=url, organization=organization, signing_key=key)
        except CalendlyError as exc:
            if exc.status != 409:
                raise
            existing = [s for s in await client.webhook_subscriptions(organization=organization) if s.get("callback_url") == url]
            stored = await plugin.subscription(tenant) or {}
            if any(s.get("uri") == stored.get("uri") for s in existing) and stored.get("signing_key"):
                click.echo(f"tenant {tenant} is already subscribed: {stored['uri']} -> {url} (signing key stored)")
                return
            if not replace:
                uris = ", ".join(str(s.get("uri")) for s in existing) or "unknown"
                raise click.ClickException(
                    f"Calendly already has a webhook subscription to {url} ({uris}; 409 Already Exists) and its "
                    "signing key cannot be read back: run again with --replace to delete it and subscribe anew"
                ) from None
            for old in existing:
                await client.delete_webhook_subscription(str(old["uri"]))
            subscription = await client.create_webhook_subscription(url=url, organization=organization, signing_key=key)
        await plugin.store_subscription(tenant, {
            "uri": subscription.get("uri"), "callback_url": url, "organization": organization,
            "events": list(subscription.get("events") or WEBHOOK_EVENTS), "signing_key": key,
            "created_at": subscription.get("created_at"),
        })
        click.echo(f"subscribed tenant {tenant}: {subscription.get('uri')} -> {url}")
        click.echo(f"  events: {', '.join(subscription.get('events') or WEBHOOK_EVENTS)}; signing key stored")

    _run(body)


@calendly.command()
@_tenant_option
def sync(tenant: str) -> None:
    """Backfill upcoming Calendly bookings so they get their reminders (safe to run again)."""

    async def body(plugin: CalendlyPlugin) -> None:
        await plugin.hub.tenant(tenant)
        events = await list_upcoming(plugin, tenant, dt.datetime.now(dt.UTC))
        if sys.stderr.isatty():
            with click.progressbar(length=len(events), label="syncing Calendly events", file=sys.stderr) as bar:
                report = await backfill(plugin, tenant, events, progress=bar.update)
        else:
            report = await backfill(plugin, tenant, events)
        for problem in report.skipped:
            click.echo(f"skipped {problem}", err=True)
        click.echo(report.summary(tenant))

    _run(body)


@calendly.command()
@_tenant_option
def check(tenant: str) -> None:
    """Check the tenant's token; show its user, organisation, subscription and event types."""

    async def body(plugin: CalendlyPlugin) -> None:
        await plugin.hub.tenant(tenant)
        settings = plugin.require_settings(tenant)
        client = plugin.client(tenant)
        me = await plugin.me(tenant, client)
        _, organization = await plugin.owner(tenant, client)
        click.echo(f"token ok for tenant {tenant}: {me.get('name')} <{me.get('email')}>")
        click.echo(f"organization: {organization}")
        stored = await plugin.subscription(tenant)
        if stored:
            click.echo(f"webhook subscription: {stored.get('uri')} -> {stored.get('callback_url')}")
        else:
            click.echo(f"webhook subscription: none stored (run `hub calendly subscribe --tenant {tenant}`)")
        key_source = "config" if settings.signing_key else ("stored subscription" if stored and stored.get("signing_key") else "none")
        click.echo(f"signing key: {key_source}")
        types = await list_event_types(plugin, tenant, client)
        click.echo(f"event types ({len(types)}):")
        for item in types:
            click.echo(f"  {item.get('name')}  [{item.get('slug')}]  {item.get('duration')} min  {item.get('uri')}  {item.get('scheduling_url')}")

    _run(body)
