"""Importing client lists from CSV and exporting contacts as JSON lines."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from hub.contacts import identity_key, link
from hub.core import Hub
from hub.models import Contact, Identity
from hub.phones import InvalidAddress

COLUMNS = ("name", "phone", "whatsapp", "email", "locale", "timezone", "external_id")
BATCH = 200


@dataclass(frozen=True)
class RowError:
    """One problem in one CSV line; the rest of the row and file are still imported."""

    line: int
    column: str
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    contacts_created: int = 0
    identities_added: int = 0
    merges: int = 0
    errors: list[RowError] = field(default_factory=list)


def _row_evidence(row: dict[str, str], line: int, region: str, report: ImportReport) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    addresses: list[tuple[str, str]] = []
    # A WhatsApp id is always international, so it is never read with the tenant's region.
    for column, kind, row_region in (("phone", "phone", region), ("whatsapp", "phone", None), ("email", "email", None)):
        raw = (row.get(column) or "").strip()
        if not raw:
            continue
        try:
            addresses.append(identity_key(kind, raw, row_region))
        except InvalidAddress as exc:
            report.errors.append(RowError(line, column, exc.reason))
    profile: dict[str, Any] = {k: (row.get(k) or "").strip() or None for k in ("name", "locale", "external_id")}
    timezone = (row.get("timezone") or "").strip()
    if timezone:
        try:
            ZoneInfo(timezone)
            profile["timezone"] = timezone
        except (ZoneInfoNotFoundError, ValueError):
            report.errors.append(RowError(line, "timezone", f"unknown timezone {timezone!r}"))
    return addresses, profile


async def import_contacts(
    hub: Hub, tenant_slug: str, lines: Iterable[str], *, progress: Callable[[int], None] = lambda _n: None
) -> ImportReport:
    """Link every row of a client list through the resolver; idempotent when run again."""
    tenant = await hub.tenants.get(tenant_slug)
    reader = csv.DictReader(lines)
    missing = [c for c in ("name", "phone", "email") if c not in (reader.fieldnames or [])]
    unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
    if reader.fieldnames is None or len(missing) == 3:
        raise ValueError(f"the first line must name the columns ({', '.join(COLUMNS)})")
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    report = ImportReport()
    announcements = []
    session = hub.db.sessions()
    try:
        for row in reader:
            line = reader.line_num
            report.rows += 1
            addresses, profile = _row_evidence(row, line, tenant.default_region, report)
            if not addresses:
                if not any(e.line == line for e in report.errors):
                    report.errors.append(RowError(line, "phone", "no phone, whatsapp or email"))
            else:
                outcome = await link(session, tenant, addresses, profile=profile, reason="import")
                report.contacts_created += outcome.created
                report.identities_added += len(outcome.added)
                report.merges += len(outcome.merged)
                if outcome.added or outcome.merged:
                    announcements.append(outcome)
            progress(1)
            if report.rows % BATCH == 0:
                await session.commit()
        await session.commit()
    finally:
        await session.close()
    for outcome in announcements:
        await hub.announce_link(outcome)
    return report


async def export_contacts(hub: Hub, tenant_slug: str) -> AsyncIterator[dict[str, Any]]:
    """Every live (not merged) contact of a tenant with its identities."""
    tenant = await hub.tenants.get(tenant_slug)
    async with hub.db.sessions() as session:
        contacts = (
            await session.scalars(
                select(Contact).where(Contact.tenant_id == tenant.id, Contact.merged_into_id.is_(None)).order_by(Contact.id)
            )
        ).all()
        identities: dict[int, list[dict[str, Any]]] = {}
        for ident in (await session.scalars(select(Identity).where(Identity.tenant_id == tenant.id).order_by(Identity.id))).all():
            identities.setdefault(ident.contact_id, []).append(
                {"kind": ident.kind, "value": ident.value, "opted_out": sorted(ident.opted_out or {})}
            )
    for contact in contacts:
        yield {
            "id": contact.id,
            "name": contact.name,
            "locale": contact.locale,
            "timezone": contact.timezone,
            "external_id": contact.external_id,
            "identities": identities.get(contact.id, []),
        }
