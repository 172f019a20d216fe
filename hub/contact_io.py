"""Importing client lists from CSV and exporting contacts as JSON lines."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from hub.config import is_timezone
from hub.input_rules import LOCALE_PATTERN
from hub.contacts import identity_key, link
from hub.core import Hub
from hub.models import Contact, Identity
from hub.phones import WHATSAPP_ID, InvalidAddress, is_whatsapp_id
from hub.tenants import TenantInfo
from hub.unit_of_work import UnitOfWork

COLUMNS = ("name", "phone", "whatsapp", "email", "locale", "timezone", "external_id")
ADDRESS_COLUMNS = ("phone", "whatsapp", "email")
# The widths of the contacts columns: a longer value would be cut (SQLite) or refused (PostgreSQL).
LOCALE = re.compile(LOCALE_PATTERN)
PROFILE_LENGTHS = {"name": 200, "locale": 16, "external_id": 200}
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
    def cell(column: str) -> str:
        value = (row.get(column) or "").strip()
        if "\x00" in value:
            # PostgreSQL cannot store a NUL character in text; it is never meant.
            report.errors.append(RowError(line, column, "contains a NUL character"))
            return ""
        return value

    addresses: list[tuple[str, str]] = []
    # A WhatsApp id is always international, so it is never read with the tenant's region.
    for column, kind, row_region in (("phone", "phone", region), ("whatsapp", "phone", None), ("email", "email", None)):
        raw = cell(column)
        if not raw:
            continue
        if column == "whatsapp" and is_whatsapp_id(raw):
            kind = WHATSAPP_ID  # a business-scoped id, from a list exported by a WhatsApp inbox
        try:
            addresses.append(identity_key(kind, raw, row_region))
        except InvalidAddress as exc:
            report.errors.append(RowError(line, column, exc.reason))
    profile: dict[str, Any] = {}
    for column, limit in PROFILE_LENGTHS.items():
        value = cell(column)
        if len(value) > limit:
            report.errors.append(RowError(line, column, f"too long (at most {limit} characters)"))
            value = ""
        profile[column] = value or None
    if profile.get("locale") and not LOCALE.fullmatch(profile["locale"]):
        report.errors.append(RowError(line, "locale", "not a language tag (use es, es-MX or pt_BR)"))
        profile["locale"] = None
    timezone = cell("timezone")
    if timezone:
        if is_timezone(timezone):
            profile["timezone"] = timezone
        else:
            report.errors.append(RowError(line, "timezone", f"unknown timezone {timezone!r}"))
    return addresses, profile


def _delimiter(header: str) -> str:
    """`;` for a file whose header is separated by semicolons (a spreadsheet's default in much of the world), else `,`."""
    return ";" if header.count(";") > header.count(",") else ","


def _check_header(fieldnames: Sequence[str] | None) -> None:
    """Raise ValueError (one line, for the operator) unless the header names known columns."""
    if not fieldnames or not any(name in COLUMNS for name in fieldnames):
        raise ValueError(f"the first line must name the columns ({', '.join(COLUMNS)})")
    unknown = [c for c in fieldnames if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    repeated = [c for i, c in enumerate(fieldnames) if c in fieldnames[:i]]
    if repeated:
        raise ValueError(f"column {repeated[0]!r} appears twice")
    if not any(c in fieldnames for c in ADDRESS_COLUMNS):
        raise ValueError(f"no address column: a client list needs one of {', '.join(ADDRESS_COLUMNS)}")


async def import_contacts(
    hub: Hub, tenant_slug: str, lines: Iterable[str], *, progress: Callable[[int], None] = lambda _n: None
) -> ImportReport:
    """Link every row of a client list through the resolver; idempotent when run again."""
    tenant = await hub.tenants.get(tenant_slug)
    lines = iter(lines)
    first_line = next(lines, "")
    reader = csv.DictReader(itertools.chain([first_line], lines), delimiter=_delimiter(first_line))
    try:
        _check_header(reader.fieldnames)
    except csv.Error as exc:
        raise ValueError(f"line 1: {exc}") from None
    report = ImportReport()
    done = False
    while not done:
        # One unit of work per batch: a large file commits as it goes, and each batch's
        # `on_contact_linked` hooks fire once that batch is committed.
        async with hub.unit_of_work() as uow:
            done = await _import_batch(hub, uow, tenant, reader, report, progress)
    return report


async def _import_batch(
    hub: Hub, uow: UnitOfWork, tenant: TenantInfo, reader: csv.DictReader[str], report: ImportReport,
    progress: Callable[[int], None],
) -> bool:
    """Link up to BATCH rows; True when the file is exhausted."""
    first = report.rows
    while report.rows - first < BATCH:
        # A row (a quoted value may span lines) starts on the line after the last one read.
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return True
        except csv.Error as exc:
            # The file cannot be read past this point (e.g. an unclosed quote swallowed the rest).
            raise ValueError(f"line {line}: {exc}") from None
        columns = len(reader.fieldnames or ())
        extra = row.pop(None, None)
        if extra:
            report.rows += 1
            report.errors.append(RowError(line, "row", f"{columns + len(extra)} values for {columns} columns (is a value missing its quotes?)"))
            progress(1)
            continue
        present = [value for value in row.values() if value is not None]
        if present and len(present) < columns:
            report.rows += 1
            report.errors.append(RowError(line, "row", f"{len(present)} values for {columns} columns"))
            progress(1)
            continue
        if not any((value or "").strip() if isinstance(value, str) else value for value in row.values()):
            # A blank row (",,,,") that spreadsheets leave at the end: no data, no problem.
            progress(1)
            continue
        report.rows += 1
        problems = len(report.errors)
        addresses, profile = _row_evidence(row, line, tenant.default_region, report)
        if not addresses:
            if not any(e.column in ADDRESS_COLUMNS for e in report.errors[problems:]):
                report.errors.append(RowError(line, "phone", "no phone, whatsapp or email"))
        else:
            outcome = await link(uow.session, tenant, addresses, profile=profile, reason="import")
            report.contacts_created += outcome.created
            report.identities_added += len(outcome.added)
            report.merges += len(outcome.merged)
            hub.announce_link(uow, outcome)
        progress(1)
    return False


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
