"""`hub templates check`: render every template a tenant would use, before a reminder does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.cli import with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub

CHECKED_MEDIUMS = ("whatsapp", "sms", "email")


@click.group()
def templates() -> None:
    """Message templates."""


@templates.command()
@click.option("--tenant", default=None, help="Tenant slug (default: every tenant).")
@with_open_hub
async def check(hub: Hub, tenant: str | None) -> None:
    """Render each tenant's templates with sample data; print problems, exit 1 if any."""
    from hub.templates import DEFAULT_KINDS, FALLBACK_LOCALE

    checked_kinds = (*DEFAULT_KINDS, "message")
    library = hub.templates
    tenants = [await hub.tenants.get(tenant)] if tenant else await hub.tenants.all()
    problems = 0
    checked = 0
    for info in tenants:
        locales = (info.locale, FALLBACK_LOCALE)
        tenant_dir = hub.tenant_template_dir(info)
        for problem in library.check(kinds=checked_kinds, mediums=CHECKED_MEDIUMS, locales=locales, tenant_dir=tenant_dir):
            click.echo(f"{info.slug}: {problem}")
            problems += 1
        checked += len(library.found(kinds=checked_kinds, mediums=CHECKED_MEDIUMS, locales=locales, tenant_dir=tenant_dir))
    if problems:
        click.echo(f"failed: {problems} problems, {checked} templates checked")
        raise click.exceptions.Exit(1)
    click.echo(f"ok: {checked} templates checked")
