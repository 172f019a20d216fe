"""`hub templates check`: render every template a tenant would use, before a reminder does."""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli import with_open_hub
from hub.core import Hub
from hub.templates import DEFAULT_KINDS, FALLBACK_LOCALE, SHIPPED_TEMPLATES, Templates

CHECKED_MEDIUMS = ("whatsapp", "sms", "email")


@click.group()
def templates() -> None:
    """Message templates."""


@templates.command()
@click.option("--tenant", default=None, help="Tenant slug (default: every tenant).")
@with_open_hub
async def check(hub: Hub, tenant: str | None) -> None:
    """Render each tenant's templates with sample data; print problems, exit 1 if any."""
    # Plugin folders come before the shipped ones, as the hookspec promises.
    plugin_dirs = [Path(d) for _, dirs in hub.hooks.call_sync("register_template_dirs") for d in dirs]
    library = Templates([*plugin_dirs, SHIPPED_TEMPLATES])
    tenants = [await hub.tenants.get(tenant)] if tenant else await hub.tenants.all()
    problems = 0
    checked = 0
    for info in tenants:
        lookup = {"kinds": DEFAULT_KINDS, "mediums": CHECKED_MEDIUMS, "locales": (info.locale, FALLBACK_LOCALE)}
        for problem in library.check(**lookup):
            click.echo(f"{info.slug}: {problem}")
            problems += 1
        checked += len(library.found(**lookup))
    if problems:
        click.echo(f"failed: {problems} problems, {checked} templates checked")
        raise click.exceptions.Exit(1)
    click.echo(f"ok: {checked} templates checked")
