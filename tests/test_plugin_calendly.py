"""The built-in calendly plugin against a Calendly stand-in (tests/stand_ins/calendly.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from aiohttp.test_utils import TestClient, TestServer
from babel.dates import format_date
from sqlalchemy import func, select

from hub.app import create_app
from hub.core import Hub
from hub.errors import ConfigError
from hub.models import Appointment, Contact, Identity, InboxEventRow, Notification, PluginData, utcnow
from plugins.calendly.backfill import list_upcoming
from plugins.calendly.client import CalendlyAuthError, CalendlyClient, CalendlyError, availability_windows
from plugins.calendly.mapping import HANDLED_EVENTS, booking_from_invitee, is_phone_question, status_for
from plugins.calendly.runtime import CalendlyPlugin
from plugins.calendly.signature import SignatureError, header_for, is_fresh, matches, parse_header
from tests.conftest import DEFAULT_TENANTS, CliResult, config_document, make_config, read_records, write_toml
from tests.pg import free_port
from tests.stand_ins.calendly import PAYLOADS, CalendlyStandIn, signed
from tests.smtp_server import Server

CLINIC_KEY = "clinic-signing-key-4b1d"
SALON_KEY = "salon-signing-key-9e0c"
WEBHOOK = "/webhooks/calendly/events"


# --- fixtures and helpers -------------------------------------------------------


@pytest.fixture
async def stand_in() -> AsyncIterator[CalendlyStandIn]:
    server = CalendlyStandIn()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def calendly_table(stand_in: CalendlyStandIn, **overrides: Any) -> dict[str, Any]:
    return {"token": stand_in.token, "api_base_url": stand_in.base_url, **overrides}


def tenants_with(stand_in: CalendlyStandIn, *, clinic: dict[str, Any] | None = None, salon: dict[str, Any] | None = None,
                 **clinic_policy: Any) -> dict[str, dict[str, Any]]:
    """clinic with Calendly (its signing key in config unless told otherwise); salon with Calendly only if given."""
    tenants = {slug: dict(table) for slug, table in DEFAULT_TENANTS.items()}
    tenants["clinic"].update(clinic_policy, plugins={"calendly": calendly_table(stand_in, **{"signing_key": CLINIC_KEY, **(clinic or {})})})
    if salon is not None:
        tenants["salon"]["plugins"] = {"calendly": calendly_table(stand_in, **salon)}
    return tenants


@asynccontextmanager
async def calendly_hub(database_url: str, tenants: dict[str, dict[str, Any]], **kwargs: Any) -> AsyncIterator[tuple[Hub, TestClient]]:
    """An opened hub with the test client of its app (workers off: tests process the inbox themselves)."""
    hub = Hub.build(make_config(database_url, tenants=tenants, **kwargs))
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            yield hub, client


async def post(client: TestClient, envelope: dict[str, Any] | bytes, key: str = CLINIC_KEY, *,
               tenant: str | None = "clinic", timestamp: int | None = None) -> tuple[int, Any]:
    body, headers = signed(envelope, key, timestamp)
    path = WEBHOOK + (f"?tenant={tenant}" if tenant else "")
    response = await client.post(path, data=body, headers=headers)
    return response.status, await response.json()


async def rows(hub: Hub, model: Any, *where: Any) -> list[Any]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(model).where(*where).order_by(model.id))).all())


async def count(hub: Hub, model: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def kinds(notifications: list[Notification]) -> list[str]:
    return [n.kind for n in notifications]


def pending_reminders(notifications: list[Notification]) -> dict[str, dt.datetime]:
    return {n.data["offset"]: n.due_at for n in notifications if n.kind == "reminder" and n.status == "pending"}


def later(hours: float) -> dt.datetime:
    return (utcnow() + dt.timedelta(hours=hours)).replace(second=0, microsecond=0)


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


# --- the signature ---------------------------------------------------------------


def test_signature_matches_the_wire_vector() -> None:
    # WIRE.md 2.2: key, timestamp and body as given there.
    body = (b'{"created_at":"2024-06-24T22:30:45.000000Z","created_by":"https://api.calendly.com/users/AAAA",'
            b'"event":"invitee.created","payload":{"email":"jane@example.com"}}')
    expected = "t=1719268245,v1=bdb24f7d10b817a6667aae13372d3af859eef9c92020d08785f9db3f8d6e58f6"
    assert header_for("test_signing_key_123", 1719268245, body) == expected
    parsed = parse_header(expected)
    assert matches(parsed, ["another-key", "test_signing_key_123"], body) == 1
    assert matches(parsed, ["another-key"], body) is None
    assert matches(parsed, ["test_signing_key_123"], body + b" ") is None
    assert is_fresh(parsed, 1719268245 + 180, 180) and not is_fresh(parsed, 1719268245 + 181, 180)
    assert not is_fresh(parsed, 1719268245 - 181, 180)  # too far ahead is refused too


@pytest.mark.parametrize("header", [None, "", "   ", "t=1719268245", "v1=abcdef", "t=abc,v1=abcdef", "t=1,v1=",
                                    "t=1,v1=zz11", "t=1;v1=abcdef", "t=1,v1=ábcdef", "garbage"])
def test_malformed_signature_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        parse_header(header)


# --- mapping payloads --------------------------------------------------------------

LUCIA = "https://api.calendly.com/scheduled_events/EVTAAAAAAAAAAAAA/invitees/INVAAAAAAAAAAAAA"
LUCIA_MOVED = "https://api.calendly.com/scheduled_events/EVTBBBBBBBBBBBBB/invitees/INVBBBBBBBBBBBBB"


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("invitee.created.json", {
            "status": "scheduled", "external_id": LUCIA, "start_at": dt.datetime(2026, 6, 26, 9, tzinfo=dt.UTC),
            "end_at": dt.datetime(2026, 6, 26, 9, 30, tzinfo=dt.UTC), "timezone": "Europe/Madrid",
            # text_reminder_number and the "Teléfono (WhatsApp)" answer are one number: one address.
            "addresses": (("email", "lucia.gomez@example.com"), ("phone", "+34612345678")),
            "contact_name": "Lucía Gómez", "service": "Limpieza dental", "location": "Calle Mayor 1, Madrid",
            "event_type": "https://api.calendly.com/event_types/TYPEAAAAAAAAAAAA", "reason": None, "replaces": None,
            "cancel_url": "https://calendly.com/cancellations/INVAAAAAAAAAAAAA",
            "booked_at": dt.datetime(2026, 6, 24, 22, 30, 44, 731525, tzinfo=dt.UTC),
        }),
        ("invitee.canceled.json", {"status": "canceled", "external_id": LUCIA, "reason": "Me ha surgido un viaje"}),
        ("invitee.canceled.rescheduled.json", None),
        ("invitee.created.rescheduled.json", {
            "status": "scheduled", "external_id": LUCIA_MOVED, "replaces": LUCIA, "timezone": "America/Mexico_City",
            "location": "https://zoom.us/j/91234567890", "start_at": dt.datetime(2026, 6, 29, 16, tzinfo=dt.UTC),
            "addresses": (("email", "lucia.gomez@example.com"),),
        }),
        ("invitee_no_show.created.json", {"status": "no_show", "external_id": LUCIA, "reason": None}),
    ],
)
def test_payload_files_map_to_appointments(file: str, expected: dict[str, Any] | None) -> None:
    envelope = load(file)
    assert envelope["event"] in HANDLED_EVENTS
    status = status_for(envelope["event"], envelope["payload"])
    if expected is None:  # the canceled half of a reschedule changes nothing
        assert status is None
        return
    booking = booking_from_invitee(envelope["payload"], status=status, region="ES", phone_questions=["Teléfono"])
    assert {name: getattr(booking, name) for name in expected} == expected


def test_other_events_are_not_handled() -> None:
    assert load("routing_form_submission.created.json")["event"] not in HANDLED_EVENTS


@pytest.mark.parametrize(
    ("question", "is_phone"),
    [("Teléfono", True), ("TELEFONO MÓVIL", True), ("Su número de celular", True), ("Número de WhatsApp", True),
     ("Phone number", True), ("Mobile phone", True), ("Email", False), ("¿Motivo de la consulta?", False)],
)
def test_phone_questions_match_ignoring_case_accents_and_position(question: str, is_phone: bool) -> None:
    defaults = ("Teléfono", "Telefono", "WhatsApp", "Phone", "Phone number", "Móvil", "Celular")
    assert is_phone_question(question, defaults) is is_phone


def test_unusable_numbers_and_emails_are_left_out() -> None:
    payload = load("invitee.created.json")["payload"]
    payload.update(email="not an email", text_reminder_number="12")
    payload["questions_and_answers"] = [{"question": "WhatsApp", "answer": "no tengo", "position": 0},
                                        {"question": "Teléfono", "answer": "+52 1 55 1234 5678", "position": 1}]
    booking = booking_from_invitee(payload, status="scheduled", region="ES", phone_questions=["WhatsApp", "Teléfono"])
    assert booking.addresses == (("phone", "+525512345678"),)


def test_an_unknown_invitee_timezone_is_dropped() -> None:
    payload = load("invitee.created.json")["payload"]
    payload["timezone"] = "Mars/Olympus_Mons"
    booking = booking_from_invitee(payload, status="scheduled", region="ES", phone_questions=[])
    assert booking.timezone is None and booking.contact_timezone is None


# --- webhooks through the hub ------------------------------------------------------


async def test_signed_booking_26_hours_ahead_is_confirmed_by_email_with_reminders_in_the_invitee_timezone(
    database_url: str, stand_in: CalendlyStandIn, start_server: Callable[..., Server], record_file: Path,
) -> None:
    smtp = start_server()
    start = later(26)
    mexico = ZoneInfo("America/Mexico_City")
    # Quiet hours around the 30 min reminder as Mexico City reads it (in Madrid it is 7-8 hours later):
    # only a plan made in the invitee's zone moves it.
    thirty = (start - dt.timedelta(minutes=30)).astimezone(mexico)
    quiet = f"{thirty - dt.timedelta(minutes=5):%H:%M}-{thirty + dt.timedelta(minutes=5):%H:%M}"
    tenants = tenants_with(stand_in, channel_order=["email", "sms"], quiet_hours=quiet)
    smtp_table = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "from_address": "citas@clinic.example", "sandbox": False}
    async with calendly_hub(database_url, tenants, plugins={"smtp_email": smtp_table}, record_file=record_file) as (hub, client):
        payload = stand_in.book(
            start=start, email="Ana.Lopez@Example.com", name="Ana López", timezone="America/Mexico_City",
            text_reminder_number="+52 55 1234 5678",
            questions=[("¿Motivo?", "Revisión"), ("Teléfono celular", "612 345 678"), ("WhatsApp", "no tengo")],
        )
        assert await post(client, stand_in.envelope("invitee.created", payload)) == (200, {"accepted": True})
        assert await hub.inbox.process_pending() == 1
        [appointment] = await rows(hub, Appointment)
        assert (appointment.external_id, appointment.source, appointment.start_at) == (payload["uri"], "calendly", start)
        assert (appointment.timezone, appointment.service, appointment.status) == ("America/Mexico_City", "Limpieza dental", "scheduled")
        [contact] = await rows(hub, Contact)
        assert (contact.name, contact.timezone) == ("Ana López", "America/Mexico_City")
        identities = {(i.kind, i.value) for i in await rows(hub, Identity, Identity.contact_id == contact.id)}
        assert identities == {("email", "ana.lopez@example.com"), ("phone", "+525512345678"), ("phone", "+34612345678")}
        notifications = await rows(hub, Notification)
        assert kinds(notifications) == ["confirmation", "reminder", "reminder", "reminder"]
        assert {k: start - v for k, v in pending_reminders(notifications).items()} == {
            "24h": dt.timedelta(hours=24), "2h": dt.timedelta(hours=2),
            "30m": dt.timedelta(minutes=36),  # moved to the minute before the quiet window began
        }
        await hub.dispatcher.dispatch_due()
        confirmation = next(n for n in await rows(hub, Notification) if n.kind == "confirmation")
        assert (confirmation.status, confirmation.channel) == ("sent", "smtp-email")
    assert [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"] == ["created"]
    [received] = smtp.mailbox.received
    assert received.rcpt_tos == ["ana.lopez@example.com"]
    email = received.email
    local = start.astimezone(mexico)
    assert f"Fecha y hora: {format_date(local, format='full', locale='es')}, {local.hour}:{local:%M}" in email.get_body(("plain",)).get_content()
    invite = next(part for part in email.walk() if part.get_content_type() == "text/calendar")
    event = icalendar.Calendar.from_ical(invite.get_payload(decode=True)).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == start and str(event["SUMMARY"]) == "Limpieza dental"


@pytest.mark.parametrize("order", ["canceled_first", "created_first"])
async def test_reschedule_pair_in_either_order_moves_the_appointment(
    database_url: str, stand_in: CalendlyStandIn, record_file: Path, order: str,
) -> None:
    async with calendly_hub(database_url, tenants_with(stand_in), record_file=record_file) as (hub, client):
        start = later(30)
        booked = stand_in.book(start=start, email="ana@example.com", name="Ana", text_reminder_number="+34 600 123 456")
        await post(client, stand_in.envelope("invitee.created", booked))
        await hub.inbox.process_pending()
        new_start = start + dt.timedelta(days=2, hours=3)
        canceled, created = stand_in.reschedule(booked["uri"], new_start)
        assert canceled["rescheduled"] is True and created["old_invitee"] == booked["uri"]
        halves = [("invitee.canceled", canceled), ("invitee.created", created)]
        answers = []
        for name, payload in halves if order == "canceled_first" else halves[::-1]:
            answers.append(await post(client, stand_in.envelope(name, payload)))
            await hub.inbox.process_pending()
        assert (200, {"accepted": False, "ignored": "rescheduled"}) in answers
        assert (200, {"accepted": True}) in answers
        [appointment] = await rows(hub, Appointment)
        assert (appointment.external_id, appointment.start_at, appointment.status) == (created["uri"], new_start, "scheduled")
        notifications = await rows(hub, Notification)
        assert kinds(notifications).count("confirmation") == 1
        assert kinds(notifications).count("reschedule") == 1 and "cancellation" not in kinds(notifications)
        assert {k: new_start - v for k, v in pending_reminders(notifications).items()} == {
            "24h": dt.timedelta(hours=24), "2h": dt.timedelta(hours=2), "30m": dt.timedelta(minutes=30),
        }
        assert await count(hub, InboxEventRow) == 2  # the canceled half stored nothing
    changes = [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"]
    assert changes == ["created", "rescheduled"]


async def test_cancellation_stops_the_reminders_and_sends_the_reason(database_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(database_url, tenants_with(stand_in)) as (hub, client):
        booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
        await post(client, stand_in.envelope("invitee.created", booked))
        await hub.inbox.process_pending()
        canceled = stand_in.cancel(booked["uri"], "Tengo fiebre")
        assert await post(client, stand_in.envelope("invitee.canceled", canceled)) == (200, {"accepted": True})
        await hub.inbox.process_pending()
        [appointment] = await rows(hub, Appointment)
        notifications = await rows(hub, Notification)
    assert appointment.status == "canceled"
    assert {n.status for n in notifications if n.kind in ("reminder", "confirmation")} == {"canceled"}
    [cancellation] = [n for n in notifications if n.kind == "cancellation"]
    assert (cancellation.status, cancellation.data) == ("pending", {"reason": "Tengo fiebre"})


async def test_forged_or_stale_webhooks_are_refused_and_store_nothing(database_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(database_url, tenants_with(stand_in, salon={"signing_key": SALON_KEY})) as (hub, client):
        envelope = stand_in.envelope("invitee.created", stand_in.book(start=later(30), email="ana@example.com", name="Ana"))
        body = json.dumps(envelope).encode()
        now = int(utcnow().timestamp())
        _, good_headers = signed(body, CLINIC_KEY, now)
        cases: list[tuple[str, dict[str, str], bytes, str, int]] = [
            ("no header", {}, body, "?tenant=clinic", 401),
            ("malformed header", {"Calendly-Webhook-Signature": "v1=abc"}, body, "?tenant=clinic", 401),
            ("another key", signed(body, "guessed-key", now)[1], body, "?tenant=clinic", 403),
            ("another key, no tenant hint", signed(body, "guessed-key", now)[1], body, "", 403),
            ("body changed after signing", good_headers, body.replace(b"ana@", b"eve@"), "?tenant=clinic", 403),
            ("replayed 181 s later", signed(body, CLINIC_KEY, now - 181)[1], body, "?tenant=clinic", 403),
            # Far enough ahead that a slow test machine cannot bring it inside the 180 s tolerance
            # (the exact boundary is checked on the parser above).
            ("dated 5 minutes ahead", signed(body, CLINIC_KEY, now + 300)[1], body, "?tenant=clinic", 403),
            ("another tenant's hint", good_headers, body, "?tenant=salon", 403),
            ("unknown tenant hint", good_headers, body, "?tenant=nosuch", 403),
        ]
        answers = {}
        for name, headers, data, query, _ in cases:
            response = await client.post(WEBHOOK + query, data=data, headers={"Content-Type": "application/json", **headers})
            answers[name] = response.status
        assert answers == {name: status for name, *_, status in cases}
        assert await count(hub, InboxEventRow) == 0
        assert await post(client, envelope, timestamp=now) == (200, {"accepted": True})  # the genuine one still passes


async def test_the_same_event_delivered_twice_changes_nothing(database_url: str, stand_in: CalendlyStandIn, record_file: Path) -> None:
    async with calendly_hub(database_url, tenants_with(stand_in), record_file=record_file) as (hub, client):
        envelope = stand_in.envelope("invitee.created", stand_in.book(start=later(30), email="ana@example.com", name="Ana"))
        assert await post(client, envelope) == (200, {"accepted": True})
        await hub.inbox.process_pending()
        before = [(n.id, n.status, n.due_at) for n in await rows(hub, Notification)]
        # Calendly's retry: the same body, signed again later.
        assert await post(client, envelope, timestamp=int(utcnow().timestamp()) + 1) == (200, {"accepted": False})
        assert await hub.inbox.process_pending() == 0
        assert [(n.id, n.status, n.due_at) for n in await rows(hub, Notification)] == before
        assert await count(hub, InboxEventRow) == 1 and len(await rows(hub, Appointment)) == 1
    assert [r["change"] for r in read_records(record_file) if r["hook"] == "on_appointment_changed"] == ["created"]


async def test_no_show_cancels_pending_reminders_and_its_removal_restores_the_booking(database_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(database_url, tenants_with(stand_in)) as (hub, client):
        booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
        await post(client, stand_in.envelope("invitee.created", booked))
        await hub.inbox.process_pending()
        assert await post(client, stand_in.envelope("invitee_no_show.created", stand_in.mark_no_show(booked["uri"]))) == (200, {"accepted": True})
        await hub.inbox.process_pending()
        [appointment] = await rows(hub, Appointment)
        assert appointment.status == "no_show" and pending_reminders(await rows(hub, Notification)) == {}
        assert await post(client, stand_in.envelope("invitee_no_show.deleted", stand_in.unmark_no_show(booked["uri"]))) == (200, {"accepted": True})
        await hub.inbox.process_pending()
        [appointment] = await rows(hub, Appointment)
        assert appointment.status == "scheduled"


async def test_no_show_removal_rearms_the_reminders(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, client):
        booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
        await post(client, stand_in.envelope("invitee.created", booked))
        await post(client, stand_in.envelope("invitee_no_show.created", stand_in.mark_no_show(booked["uri"])))
        await post(client, stand_in.envelope("invitee_no_show.deleted", stand_in.unmark_no_show(booked["uri"])))
        await hub.inbox.process_pending()
        assert set(pending_reminders(await rows(hub, Notification))) == {"24h", "2h", "30m"}


async def test_the_tenant_is_the_one_whose_key_verifies(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    tenants = tenants_with(stand_in, salon={"signing_key": SALON_KEY})
    async with calendly_hub(sqlite_url, tenants) as (hub, client):
        envelope = stand_in.envelope("invitee.created", stand_in.book(start=later(30), email="ana@example.com", name="Ana"))
        assert await post(client, envelope, SALON_KEY, tenant=None) == (200, {"accepted": True})
        [row] = await rows(hub, InboxEventRow)
        assert row.tenant_id == (await hub.tenants.get("salon")).id and row.payload["tenant"] == "salon"


async def test_other_events_are_acknowledged_and_malformed_json_refused(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, client):
        routing = load("routing_form_submission.created.json")
        assert await post(client, routing) == (200, {"accepted": False, "ignored": "routing_form_submission.created"})
        status, body = await post(client, b'{"event": "invitee.created", "payload": ')
        assert status == 400 and body["error"] == "malformed_json"
        status, _ = await post(client, b'["invitee.created"]')
        assert status == 400
        assert await count(hub, InboxEventRow) == 0


async def test_signing_key_stored_by_subscribe_verifies_when_none_is_configured(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(sqlite_url, tenants_with(stand_in, clinic={"signing_key": None})) as (hub, client):
        envelope = stand_in.envelope("invitee.created", stand_in.book(start=later(30), email="ana@example.com", name="Ana"))
        assert (await post(client, envelope, ""))[0] == 403  # an empty key must never verify
        await hub.set_plugin_data("calendly", "clinic", "subscription", {"uri": "x", "signing_key": "stored-key-77"})
        assert await post(client, envelope, "stored-key-77") == (200, {"accepted": True})


# --- the API client -----------------------------------------------------------------


@asynccontextmanager
async def api(stand_in: CalendlyStandIn, token: str | None = None) -> AsyncIterator[CalendlyClient]:
    async with aiohttp.ClientSession() as session:
        yield CalendlyClient(session, base_url=stand_in.base_url, token=token or stand_in.token, tenant="clinic")


async def test_client_follows_next_page_token_until_null(stand_in: CalendlyStandIn) -> None:
    for hours in (30, 40, 50, 60, 70):
        stand_in.book(start=later(hours), email=f"c{hours}@example.com", name="C")
    async with api(stand_in) as client:
        events = [e async for e in client.collection("/scheduled_events", {"organization": stand_in.organization}, count=2)]
    assert len(events) == 5 and len({e["uri"] for e in events}) == 5
    calls = stand_in.calls("GET", "/scheduled_events")
    assert [("page_token" in c.query) for c in calls] == [False, True, True]


async def test_client_waits_out_429_a_bounded_number_of_times(stand_in: CalendlyStandIn) -> None:
    stand_in.throttle("0", "0")
    async with api(stand_in) as client:
        me = await client.current_user()
        assert me["current_organization"] == stand_in.organization
        assert [c.status for c in stand_in.calls("GET", "/users/me")] == [429, 429, 200]
        stand_in.throttle("0", "0", "0", "0")
        with pytest.raises(CalendlyError, match="rate limit for tenant clinic") as refused:
            await client.current_user()
        assert refused.value.status == 429
        stand_in.throttle("3600")  # longer than we would ever sleep in a request: give up at once
        with pytest.raises(CalendlyError, match="Retry-After 3600"):
            await client.current_user()


async def test_client_reports_a_wrong_token_and_calendly_error_bodies(stand_in: CalendlyStandIn) -> None:
    async with api(stand_in, token="expired-token") as client:
        with pytest.raises(CalendlyAuthError, match="Calendly token for tenant clinic is expired or wrong") as denied:
            await client.current_user()
    assert "The access token is invalid" in str(denied.value)
    async with api(stand_in) as client:
        with pytest.raises(CalendlyError, match=r"400 Invalid Argument: The supplied parameters are invalid. \(owner: is not an event type of yours\)"):
            await client.create_scheduling_link("https://api.calendly.com/event_types/NOPE")


async def test_available_times_are_asked_a_week_at_a_time(stand_in: CalendlyStandIn) -> None:
    event_type = stand_in.add_event_type("Limpieza dental", slug="limpieza")
    start = later(2)
    stand_in.add_slots(event_type, [start + dt.timedelta(days=d, hours=1) for d in (0, 8, 16)])
    end = start + dt.timedelta(days=17)
    assert [b - a for a, b in availability_windows(start, end)] == [dt.timedelta(days=7)] * 2 + [dt.timedelta(days=3)]
    async with api(stand_in) as client:
        slots = await client.available_times(event_type["uri"], start, end)
    assert len(slots) == 3
    assert len(stand_in.calls("GET", "/event_type_available_times")) == 3


async def test_a_plain_member_token_lists_its_own_events(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    stand_in.org_admin = False  # Calendly refuses organization-wide lists to non-admins
    booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, _):
        events = await list_upcoming(CalendlyPlugin.of(hub), "clinic", utcnow())
    assert [e["uri"] for e in events] == [booked["event"]]
    assert [(c.status, "user" in c.query) for c in stand_in.calls("GET", "/scheduled_events")] == [(403, False), (200, True)]


# --- tools ----------------------------------------------------------------------------


async def test_tools_find_slots_make_a_link_and_cancel(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    event_type = stand_in.add_event_type("Limpieza dental", slug="limpieza")
    stand_in.add_event_type("Ortodoncia")
    tomorrow = (utcnow() + dt.timedelta(days=1)).astimezone(ZoneInfo("Europe/Madrid")).date()
    slot = dt.datetime.combine(tomorrow, dt.time(10), tzinfo=ZoneInfo("Europe/Madrid"))
    stand_in.add_slots(event_type, [slot, slot + dt.timedelta(days=10)])
    booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana", event_type=event_type)
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, _):
        tools = {t.name: t for plugin, found in await hub.hooks.call_all_named("register_tools", hub=hub, tenant="clinic")
                 if plugin == "calendly" for t in found}
        salon = [plugin for plugin, _ in await hub.hooks.call_all_named("register_tools", hub=hub, tenant="salon")]
        assert sorted(tools) == ["calendly_availability", "calendly_book", "calendly_cancel", "calendly_scheduling_link"]
        assert "calendly" not in salon
        assert tools["calendly_availability"].parameters["required"] == ["event_type", "start", "end"]
        found = await tools["calendly_availability"].func(event_type="limpieza dental", start=tomorrow.isoformat(), end=tomorrow.isoformat())
        assert found["event_type"] == event_type["uri"]
        assert [s["local_start"] for s in found["slots"]] == [slot.isoformat()]
        link = await tools["calendly_scheduling_link"].func(event_type="limpieza")
        assert link["booking_url"] == stand_in.links[0]["booking_url"]
        canceled = await tools["calendly_cancel"].func(event=booked["uri"], reason="La doctora está enferma")
        assert canceled["canceled"] is True
        with pytest.raises(ValueError, match="no single Calendly event type matches 'Blanqueamiento'"):
            await tools["calendly_scheduling_link"].func(event_type="Blanqueamiento")
    [call] = stand_in.calls("POST", f"/scheduled_events/{booked['event'].rsplit('/', 1)[-1]}/cancellation")
    assert call.body == {"reason": "La doctora está enferma"}
    assert stand_in.payload(booked["uri"])["status"] == "canceled"


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"tolerance_seconds": 60}, "tenants.clinic.plugins.calendly.token", "required key is missing"),
        ({"token": "t", "tolerance_seconds": 0}, "tenants.clinic.plugins.calendly.tolerance_seconds", "must be more than 0 seconds"),
        ({"token": "t", "api_base_url": "ftp://calendly"}, "tenants.clinic.plugins.calendly.api_base_url", "must be an http:// or https:// URL"),
        ({"token": "t", "webhook_secret": "x"}, "tenants.clinic.plugins.calendly.webhook_secret", "unknown key"),
    ],
)
def test_settings_errors_name_the_key(sqlite_url: str, table: dict[str, Any], key: str, problem: str) -> None:
    tenants = {slug: dict(t) for slug, t in DEFAULT_TENANTS.items()}
    tenants["clinic"]["plugins"] = {"calendly": table}
    with pytest.raises(ConfigError) as error:
        Hub.build(make_config(sqlite_url, tenants=tenants))
    assert (error.value.key, error.value.problem) == (key, problem)


async def test_without_calendly_settings_webhooks_are_refused_and_nothing_stored(sqlite_url: str) -> None:
    # The route is always mounted (a tenant may be given Calendly settings while the hub runs),
    # but with no signing key anywhere no request can verify.
    async with calendly_hub(sqlite_url, DEFAULT_TENANTS) as (hub, client):
        response = await client.post(WEBHOOK, data=b"{}")
        assert response.status in (401, 403)
        assert hub.plugins["calendly"].configured is False
        async with hub.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(InboxEventRow)) == 0


# --- the command line, against the stand-in -------------------------------------------


async def hub_cli(*args: str, config: Path, env: dict[str, str] | None = None) -> CliResult:
    """`python -m hub ...` in a subprocess, awaited, so the stand-in in this event loop keeps answering."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ.update(env or {}, HUB_CONFIG=str(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=config.parent,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


