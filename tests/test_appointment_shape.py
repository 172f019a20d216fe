"""One appointment shape: `AppointmentInput` serves the API, inbox events and booking sources.

Inbox rows stored before the event carried an `AppointmentInput` hold the
same flat JSON document, so they are still processed.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import AppointmentEvent, AppointmentInput
from hub.core import Hub
from hub.models import Appointment, Contact, InboxEventRow, Notification, utcnow

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2031, 5, 6, 9, 30, tzinfo=dt.UTC)

# What the inbox stored for an appointment event before this change (one row per field, flat).
LEGACY_PAYLOAD: dict[str, Any] = {
    "tenant": "clinic", "source": "calendly", "external_id": "https://api.calendly.com/invitees/OLD",
    "start_at": "2031-05-06T09:30:00+00:00", "end_at": "2031-05-06T10:00:00+00:00", "timezone": "Europe/Madrid",
    "status": "scheduled", "addresses": [["email", "ana@example.com"], ["phone", "+34600123456"]],
    "contact_name": "Ana", "contact_locale": None, "contact_timezone": "Europe/Madrid", "service": "Limpieza",
    "location": "Calle Mayor 1", "event_type": None, "cancel_url": "https://c/cancel", "reschedule_url": None,
    "reason": None, "booked_at": "2031-05-01T08:00:00+00:00", "confirm": True, "replaces": None,
    "data": {"calendly_event": "https://api.calendly.com/scheduled_events/E"},
}


def legacy_input() -> AppointmentInput:
    return AppointmentInput(
        source="calendly", external_id="https://api.calendly.com/invitees/OLD", start_at=START,
        end_at=START + dt.timedelta(minutes=30), timezone="Europe/Madrid",
        addresses=(("email", "ana@example.com"), ("phone", "+34600123456")), contact_name="Ana",
        contact_timezone="Europe/Madrid", service="Limpieza", location="Calle Mayor 1", cancel_url="https://c/cancel",
        booked_at=dt.datetime(2031, 5, 1, 8, tzinfo=dt.UTC), data={"calendly_event": "https://api.calendly.com/scheduled_events/E"},
    )


def test_event_payload_is_the_document_the_inbox_always_stored() -> None:
    event = AppointmentEvent(tenant="clinic", appointment=legacy_input())
    assert event.to_payload() == LEGACY_PAYLOAD
    assert AppointmentEvent.from_payload(LEGACY_PAYLOAD) == event


ROUND_TRIPS = [
    ("bare", AppointmentInput(source="api", external_id="x", start_at=START)),
    ("full", legacy_input()),
    ("canceled with reason", AppointmentInput(source="api", external_id="x", start_at=START, status="canceled", reason="Enfermedad")),
    ("backfill", AppointmentInput(source="calendly", external_id="y", start_at=START, confirm=False, replaces="z")),
    ("other zone", AppointmentInput(source="api", external_id="x", start_at=START.astimezone(dt.timezone(dt.timedelta(hours=-5))))),
]


@pytest.mark.parametrize("appointment", [a for _, a in ROUND_TRIPS], ids=[n for n, _ in ROUND_TRIPS])
def test_an_appointment_survives_the_inbox_payload(appointment: AppointmentInput) -> None:
    event = AppointmentEvent(tenant="clinic", appointment=appointment)
    assert AppointmentEvent.from_payload(event.to_payload()) == event


def test_an_unknown_key_in_a_payload_is_named() -> None:
    with pytest.raises(TypeError, match="colour"):
        AppointmentEvent.from_payload({**LEGACY_PAYLOAD, "colour": "blue"})


async def test_a_row_stored_in_the_old_format_is_processed(hub: Hub) -> None:
    clinic = await hub.tenants.get("clinic")
    async with hub.db.sessions.begin() as session:
        session.add(InboxEventRow(
            tenant_id=clinic.id, source="calendly", dedupe_key="legacy-1", kind=AppointmentEvent.kind,
            payload=LEGACY_PAYLOAD, received_at=utcnow(), attempts=0, next_attempt_at=utcnow(),
        ))
    await hub.inbox.process_pending()
    async with hub.db.sessions() as session:
        row = await session.scalar(select(InboxEventRow).where(InboxEventRow.dedupe_key == "legacy-1"))
        appointment = await session.scalar(select(Appointment))
        contact = await session.get(Contact, appointment.contact_id) if appointment and appointment.contact_id else None
        kinds = (await session.scalars(select(Notification.kind).order_by(Notification.id))).all()
    assert row is not None and row.processed_at is not None and row.error is None
    assert appointment is not None
    assert (appointment.external_id, appointment.start_at, appointment.service, appointment.location) == (
        "https://api.calendly.com/invitees/OLD", START, "Limpieza", "Calle Mayor 1",
    )
    assert contact is not None and contact.name == "Ana"
    assert kinds[0] == "confirmation" and kinds.count("reminder") == 3


# The appointment's fields, declared once in hub/appointment_input.py. Beside it, only the edges and the
# storage may list them: the table, the view hooks receive, and the REST API's wire format.
APPOINTMENT_WORDS = {
    "external_id", "start_at", "end_at", "timezone", "addresses", "contact_name", "contact_locale", "contact_timezone",
    "service", "location", "event_type", "cancel_url", "reschedule_url", "reason", "booked_at", "replaces", "confirm",
}
ALLOWED = {("hub/models.py", "Appointment"), ("hub/events.py", "AppointmentRef"), ("hub/api.py", "AppointmentIn")}


def declared_shapes(source: str) -> list[tuple[str, set[str]]]:
    """Classes with five or more of the appointment's field names as annotated fields."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            names = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
            if len(names & APPOINTMENT_WORDS) >= 5:
                found.append((node.name, names & APPOINTMENT_WORDS))
    return found


def test_the_declaration_check_sees_a_parallel_class() -> None:
    parallel = "class Booking:\n" + "".join(f"    {n}: str\n" for n in ("external_id", "start_at", "end_at", "service", "replaces"))
    assert [name for name, _ in declared_shapes(parallel)] == ["Booking"]


def test_appointment_fields_are_declared_once() -> None:
    extra = [
        f"{path.relative_to(ROOT)}: {name} ({', '.join(sorted(words))})"
        for path in sorted([*(ROOT / "hub").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])
        if path != ROOT / "hub" / "appointment_input.py"
        for name, words in declared_shapes(path.read_text(encoding="utf-8"))
        if (str(path.relative_to(ROOT)), name) not in ALLOWED
    ]
    assert extra == [], "carry an AppointmentInput instead of declaring its fields again:\n" + "\n".join(extra)
