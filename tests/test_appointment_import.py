"""`hub appointments import` through the real CLI, as an operator runs it, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.database import Database
from hub.models import Appointment, Notification, utcnow
from tests.conftest import CliResult, config_document, read_records, write_toml

RunCli = Callable[..., CliResult]
HEADER = "external_id,start,end,service,contact_name,contact_phone,contact_email"


@pytest.fixture
def config(tmp_path: Path, database_url: str, record_file: Path) -> Path:
    return write_toml(tmp_path / "config.toml", config_document(database_url, record_file=record_file))


def moment(days: int, hour: int = 10) -> str:
    return (utcnow() + dt.timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


def stored(database_url: str) -> dict[str, tuple[str | None, int, int]]:
    """external id -> (service, reminders, confirmations)."""

    async def read() -> dict[str, tuple[str | None, int, int]]:
        db = Database(database_url)
        try:
            async with db.sessions() as session:
                rows = (await session.execute(select(Appointment.id, Appointment.external_id, Appointment.service))).all()
                kinds = (await session.execute(select(Notification.appointment_id, Notification.kind, func.count())
                                               .group_by(Notification.appointment_id, Notification.kind))).all()
        finally:
            await db.close()
        counts = {(a, k): n for a, k, n in kinds}
        return {e: (s, counts.get((i, "reminder"), 0), counts.get((i, "confirmation"), 0)) for i, e, s in rows}

    return asyncio.run(read())


def csv_rows(count: int, service: str = "Limpieza") -> str:
    lines = [HEADER] + [
        f"visit-{i},{moment(3 + i % 20)},{moment(3 + i % 20, 11)},{service},Cliente {i},+34 600 200 {i % 50:03d},"
        for i in range(count)
    ]
    return "\n".join(lines) + "\n"


def test_a_csv_import_stores_every_booking_with_its_reminders_and_is_idempotent(
    tmp_path: Path, run_cli: RunCli, config: Path, database_url: str, record_file: Path,
) -> None:
    path = tmp_path / "month.csv"
    path.write_text(csv_rows(120))
    first = run_cli("appointments", "import", str(path), "--tenant", "clinic", config=config, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "120 appointments: 120 created" in first.stderr
    assert "importing" in first.stderr  # the progress bar
    found = stored(database_url)
    assert len(found) == 120 and set(found.values()) == {("Limpieza", 3, 1)}
    changed = [r for r in read_records(record_file) if r["hook"] == "on_appointment_changed"]
    assert len(changed) == 120 and {r["change"] for r in changed} == {"created"}
    again = run_cli("appointments", "import", str(path), "--tenant", "clinic", config=config, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "120 appointments: 120 unchanged" in again.stderr
    assert stored(database_url) == found
    assert len([r for r in read_records(record_file) if r["hook"] == "on_appointment_changed"]) == 120
    # A changed export updates what changed, as the PUT would.
    path.write_text(csv_rows(120, service="Revisión"))
    third = run_cli("appointments", "import", str(path), "--tenant", "clinic", config=config, timeout=120)
    assert "120 appointments: 120 updated" in third.stderr, third.stderr
    assert set(stored(database_url).values()) == {("Revisión", 3, 1)}


BAD = "\n".join([
    HEADER,
    f"ok-1,{moment(4)},,Limpieza,Ana,+34 600 300 001,",
    f"bad-phone,{moment(4)},,Limpieza,Bea,12,",
    f"bad-start,tomorrow,,Limpieza,Carla,+34 600 300 003,",
    f"bad-end,{moment(4)},{moment(3)},Limpieza,Dan,+34 600 300 004,",
    f"nobody,{moment(4)},,Limpieza,Eva,,",
    "",
    f"ok-2,{moment(5)},,Limpieza,Fer,,fer@example.com",
]) + "\n"
BAD_LINES = [
    "visits.csv:3: contact_phone: too short",
    "visits.csv:4: start: Input should be a valid datetime or date, input is too short",
    "visits.csv:5: row: end must be after start",
    "visits.csv:6: row: contact needs a phone, whatsapp or email",
]


@pytest.mark.parametrize(("flags", "imported", "summary"), [
    ((), set(), "4 bad rows: nothing imported (fix them, or pass --skip-invalid to import the 2 good rows)"),
    (("--skip-invalid",), {"ok-1", "ok-2"}, "2 appointments: 2 created, 4 bad rows skipped"),
])
def test_bad_rows_are_named_by_line_and_column(
    tmp_path: Path, run_cli: RunCli, config: Path, database_url: str, flags: tuple[str, ...], imported: set[str], summary: str,
) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(BAD)
    result = run_cli("appointments", "import", str(path), "--tenant", "clinic", *flags, config=config, timeout=120)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("visits.csv:")] == BAD_LINES
    assert summary in result.stderr
    assert set(stored(database_url)) == imported


def test_json_lines_take_the_batch_items_shape(tmp_path: Path, run_cli: RunCli, config: Path, database_url: str) -> None:
    path = tmp_path / "visits.jsonl"
    items = [{"external_id": f"j-{i}", "start": moment(6), "contact": {"phone": f"+34 600 400 {i:03d}"}, "service": "Revisión"}
             for i in range(3)]
    path.write_text("\n".join(json.dumps(item) for item in items) + "\n{not json\n")
    result = run_cli("appointments", "import", str(path), "--tenant", "clinic", "--skip-invalid", "--no-confirmations",
                     config=config, timeout=120)
    assert [line for line in result.stderr.splitlines() if line.startswith("visits.jsonl:")] == [
        "visits.jsonl:4: not JSON: Expecting property name enclosed in double quotes (column 2)"
    ]
    assert set(stored(database_url).values()) == {("Revisión", 3, 0)}  # a backfill: no confirmations


@pytest.mark.parametrize(("text", "error"), [
    ("external_id,start,colour\n", "visits.csv: unknown column 'colour'"),
    ("start,service\n", "visits.csv: no 'external_id' column"),
])
def test_a_file_that_is_not_an_export_is_one_line_error(tmp_path: Path, run_cli: RunCli, config: Path, text: str, error: str) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(text)
    result = run_cli("appointments", "import", str(path), "--tenant", "clinic", config=config)
    assert result.returncode == 1
    assert error in result.stderr


def test_an_unknown_tenant_is_a_clear_error(tmp_path: Path, run_cli: RunCli, config: Path) -> None:
    path = tmp_path / "visits.csv"
    path.write_text(csv_rows(1))
    result = run_cli("appointments", "import", str(path), "--tenant", "nobody", config=config)
    assert result.returncode == 1 and "no tenant 'nobody'" in result.stderr