def cli_tenants(stand_in: CalendlyStandIn, **clinic: Any) -> dict[str, dict[str, Any]]:
    """The clinic's token as a secret from the environment, as an operator writes it."""
    return tenants_with(stand_in, clinic={"token": {"env": "CLINIC_CALENDLY_TOKEN"}, **clinic})


async def test_cli_sync_backfills_existing_bookings_once(database_url: str, stand_in: CalendlyStandIn, tmp_path: Path) -> None:
    env = {"CLINIC_CALENDLY_TOKEN": stand_in.token}
    tenants = cli_tenants(stand_in)
    config = write_toml(tmp_path / "config.toml", config_document(database_url, tenants=tenants))
    upcoming = [stand_in.book(start=later(h), email=f"c{h}@example.com", name=f"C{h}", booked_at=utcnow() - dt.timedelta(days=9),
                              text_reminder_number="+34 600 000 0%02d" % h) for h in (30, 50)]
    stand_in.book(start=later(-3), email="past@example.com", name="Past")
    stand_in.cancel(stand_in.book(start=later(40), email="gone@example.com", name="Gone")["uri"], "No puede")

    first = await hub_cli("calendly", "sync", "--tenant", "clinic", config=config, env=env)
    assert first.returncode == 0, first.stderr
    assert "calendly sync for clinic: 2 upcoming events, 2 invitees: 2 created, 0 rescheduled, 0 updated, 0 unchanged" in first.stdout
    assert stand_in.token not in first.stdout + first.stderr
    second = await hub_cli("calendly", "sync", "--tenant", "clinic", config=config, env=env)
    assert second.returncode == 0, second.stderr
    assert "2 invitees: 0 created, 0 rescheduled, 0 updated, 2 unchanged" in second.stdout

    hub = Hub.build(make_config(database_url, environ=env, tenants=tenants))
    async with hub.running():
        appointments = await rows(hub, Appointment)
        notifications = await rows(hub, Notification)
    assert sorted(a.external_id for a in appointments) == sorted(p["uri"] for p in upcoming)
    assert kinds(notifications).count("confirmation") == 0  # old bookings: reminders only
    by_appointment = {a.external_id: pending_reminders([n for n in notifications if n.appointment_id == a.id]) for a in appointments}
    for payload in upcoming:
        start = dt.datetime.fromisoformat(payload["scheduled_event"]["start_time"])
        assert {k: start - v for k, v in by_appointment[payload["uri"]].items()} == {
            "24h": dt.timedelta(hours=24), "2h": dt.timedelta(hours=2), "30m": dt.timedelta(minutes=30),
        }


