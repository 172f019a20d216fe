"""`hub tenants`: create tenants and issue their API keys."""

from __future__ import annotations

import click
from pydantic import ValidationError
from sqlalchemy import select

from hub.cli import with_open_hub
from hub.config import TenantSettings, slug_problem
from hub.core import Hub
from hub.models import Tenant
from hub.tenants import issue_api_key, upsert_tenant


@click.group()
def tenants() -> None:
    """Tenants and API keys."""


@tenants.command()
@click.argument("slug")
@click.option("--name", default="", help="Display name (default: the slug).")
@click.option("--region", default="ES", show_default=True, help="Default phone region (ISO 3166).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--locale", default="en", show_default=True)
@with_open_hub
async def create(hub: Hub, slug: str, name: str, region: str, timezone: str, locale: str) -> None:
    """Create a tenant and print a new API key (shown once, stored hashed)."""
    if problem := slug_problem(slug):
        raise click.BadParameter(problem, param_hint="SLUG")
    try:
        settings = TenantSettings(name=name or slug, default_region=region, timezone=timezone, locale=locale)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"default_region": "region"}.get(str(error["loc"][0]), str(error["loc"][0]))
        raise click.BadParameter(error["msg"].removeprefix("Value error, "), param_hint=f"--{option}") from None
    async with hub.db.sessions.begin() as session:
        if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise click.ClickException(f"tenant {slug!r} already exists (use `hub tenants key {slug}` for a new key)")
        info, _ = await upsert_tenant(session, slug, settings)
        key = await issue_api_key(session, info.id)
    click.echo(f"created tenant {slug} ({info.default_region}, {info.timezone}, {info.locale})", err=True)
    click.echo(f"API key (shown once): {key}", err=True)
    click.echo(key)


@tenants.command()
@click.argument("slug")
@with_open_hub
async def key(hub: Hub, slug: str) -> None:
    """Issue another API key for an existing tenant."""
    info = await hub.tenants.get(slug)
    async with hub.db.sessions.begin() as session:
        click.echo(await issue_api_key(session, info.id))


@tenants.command(name="list")
@with_open_hub
async def list_(hub: Hub) -> None:
    """List tenants."""
    for info in await hub.tenants.all():
        click.echo(f"{info.slug}\t{info.name}\t{info.default_region}\t{info.timezone}\t{info.locale}")
