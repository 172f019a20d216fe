"""`hub contacts`: import, export and inspect contacts; review merge proposals, merge, unmerge."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

import click

from hub.cli import with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub


@click.group()
def contacts() -> None:
    """Contacts: import a client list, export, show one, review duplicates, merge and unmerge."""


@contacts.command(name="import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def import_(hub: Hub, csv_file: TextIO, tenant: str) -> None:
    """Import a CSV client list (name, phone, whatsapp, email, locale, timezone, external_id)."""
    from hub.contact_io import import_contacts

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
    from hub.contact_io import export_contacts

    async for row in export_contacts(hub, tenant):
        click.echo(json.dumps(row, ensure_ascii=False))


@contacts.command()
@click.argument("contact_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def show(hub: Hub, contact_id: int, tenant: str) -> None:
    """Show a contact, its identities, and what plugins add to its context."""
    from sqlalchemy import select

    from hub.events import ContactRef
    from hub.models import Contact, Identity

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


@contacts.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--all", "show_all", is_flag=True, help="Also list accepted and rejected proposals.")
@with_open_hub
async def duplicates(hub: Hub, tenant: str, show_all: bool) -> None:
    """List merge proposals: pairs of contacts that may be one person, with the evidence."""
    from sqlalchemy import select

    from hub.merges import PROPOSAL_OPEN
    from hub.models import Contact, MergeProposal

    info = await hub.tenants.get(tenant)
    async with hub.db.sessions() as session:
        query = select(MergeProposal).where(MergeProposal.tenant_id == info.id).order_by(MergeProposal.id)
        if not show_all:
            query = query.where(MergeProposal.status == PROPOSAL_OPEN)
        proposals = (await session.scalars(query)).all()
        ids = {p.contact_id for p in proposals} | {p.other_contact_id for p in proposals}
        names = dict((await session.execute(select(Contact.id, Contact.name).where(Contact.id.in_(ids)))).tuples().all())
    if not proposals:
        click.echo("no merge proposals" if show_all else "no open merge proposals")
        return
    for proposal in proposals:
        status = "" if proposal.status == PROPOSAL_OPEN else f" [{proposal.status}]"
        evidence = ", ".join((proposal.evidence or {}).get("identities", []))
        click.echo(
            f"proposal {proposal.id}{status}: contact {proposal.contact_id} ({names.get(proposal.contact_id) or 'no name'}) "
            f"and contact {proposal.other_contact_id} ({names.get(proposal.other_contact_id) or 'no name'}): "
            f"{proposal.reason}{f' ({evidence})' if evidence else ''}"
        )


@contacts.command()
@click.argument("proposal_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def merge(hub: Hub, proposal_id: int, tenant: str) -> None:
    """Accept a merge proposal: the newer contact is merged into the older (undo with `unmerge`)."""
    from hub import merge_decisions
    from hub.merges import MergeError

    info = await hub.tenants.get(tenant)
    try:
        record = await merge_decisions.accept(hub, info, proposal_id)
    except MergeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"merged contact {record.merged_contact_id} into {record.kept_contact_id} (merge {record.id})")


@contacts.command()
@click.argument("proposal_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def reject(hub: Hub, proposal_id: int, tenant: str) -> None:
    """Reject a merge proposal: the two contacts stay apart, and later evidence never merges them."""
    from hub import merge_decisions
    from hub.merges import MergeError

    info = await hub.tenants.get(tenant)
    try:
        proposal = await merge_decisions.reject(hub, info, proposal_id)
    except MergeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rejected proposal {proposal.id}: contacts {proposal.contact_id} and {proposal.other_contact_id} stay apart")


@contacts.command()
@click.argument("contact_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def unmerge(hub: Hub, contact_id: int, tenant: str) -> None:
    """Undo the merge that absorbed CONTACT_ID: its addresses, threads and appointments go back to it."""
    from hub import merge_decisions
    from hub.merges import MergeError

    info = await hub.tenants.get(tenant)
    try:
        record = await merge_decisions.undo(hub, info, contact_id)
    except MergeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"contact {record.merged_contact_id} is separate from {record.kept_contact_id} again (merge {record.id} undone)")


@contacts.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def merges(hub: Hub, tenant: str) -> None:
    """The audit trail: every merge, why, on what evidence, and whether it was undone."""
    from sqlalchemy import select

    from hub.models import ContactMerge

    info = await hub.tenants.get(tenant)
    async with hub.db.sessions() as session:
        records = (
            await session.scalars(select(ContactMerge).where(ContactMerge.tenant_id == info.id).order_by(ContactMerge.id))
        ).all()
    if not records:
        click.echo("no merges")
    for record in records:
        undone = f", undone {record.undone_at:%Y-%m-%d %H:%M}" if record.undone_at else ""
        evidence = ", ".join((record.evidence or {}).get("identities", []))
        click.echo(
            f"merge {record.id} {record.created_at:%Y-%m-%d %H:%M}: contact {record.merged_contact_id} into "
            f"{record.kept_contact_id}: {record.reason}{f' ({evidence})' if evidence else ''}{undone}"
        )


@contacts.command(name="add-address")
@click.argument("contact_id", type=int)
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--kind", default="phone", show_default=True, help="phone, email, whatsapp_id or a vendor id kind.")
@click.argument("address")
@with_open_hub
async def add_address(hub: Hub, contact_id: int, tenant: str, kind: str, address: str) -> None:
    """Add an address a person gave (their number, told in a chat) to a contact, by the usual linking rules."""
    from sqlalchemy import select

    from hub.contacts import link
    from hub.models import Contact, Identity
    from hub.phones import InvalidAddress

    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        session = uow.session
        contact = await session.scalar(select(Contact).where(Contact.id == contact_id, Contact.tenant_id == info.id))
        if contact is None or contact.merged_into_id is not None:
            raise click.ClickException(f"no contact {contact_id} in tenant {tenant}")
        anchor = await session.scalar(select(Identity).where(Identity.contact_id == contact_id).order_by(Identity.id).limit(1))
        if anchor is None:
            raise click.ClickException(f"contact {contact_id} has no address to link to")
        try:
            outcome = await link(session, info, [(anchor.kind, anchor.value), (kind, address)], reason="added by an operator")
        except InvalidAddress as exc:
            raise click.ClickException(f"{kind}: {exc.reason}") from None
        hub.announce_link(uow, outcome)
    new = outcome.identities[-1]
    if outcome.proposed:
        click.echo(f"{new.kind} {new.value} belongs to another contact: proposed merge {', '.join(map(str, outcome.proposed))}")
    elif outcome.merged:
        click.echo(f"contact {', '.join(map(str, outcome.merged))} merged into {outcome.contact.id}")
    else:
        click.echo(f"contact {outcome.contact.id}: {new.kind} {new.value}")