async def test_cli_subscribe_stores_a_key_that_verifies_deliveries(sqlite_url: str, stand_in: CalendlyStandIn, tmp_path: Path) -> None:
    env = {"CLINIC_CALENDLY_TOKEN": stand_in.token}
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    tenants = cli_tenants(stand_in)
    del tenants["clinic"]["plugins"]["calendly"]["signing_key"]
    tenants["salon"]["plugins"] = {"calendly": calendly_table(stand_in)}
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, tenants=tenants, hub={"public_url": public}))

    subscribed = await hub_cli("calendly", "subscribe", "--tenant", "clinic", config=config, env=env)
    assert subscribed.returncode == 0, subscribed.stderr
    [subscription] = stand_in.subscriptions.values()
    assert subscription["callback_url"] == f"{public}{WEBHOOK}?tenant=clinic"
    assert subscription["scope"] == "organization" and subscription["organization"] == stand_in.organization
    assert sorted(subscription["events"]) == sorted(HANDLED_EVENTS)
    assert f"subscribed tenant clinic: {subscription['uri']}" in subscribed.stdout
    [key] = stand_in.signing_keys.values()
    assert key not in subscribed.stdout + subscribed.stderr
    again = await hub_cli("calendly", "subscribe", "--tenant", "clinic", config=config, env=env)
    assert again.returncode == 0 and "already subscribed" in again.stdout and len(stand_in.subscriptions) == 1

    # Someone else subscribed the salon's URL: its key is unknowable, so only --replace fixes it.
    elsewhere = await api_subscribe(stand_in, f"{public}{WEBHOOK}?tenant=salon")
    refused = await hub_cli("calendly", "subscribe", "--tenant", "salon", config=config, env=env)
    assert refused.returncode == 1 and "409 Already Exists" in refused.stderr and "--replace" in refused.stderr
    replaced = await hub_cli("calendly", "subscribe", "--tenant", "salon", "--replace", config=config, env=env)
    assert replaced.returncode == 0, replaced.stderr
    assert elsewhere not in {s["uri"] for s in stand_in.subscriptions.values()} and len(stand_in.subscriptions) == 2

    hub = Hub.build(make_config(sqlite_url, environ=env, tenants=tenants, hub={"public_url": public}))
    async with hub.running():
        async with TestServer(create_app(hub, manage_hub=False, run_workers=False), host="127.0.0.1", port=port):
            booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
            answers = await stand_in.deliver("invitee.created", booked)
        stored = await rows(hub, PluginData)
        inbox = await rows(hub, InboxEventRow)
    assert answers == [(200, {"accepted": True}), (200, {"accepted": True})]  # one per tenant's subscription
    assert sorted(r.payload["tenant"] for r in inbox) == ["clinic", "salon"]
    assert {r.value["signing_key"] for r in stored} == set(stand_in.signing_keys.values())


