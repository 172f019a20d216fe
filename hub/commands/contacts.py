"""`hub contacts`: import, export and inspect contacts."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import click
from sqlalchemy import select

from hub.cli import with_open_hub
from hub.contact_io import export_contacts, import_contacts
from hub.core import Hub
from hub.events import ContactRef
from hub.models import Contact, Identity


@click.group()
def contacts() -> None:
    """Contacts: import a client list, export, show one."""


@contacts.command(name="import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def import_(hub: Hub, csv_file: TextIO, tenant: str) -> None:
    """Import a CSV client list (name, phone, whatsapp, email, locale, timezone, external_id)."""
    try:
        lines = csv_file.readlines()
    except UnicodeDecodeError:
        raise click.ClickException(f"{csv_file.name}: not UTF-8 text (save the list as \"CSV UTF-8\")") from None
    total = max(len(lines) - 1, 0)
    try:
        if sys.stderr.isatty():
            with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
                report = await import_contacts(hub, tenant, lines, progress=bar.update)
        else:
            report = await import_contacts(hub, tenant, lines)
    except ValueError as exc:
        raise click.ClickException(f"{csv_file.name}: {exc}") from None
    for error in report.errors:
        click.echo(f"{csv_file.name}:{error.line}: {error.column}: {error.reason}", err=True)
    click.echo(
        f"{report.rows} rows: {report.contacts_created} contacts created, {report.identities_added} identities added, "
        f"{report.merges} merged, {len(report.errors)} problems"
    )


@contacts.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def export(hub: Hub, tenant: str) -> None:
    """Write every contact as one JSON object per line: id, name and identities."""
    async for row in export_contacts(hub, tenant):
        click.echo(json.dumps(row, ensure_ascii=False))


@contacts.command()
@click.argument("contact_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def show(hub: Hub, contact_id: int, tenant: str) -> None:
    """Show a contact, its identities, and what plugins add to its context."""
    info = await hub.tenants.get(tenant)
    async with hub.db.sessions() as session:
        contact = await session.scalar(select(Contact).where(Contact.id == contact_id, Contact.tenant_id == info.id))
        if contact is None:
            raise click.ClickException(f"no contact {contact_id} in tenant {tenant}")
        identities = (
            await session.scalars(select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id))
        ).all()
    click.echo(f"contact {contact.id}: {contact.name or '(no name)'}")
    if contact.merged_into_id:
        click.echo(f"  merged into {contact.merged_into_id}")
    for ident in identities:
        opted = f"  (opted out: {', '.join(sorted(ident.opted_out))})" if ident.opted_out else ""
        click.echo(f"  {ident.kind}: {ident.value}{opted}")
    ref = ContactRef(contact.id, info.slug, contact.name, contact.locale, contact.timezone)
    for section in await hub.call("contact_context", hub=hub, contact=ref):
        click.echo(f"{section.title}:")
        for line in section.lines:
            click.echo(f"  {line}")
