"""`hub appointments import`: a booking system's export (CSV or JSON lines), upserted as the API's PUT does.

Every row is checked first, with the API's own rules. When a row is bad,
each bad row is named (`FILE:LINE: FIELD: REASON`) and nothing is written,
so fixing the file and running the command again imports it whole; with
`--skip-invalid` the good rows are imported and the bad ones named. An
import is idempotent: a row already stored as it is changes nothing and
queues nothing, so running the same file twice is safe.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hub.cli import with_open_hub

if TYPE_CHECKING:
    from hub.appointment_input import AppointmentInput
    from hub.core import Hub

CHUNK = 500
"""Rows per transaction: a failure part-way keeps what was committed (and a re-run skips it as unchanged)."""
MAX_PROBLEMS = 50
CONTACT_COLUMNS = ("name", "phone", "whatsapp", "email", "locale", "timezone")
APPOINTMENT_COLUMNS = ("external_id", "start", "end", "timezone", "status", "service", "location", "cancel_url",
                       "reschedule_url", "reason")
COLUMNS = APPOINTMENT_COLUMNS + tuple(f"contact_{name}" for name in CONTACT_COLUMNS)


class BadFile(Exception):
    """The file cannot be read as the format it claims (the header, the encoding)."""


@click.group()
def appointments() -> None:
    """Appointments: import a booking system's export."""


@appointments.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", required=True, help="The tenant the appointments belong to.")
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]), default=None,
              help="csv, or jsonl (one API batch item a line); default: from the file's extension.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows when some are bad (default: import nothing then).")
@click.option("--no-confirmations", is_flag=True, help="Queue no booking confirmation for new appointments (a backfill).")
@with_open_hub
async def import_(hub: Hub, file: Path, tenant: str, file_format: str | None, skip_invalid: bool, no_confirmations: bool) -> None:
    """Upsert appointments from a CSV or JSON-lines file, as PUT /api/v1/appointments/{id} does, with a progress bar.

    CSV columns: external_id and start (required), end, timezone, status,
    service, location, cancel_url, reschedule_url, reason, and the
    contact's contact_name, contact_phone, contact_whatsapp, contact_email,
    contact_locale, contact_timezone. JSON lines: one object a line, the
    body of POST /api/v1/appointments/batch's items.
    """
    from hub.api import batch_item  # the API's own rules; imported here so other commands start without aiohttp

    info = await hub.tenants.get(tenant)
    kind = file_format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    good: list[AppointmentInput] = []
    problems: list[str] = []
    try:
        for line, entry in (read_csv(file) if kind == "csv" else read_jsonl(file)):
            if isinstance(entry, str):
                problems.append(f"{file.name}:{line}: {entry}")
                continue
            item, error = batch_item(entry, info)
            if error is not None:
                field, reason = error
                problems.append(f"{file.name}:{line}: {column(field, kind)}: {reason}")
            else:
                assert item is not None
                good.append(dataclasses.replace(item, confirm=False) if no_confirmations else item)
    except BadFile as exc:
        raise click.ClickException(f"{file.name}: {exc}") from None
    for problem in problems[:MAX_PROBLEMS]:
        click.echo(problem, err=True)
    if len(problems) > MAX_PROBLEMS:
        click.echo(f"... and {len(problems) - MAX_PROBLEMS} more bad rows", err=True)
    if problems and not skip_invalid:
        raise click.ClickException(
            f"{len(problems)} bad rows: nothing imported (fix them, or pass --skip-invalid to import the {len(good)} good rows)"
        )
    counts: Counter[str] = Counter()
    with click.progressbar(length=len(good), label="importing", file=sys.stderr, show_pos=True) as bar:
        for start in range(0, len(good), CHUNK):
            chunk = good[start:start + CHUNK]
            async with hub.unit_of_work() as uow:
                changes = await hub.apply_appointments(uow, info, chunk)
            counts.update(change.change for change in changes)
            bar.update(len(chunk))
    tally = ", ".join(f"{counts[name]} {name}" for name in sorted(counts)) or "nothing to do"
    skipped = f", {len(problems)} bad rows skipped" if problems else ""
    click.echo(f"{len(good)} appointments: {tally}{skipped}", err=True)
    if problems:
        sys.exit(1)


def column(field: str, kind: str) -> str:
    """The CSV column (or JSON path) an API field name stands for."""
    if kind == "csv":
        if field == "body":
            return "row"  # a rule about several cells (end after start, someone to reach)
        return field.replace("contact.", "contact_") if field.startswith("contact.") else field
    return field


def read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, the row as an API batch item) per data row; blank rows are skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            if unknown := [name for name in header if name not in COLUMNS]:
                raise BadFile(f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
            for missing in ("external_id", "start"):
                if missing not in header:
                    raise BadFile(f"no {missing!r} column (columns: {', '.join(COLUMNS)})")
            reader.fieldnames = header
            for row in reader:
                if None in row:
                    yield reader.line_num, "more cells than columns"
                    continue
                cells = {name: value.strip() for name, value in row.items() if value and value.strip()}
                if not cells:
                    continue
                item: dict[str, Any] = {name: cells[name] for name in APPOINTMENT_COLUMNS if name in cells}
                item["contact"] = {name: cells[f"contact_{name}"] for name in CONTACT_COLUMNS if f"contact_{name}" in cells}
                yield reader.line_num, item
    except UnicodeDecodeError:
        raise BadFile("not UTF-8 text") from None
    except csv.Error as exc:
        raise BadFile(f"not readable as CSV: {exc}") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, the object) per non-blank line."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    yield number, json.loads(text)
                except json.JSONDecodeError as exc:
                    yield number, f"not JSON: {exc.msg} (column {exc.colno})"
    except UnicodeDecodeError:
        raise BadFile("not UTF-8 text") from None