async def api_subscribe(stand_in: CalendlyStandIn, url: str) -> str:
    async with api(stand_in) as client:
        created = await client.create_webhook_subscription(url=url, organization=stand_in.organization, signing_key="someone-elses")
    return str(created["uri"])


async def test_cli_check_shows_the_user_and_event_types_and_names_a_bad_token(sqlite_url: str, stand_in: CalendlyStandIn, tmp_path: Path) -> None:
    stand_in.add_event_type("Limpieza dental", slug="limpieza", duration=45)
    env = {"CLINIC_CALENDLY_TOKEN": stand_in.token}
    tenants = cli_tenants(stand_in)
    tenants["salon"]["plugins"] = {"calendly": calendly_table(stand_in, token="revoked-token")}
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, tenants=tenants))
    checked = await hub_cli("calendly", "check", "--tenant", "clinic", config=config, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "token ok for tenant clinic: Dra. Ruiz <agenda@clinic.example>" in checked.stdout
    assert f"organization: {stand_in.organization}" in checked.stdout
    assert "Limpieza dental  [limpieza]  45 min" in checked.stdout and "signing key: config" in checked.stdout
    assert stand_in.token not in checked.stdout + checked.stderr
    bad = await hub_cli("calendly", "check", "--tenant", "salon", config=config, env=env)
    assert bad.returncode == 1
    assert "Calendly token for tenant salon is expired or wrong" in bad.stderr
    listed = await hub_cli("tools", "--tenant", "clinic", config=config, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "calendly_availability  [calendly]" in listed.stdout and "calendly_cancel  [calendly]" in listed.stdout


# --- the stand-in stays honest -----------------------------------------------------------

# Required keys from specs/calendly/openapi.yaml: components.schemas Invitee, Event, Pagination, WebhookPayload.
SPEC_REQUIRED = {
    "Invitee": {"uri", "email", "first_name", "last_name", "name", "status", "questions_and_answers", "timezone", "event",
                "created_at", "updated_at", "tracking", "text_reminder_number", "rescheduled", "old_invitee", "new_invitee",
                "cancel_url", "reschedule_url", "routing_form_submission", "payment", "no_show", "reconfirmation"},
    "Event": {"uri", "name", "status", "start_time", "end_time", "event_type", "location", "invitees_counter", "created_at",
              "updated_at", "event_memberships", "event_guests", "calendar_event"},
    "Pagination": {"count", "next_page", "previous_page", "next_page_token", "previous_page_token"},
    "WebhookPayload": {"event", "created_at", "created_by", "payload"},
}


async def test_stand_in_answers_with_the_spec_required_keys(stand_in: CalendlyStandIn) -> None:
    booked = stand_in.book(start=later(30), email="ana@example.com", name="Ana")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stand_in.token}"}) as session:
        async with session.get(f"{stand_in.base_url}/scheduled_events", params={"organization": stand_in.organization}) as r:
            events = await r.json()
        uuid = booked["event"].rsplit("/", 1)[-1]
        async with session.get(f"{stand_in.base_url}/scheduled_events/{uuid}/invitees") as r:
            invitees = await r.json()
        async with session.get(f"{stand_in.base_url}/scheduled_events/NOPE/invitees") as r:
            missing = (r.status, await r.json())
    assert SPEC_REQUIRED["Event"] <= set(events["collection"][0])
    assert SPEC_REQUIRED["Invitee"] <= set(invitees["collection"][0])
    assert set(invitees["pagination"]) == SPEC_REQUIRED["Pagination"]
    assert SPEC_REQUIRED["WebhookPayload"] == set(stand_in.envelope("invitee.created", booked))
    assert missing == (404, {"title": "Resource Not Found", "message": "The server could not find the requested resource."})
    for file in ("invitee.created.json", "invitee.canceled.json", "invitee.created.rescheduled.json"):
        assert SPEC_REQUIRED["Invitee"] <= set(load(file)["payload"])


async def test_hook_complete_event(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    """A payload naming its event only by URI is stored, then completed in the worker with the tenant's token, retried on failure."""
    from sqlalchemy import update

    start = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, client):
        payload = stand_in.book(start=start, email="ana@example.com", name="Ana")
        event_uri = payload["scheduled_event"]["uri"]
        by_uri = {**payload, "scheduled_event": event_uri}
        assert await post(client, stand_in.envelope("invitee.created", by_uri)) == (200, {"accepted": True})
        # Calendly cannot be read for a moment: the event stays in the inbox with the error, for a retry.
        stand_in.throttle("120")
        assert await hub.inbox.process_pending() == 1
        (row,) = await rows(hub, InboxEventRow)
        assert row.processed_at is None and row.failed_at is None and "could not complete" in (row.error or "")
        assert await count(hub, Appointment) == 0
        async with hub.db.sessions.begin() as session:  # the backoff has passed
            await session.execute(update(InboxEventRow).values(next_attempt_at=utcnow()))
        assert await hub.inbox.process_pending() == 1
        (appointment,) = await rows(hub, Appointment)
        assert appointment.start_at == start and appointment.external_id == payload["uri"]
        assert len(stand_in.calls("GET", f"/scheduled_events/{event_uri.rsplit('/', 1)[1]}")) == 2
        assert kinds(await rows(hub, Notification)).count("confirmation") == 1
        # Redelivered by Calendly: the same dedupe key, nothing new.
        assert await post(client, stand_in.envelope("invitee.created", by_uri)) == (200, {"accepted": False})


async def test_an_unmappable_signed_event_is_acknowledged_not_a_500(sqlite_url: str, stand_in: CalendlyStandIn) -> None:
    async with calendly_hub(sqlite_url, tenants_with(stand_in)) as (hub, client):
        payload = stand_in.book(start=utcnow() + dt.timedelta(days=3), email="ana@example.com", name="Ana")
        broken = {**payload, "scheduled_event": {**payload["scheduled_event"], "start_time": "not a time"}}
        status, body = await post(client, stand_in.envelope("invitee.created", broken))
        assert status == 200 and body["accepted"] is False and "start_time" in body["ignored"]
        assert await count(hub, InboxEventRow) == 0
