"""`hub webhooks`: a tenant's outbound webhook subscriptions (signed copies of hub events to its own URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.cli import LazyHelpOption, with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub


def _event_help() -> str:
    from hub.outbound_webhooks import EVENTS  # with the engine behind it: loaded only when the help is shown

    return f"An event or pattern, repeatable: {', '.join(EVENTS)}, appointment.*, *"


@click.group()
def webhooks() -> None:
    """Outbound webhooks: the tenant's URL gets a signed POST for each event it subscribed to."""


@webhooks.command(name="subscribe")
@click.argument("tenant")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, metavar="PATTERN", cls=LazyHelpOption, lazy_help=_event_help)
@with_open_hub
async def subscribe_(hub: Hub, tenant: str, url: str, events: tuple[str, ...]) -> None:
    """Subscribe URL to events; prints the signing secret once (stored encrypted)."""
    from hub.errors import UnknownTenant
    from hub.outbound_webhooks import SubscriptionError, subscribe

    try:
        info = await hub.tenants.get(tenant)
        async with hub.db.sessions.begin() as session:
            made = await subscribe(session, hub.tenant_settings.keyring, info, url, events)
    except (SubscriptionError, UnknownTenant) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"subscription {made.id}: {made.url} <- {', '.join(made.events)}", err=True)
    click.echo(f"signing secret (shown once): {made.secret}", err=True)
    click.echo(made.secret)


@webhooks.command(name="list")
@click.option("--tenant", help="Only this tenant's subscriptions.")
@with_open_hub
async def list_(hub: Hub, tenant: str | None) -> None:
    """List subscriptions (secrets are never shown)."""
    from sqlalchemy import select

    from hub.models import Tenant, WebhookSubscription

    async with hub.db.sessions() as session:
        query = select(WebhookSubscription, Tenant.slug).join(Tenant, Tenant.id == WebhookSubscription.tenant_id).order_by(WebhookSubscription.id)
        if tenant:
            query = query.where(Tenant.slug == tenant)
        for row, slug in (await session.execute(query)).all():
            state = "disabled" if row.disabled_at else "active"
            click.echo(f"{row.id}\t{slug}\t{row.url}\t{','.join(row.events)}\t{state}")


@webhooks.command()
@click.argument("subscription_id", type=int)
@with_open_hub
async def disable(hub: Hub, subscription_id: int) -> None:
    """Stop sending to a subscription (deliveries still queued fail as dead letters)."""
    from sqlalchemy import update

    from hub.models import WebhookSubscription, utcnow

    async with hub.db.sessions.begin() as session:
        result = await session.execute(
            update(WebhookSubscription).where(WebhookSubscription.id == subscription_id, WebhookSubscription.disabled_at.is_(None)).values(disabled_at=utcnow())
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise click.ClickException(f"no active subscription {subscription_id} (see `hub webhooks list`)")
    click.echo(f"disabled subscription {subscription_id}")
