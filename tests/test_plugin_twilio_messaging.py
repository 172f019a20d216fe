"""The built-in twilio_messaging plugin against a Twilio stand-in (tests/stand_ins/twilio.py) on 127.0.0.1.

Webhooks are signed with the real algorithm (the SDK's RequestValidator) over
the hub's public URL, as Twilio signs them, and delivered to the test server
as a proxy would. The workers do not run in the background: tests process the
inbox and drain the outbox themselves, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from babel.dates import format_date
from multidict import MultiDict
from sqlalchemy import func, or_, select, update

import plugins.twilio_messaging as twilio_plugin
from hub import AppointmentInput, OutboundMessage, PermanentError, TransientError
from hub.app import create_app
from hub.config import parse_config
from hub.core import Hub
from hub.errors import StartupError
from hub.models import Contact, Conversation, DeliveryAttempt, Identity, InboxEventRow, Message, Notification, utcnow
from hub.outbox import NotificationRequest
from plugins.twilio_messaging.keywords import classify
from plugins.twilio_messaging.sending import TwilioChannel, retry_after_seconds
from plugins.twilio_messaging.webhooks import EMPTY_TWIML, signature_ok
from tests.conftest import ROOT, CliResult, config_document, write_toml
from tests.pg import free_port
from tests.stand_ins.twilio import CREATE_FIELDS, Failure, TwilioStandIn, sign

PAYLOADS = Path(__file__).resolve().parent / "payloads" / "twilio_messaging"
SPEC = ROOT.parent / "shared" / "specs" / "twilio" / "twilio_api_v2010.json"

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "s3cret-twilio-token-4e1d"
SALON_ACCOUNT = "ACfedcba9876543210fedcba9876543210"
SALON_TOKEN = "salon-twilio-token-77aa"
SIGNING_KEY = "shared-key-secret-93b0"
ENV = {"TWILIO_AUTH_TOKEN": TOKEN, "SALON_TWILIO_AUTH_TOKEN": SALON_TOKEN, "TWILIO_SHARED_KEY": SIGNING_KEY}
PUBLIC_URL = "https://hub.example.com"
INBOUND_URL = f"{PUBLIC_URL}/webhooks/twilio_messaging/inbound"
STATUS_URL = f"{PUBLIC_URL}/webhooks/twilio_messaging/status"
WHATSAPP_FROM = "+14155238886"
SMS_FROM = "+15017122661"
SALON_WHATSAPP = "+5215550001111"
PHONE = "+34600123456"
EMAIL = "ana@example.com"
HELP = "Clínica Sol: llámanos al 910 000 000. Responde BAJA para no recibir más mensajes."
REMINDER_SID = "HX" + "a1" * 16
CONFIRMATION_SID = "HX" + "c2" * 16
TEMPLATES = {
    "es": {
        "reminder": {"content_sid": REMINDER_SID, "variables": {"1": "{{ contact.name }}", "2": "{{ appointment.start | datetime }}"}},
        "confirmation": {"content_sid": CONFIRMATION_SID, "variables": {"1": "{{ tenant.name }}"}},
    }
}
FAST = {"retry_base_seconds": 0.01, "dispatch_poll_seconds": 0.05, "inbox_poll_seconds": 0.05}
CLINIC = {"name": "Clínica Sol", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es"}
SALON = {"name": "Salón Luna", "default_region": "MX", "timezone": "America/Mexico_City", "locale": "es"}


# --- set-up -------------------------------------------------------------------------


def twilio_table(standin: TwilioStandIn | None, **overrides: Any) -> dict[str, Any]:
    """[plugins.twilio_messaging] for clinic's account, live, pointed at the stand-in."""
    return {
        "account_sid": ACCOUNT,
        "auth_token": {"env": "TWILIO_AUTH_TOKEN"},
        "api_base_url": standin.base_url if standin is not None else "http://127.0.0.1:9",
        "whatsapp_from": WHATSAPP_FROM,
        "sms_from": SMS_FROM,
        "help_text": HELP,
        "content_templates": TEMPLATES,
        "sandbox": False,
        **overrides,
    }


def document(
    database_url: str,
    twilio: dict[str, Any],
    *,
    tenants: dict[str, Any] | None = None,
    smtp: bool = False,
    hub: dict[str, Any] | None = None,
) -> dict[str, Any]:
    plugins: dict[str, Any] = {"twilio_messaging": twilio}
    if smtp:
        plugins["smtp_email"] = {"from_address": "citas@clinic.example", "sandbox": True}
    # No test plugins folder: its recorder-sms channel would share the "sms" medium with twilio-sms.
    return config_document(
        database_url,
        hub={"plugin_dirs": [], "public_url": PUBLIC_URL, **FAST, **(hub or {})},
        tenants=tenants if tenants is not None else {"clinic": CLINIC},
        plugins=plugins,
    )


def build_hub(database_url: str, twilio: dict[str, Any], **kwargs: Any) -> Hub:
    raw = document(database_url, twilio, **kwargs)
    return Hub.build(parse_config(raw, "test-config.toml", ENV))


@pytest.fixture
async def standin() -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn({ACCOUNT: TOKEN, SALON_ACCOUNT: SALON_TOKEN}) as server:
        yield server


@dataclass
class Served:
    hub: Hub
    client: TestClient
    base: str
    """Where the test server listens: what the proxy in front of the hub forwards to."""


@asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[Served]:
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            yield Served(hub, client, str(client.make_url("/")).rstrip("/"))


def inbound_form(sender: str, body: str, *, to: str, sid: str, profile: str | None = None) -> list[tuple[str, str]]:
    """An inbound message webhook's fields, as Twilio sends them."""
    form = [
        ("ToCountry", "US"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid), ("SmsStatus", "received"),
        ("Body", body), ("To", to), ("NumSegments", "1"), ("ReferralNumMedia", "0"), ("MessageSid", sid),
        ("AccountSid", ACCOUNT), ("From", sender), ("ApiVersion", "2010-04-01"),
    ]
    if sender.startswith("whatsapp:"):
        form += [("ProfileName", profile or "Ana"), ("WaId", sender.removeprefix("whatsapp:+")), ("MessageType", "text")]
    return form


_sids = iter(range(1, 10**6))


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


async def write(
    served: Served, standin: TwilioStandIn, sender: str, body: str, *, to: str | None = None, token: str = TOKEN,
    sid: str | None = None, url: str = INBOUND_URL,
) -> tuple[int, str]:
    """The contact writes: Twilio posts the signed inbound webhook."""
    to = to or (f"whatsapp:{WHATSAPP_FROM}" if sender.startswith("whatsapp:") else SMS_FROM)
    form = inbound_form(sender, body, to=to, sid=sid or new_sid())
    return await standin.post_webhook(url, form, token=token, deliver_to=served.base)


async def drain(hub: Hub, rounds: int = 200) -> None:
    """Dispatch until nothing is due now, waiting out short retry delays (later reminders stay pending).

    Inbox events the sends caused (an opt-out after Twilio's 21610) are processed as they come.
    """
    for _ in range(rounds):
        if await hub.dispatcher.dispatch_due() + await hub.inbox.process_pending():
            continue
        soon = utcnow() + dt.timedelta(seconds=1)
        async with hub.db.sessions() as session:
            due = await session.scalar(select(Notification.id).where(
                Notification.status.in_(("pending", "sending")), Notification.due_at <= soon,
                or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= soon),
            ))
        if due is None:
            return
        await asyncio.sleep(0.02)


async def process(hub: Hub) -> None:
    """Run the inbox worker until nothing is due (its after-commit hooks included), then the responders."""
    while await hub.inbox.process_pending():
        pass
    await hub.responders.answer_pending()


async def count(hub: Hub, model: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def attempts(hub: Hub, notification_id: int) -> list[tuple[str, str]]:
    async with hub.db.sessions() as session:
        rows = await session.execute(
            select(DeliveryAttempt.channel, DeliveryAttempt.outcome)
            .where(DeliveryAttempt.notification_id == notification_id)
            .order_by(DeliveryAttempt.id)
        )
        return [(channel, outcome) for channel, outcome in rows]


async def notification(hub: Hub, notification_id: int) -> Notification:
    async with hub.db.sessions() as session:
        return await session.get_one(Notification, notification_id)


@dataclass
class Booking:
    contact_id: int
    start: dt.datetime
    reminders: list[int]


async def book(hub: Hub, *, email: str | None = None, tenant: str = "clinic") -> Booking:
    """An appointment in three days for Ana: its confirmation goes out, its reminders wait."""
    start = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    addresses = [("phone", "600 123 456")] + ([("email", email)] if email else [])
    change = await hub.upsert_appointment(tenant, AppointmentInput(
        source="test", external_id="cita-1", start_at=start, timezone="Europe/Madrid",
        addresses=tuple(addresses), contact_name="Ana", service="Limpieza dental",
    ))
    await drain(hub)
    async with hub.db.sessions() as session:
        reminders = list((await session.scalars(
            select(Notification.id).where(Notification.kind == "reminder").order_by(Notification.due_at)
        )).all())
    assert change.appointment.contact_id is not None
    return Booking(change.appointment.contact_id, start, reminders)


async def due_now(hub: Hub, notification_id: int) -> None:
    """Time passes until this notification is due."""
    async with hub.db.sessions.begin() as session:
        await session.execute(update(Notification).where(Notification.id == notification_id).values(due_at=utcnow()))


async def opted_out(hub: Hub, kind: str, value: str) -> set[str]:
    async with hub.db.sessions() as session:
        identity = await session.scalar(select(Identity).where(Identity.kind == kind, Identity.value == value))
    return set(identity.opted_out or {}) if identity is not None else set()


def spanish_datetime(moment: dt.datetime) -> str:
    local = moment.astimezone(ZoneInfo("Europe/Madrid"))
    return f"{format_date(local, format='full', locale='es')}, {local.hour}:{local:%M}"


def channel(hub: Hub, name: str) -> TwilioChannel:
    found = hub.channels[name]
    assert isinstance(found, TwilioChannel)
    return found


# --- sending: templates outside the window, free text inside -----------------------


async def test_reminder_is_a_template_outside_the_window_and_free_text_inside(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        booking = await book(hub)
        # The confirmation went out as its WhatsApp template: Ana never wrote to us.
        confirmation = standin.accepted()[-1]
        assert (confirmation.get("ContentSid"), confirmation.get("Body")) == (CONFIRMATION_SID, None)
        assert json.loads(confirmation.get("ContentVariables") or "") == {"1": "Clínica Sol"}

        await due_now(hub, booking.reminders[0])
        await drain(hub)
        sent = standin.accepted()[-1]
        assert sent.account_sid == ACCOUNT
        assert sent.authorization == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        assert sent.content_type == "application/x-www-form-urlencoded"
        assert (sent.get("To"), sent.get("From")) == (f"whatsapp:{PHONE}", f"whatsapp:{WHATSAPP_FROM}")
        assert sent.get("ContentSid") == REMINDER_SID and sent.get("Body") is None
        assert json.loads(sent.get("ContentVariables") or "") == {"1": "Ana", "2": spanish_datetime(booking.start)}
        assert sent.get("StatusCallback") == f"{STATUS_URL}?tenant=clinic"
        first = await notification(hub, booking.reminders[0])
        assert (first.status, first.channel) == ("sent", "twilio-whatsapp")
        async with hub.db.sessions() as session:
            recorded = await session.scalar(select(Message).where(Message.notification_id == first.id))
        assert recorded is not None and recorded.provider_id in standin.messages

        # Ana writes on WhatsApp: for 24 hours free text is allowed.
        status, text = await write(served, standin, f"whatsapp:{PHONE}", "Hola, ¿puedo llevar a mi hija?")
        assert (status, text) == (200, EMPTY_TWIML)
        await process(hub)
        await due_now(hub, booking.reminders[1])
        await drain(hub)
        sent = standin.accepted()[-1]
        assert sent.get("ContentSid") is None and sent.get("ContentVariables") is None
        assert sent.get("To") == f"whatsapp:{PHONE}"
        assert "Hola Ana, te recordamos tu cita de Limpieza dental en Clínica Sol" in (sent.get("Body") or "")
        assert all(set(r.form) <= CREATE_FIELDS for r in standin.received)


async def test_stop_is_stored_with_the_webhook_and_applied_once(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        sid = new_sid()
        status, _ = await write(served, standin, PHONE, "STOP", sid=sid)
        assert status == 200
        # Before any worker ran (a crash right after answering Twilio): the opt-out is already durable.
        async with hub.db.sessions() as session:
            kinds = (await session.scalars(select(InboxEventRow.kind).order_by(InboxEventRow.id))).all()
        assert kinds == ["message.received", "contact.opt_out"]
        # Twilio retries the same webhook: nothing new is stored, and it is applied once.
        await write(served, standin, PHONE, "STOP", sid=sid)
        assert await count(hub, InboxEventRow) == 2
    restarted = build_hub(database_url, twilio_table(standin))
    async with restarted.running():
        await process(restarted)
        assert await opted_out(restarted, "phone", PHONE) == {"sms"}


async def test_stop_moves_the_next_reminder_to_email(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin), smtp=True)
    async with serving(hub) as served:
        booking = await book(hub, email=EMAIL)
        sent_before = len(standin.accepted())

        # "Cancelar" on WhatsApp is about the appointment, not an opt-out.
        await write(served, standin, f"whatsapp:{PHONE}", "Cancelar")
        # STOP by SMS opts out of SMS only ...
        await write(served, standin, PHONE, "STOP")
        await process(hub)
        assert await opted_out(hub, "phone", PHONE) == {"sms"}
        # The conversation moved inside the window, so step it back out: the reminder stays a template.
        async with hub.db.sessions.begin() as session:
            await session.execute(update(Conversation).values(last_inbound_at=utcnow() - dt.timedelta(days=2)))
        await due_now(hub, booking.reminders[0])
        await drain(hub)
        assert (await notification(hub, booking.reminders[0])).channel == "twilio-whatsapp"
        assert standin.accepted()[-1].get("ContentSid") == REMINDER_SID

        # ... and "Baja." on WhatsApp opts out of WhatsApp: the next reminder is an email.
        await write(served, standin, f"whatsapp:{PHONE}", "  Baja. ")
        await process(hub)
        assert await opted_out(hub, "phone", PHONE) == {"sms", "whatsapp"}
        await due_now(hub, booking.reminders[1])
        await drain(hub)
        second = await notification(hub, booking.reminders[1])
        assert (second.status, second.channel) == ("sandboxed", "smtp-email")
        # On WhatsApp the hub confirms the opt-out once (Twilio confirms an SMS STOP itself).
        assert len(standin.accepted()) == sent_before + 2
        confirmation = standin.accepted()[-1]
        assert confirmation.get("To") == f"whatsapp:{PHONE}" and "no te enviaremos más mensajes" in (confirmation.get("Body") or "")
        # STOP and BAJA were handled without an answer: no reply was queued.
        async with hub.db.sessions() as session:
            replies = await session.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "reply"))
        assert replies == 0

        # START by SMS opts back in to SMS, and only SMS.
        await write(served, standin, PHONE, "start")
        await process(hub)
        assert await opted_out(hub, "phone", PHONE) == {"whatsapp"}


async def test_undelivered_whatsapp_falls_back_to_sms(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        booking = await book(hub)
        reminder = booking.reminders[0]
        await due_now(hub, reminder)
        await drain(hub)
        async with hub.db.sessions() as session:
            sid = await session.scalar(select(Message.provider_id).where(Message.notification_id == reminder))
        assert sid is not None and standin.messages[sid]["to"] == f"whatsapp:{PHONE}"

        assert await standin.report_status(sid, "sent", deliver_to=served.base) == 200
        assert await standin.report_status(sid, "undelivered", deliver_to=served.base, error_code="63016",
                                           error_message="Outside messaging window") == 200
        await process(hub)
        row = await notification(hub, reminder)
        assert row.status == "pending" and "63016" in (row.last_error or "")
        await drain(hub)

        sms = standin.accepted()[-1]
        assert (sms.get("To"), sms.get("From")) == (PHONE, SMS_FROM)
        assert "te recordamos tu cita" in (sms.get("Body") or "")
        assert await attempts(hub, reminder) == [
            ("twilio-whatsapp", "sent"), ("twilio-whatsapp", "permanent"), ("twilio-sms", "sent"),
        ]
        # The SMS is delivered; a late, out-of-order "sent" for it changes nothing.
        sms_sid = list(standin.messages)[-1]
        assert await standin.report_status(sms_sid, "delivered", deliver_to=served.base) == 200
        assert await standin.report_status(sms_sid, "sent", deliver_to=served.base) == 200
        await process(hub)
        row = await notification(hub, reminder)
        assert (row.status, row.channel) == ("delivered", "twilio-sms")
        async with hub.db.sessions() as session:
            statuses = dict((await session.execute(select(Message.provider_id, Message.status).where(Message.notification_id == reminder))).all())
        assert statuses == {sid: "undelivered", sms_sid: "delivered"}
    # One reminder per slot went out on each channel, never twice.
    assert [r.get("To") for r in standin.accepted()].count(PHONE) == 1


# --- inbound --------------------------------------------------------------------------


async def test_forged_webhooks_get_403_and_leave_no_trace(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        form = inbound_form(f"whatsapp:{PHONE}", "Hola", to=f"whatsapp:{WHATSAPP_FROM}", sid=new_sid())
        forgeries = {
            "another token": sign(INBOUND_URL, form, "not-the-token"),
            "the local URL instead of the public one": sign(f"{served.base}/webhooks/twilio_messaging/inbound", form, TOKEN),
            "another body": sign(INBOUND_URL, [(k, "STOP" if k == "Body" else v) for k, v in form], TOKEN),
            "empty": "",
        }
        for label, signature in forgeries.items():
            status, text = await standin.post_webhook(INBOUND_URL, form, token=TOKEN, deliver_to=served.base, signature=signature)
            assert status == 403, label
            assert "signature" in text.lower(), label
        status_form = [("MessageSid", new_sid()), ("MessageStatus", "delivered"), ("From", SMS_FROM), ("To", PHONE)]
        status, _ = await standin.post_webhook(f"{STATUS_URL}?tenant=clinic", status_form, token="not-the-token", deliver_to=served.base)
        assert status == 403
        await process(hub)
        assert (await count(hub, InboxEventRow), await count(hub, Contact), await count(hub, Message)) == (0, 0, 0)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_unknown_numbers_and_malformed_forms_store_nothing(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        sid = new_sid()
        cases = [
            ("unknown To", INBOUND_URL, inbound_form(PHONE, "Hola", to="+15550000000", sid=sid), 404),
            ("no From", INBOUND_URL, [p for p in inbound_form(PHONE, "Hola", to=SMS_FROM, sid=sid) if p[0] != "From"], 400),
            ("no MessageSid", INBOUND_URL, [p for p in inbound_form(PHONE, "Hola", to=SMS_FROM, sid=sid) if "Sid" not in p[0] or p[0] == "AccountSid"], 400),
            ("unknown tenant", f"{STATUS_URL}?tenant=nobody", [("MessageSid", sid), ("MessageStatus", "sent")], 404),
            ("no MessageStatus", f"{STATUS_URL}?tenant=clinic", [("MessageSid", sid), ("From", SMS_FROM)], 400),
        ]
        for label, url, form, expected in cases:
            status, _ = await standin.post_webhook(url, form, token=TOKEN, deliver_to=served.base)
            assert status == expected, label
        assert (await count(hub, InboxEventRow), await count(hub, Contact)) == (0, 0)


async def test_same_message_sid_twice_is_processed_once(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        sid = new_sid()
        first = await write(served, standin, f"whatsapp:{PHONE}", "Hola", sid=sid)
        second = await write(served, standin, f"whatsapp:{PHONE}", "Hola", sid=sid)
        await process(hub)
        # Twilio retries once more after the message was processed: still acknowledged, never redone.
        form = inbound_form(f"whatsapp:{PHONE}", "Hola", to=f"whatsapp:{WHATSAPP_FROM}", sid=sid)
        third = await served.client.post("/webhooks/twilio_messaging/inbound", data=form,
                                         headers={"X-Twilio-Signature": sign(INBOUND_URL, form, TOKEN)})
        assert (third.status, third.content_type, await third.text()) == (200, "text/xml", EMPTY_TWIML)
        await process(hub)
        assert first == second == (200, EMPTY_TWIML)
        assert await count(hub, InboxEventRow) == 1
        async with hub.db.sessions() as session:
            messages = (await session.scalars(select(Message))).all()
        assert [(m.provider_id, m.direction, m.channel, m.body) for m in messages] == [(sid, "in", "twilio-whatsapp", "Hola")]
        # A status reported twice is stored once too.
        for _ in range(2):
            status, _ = await standin.post_webhook(f"{STATUS_URL}?tenant=clinic", [("MessageSid", sid), ("MessageStatus", "read")], token=TOKEN, deliver_to=served.base)
            assert status == 200
        assert await count(hub, InboxEventRow) == 2


async def test_mexican_whatsapp_lands_on_the_imported_contact(
    database_url: str, standin: TwilioStandIn, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    tenants = {"salon": {**SALON, "plugins": {"twilio_messaging": {
        "account_sid": SALON_ACCOUNT, "auth_token": {"env": "SALON_TWILIO_AUTH_TOKEN"}, "whatsapp_from": SALON_WHATSAPP,
    }}}}
    raw = document(database_url, twilio_table(standin), tenants=tenants)
    config = write_toml(tmp_path / "config.toml", raw)
    (tmp_path / "clientes.csv").write_text("name,phone,email\nLucía Pérez,55 1234 5678,lucia@example.com\n", encoding="utf-8")
    imported = run_cli("contacts", "import", str(tmp_path / "clientes.csv"), "--tenant", "salon", config=config, env=ENV)
    assert imported.returncode == 0, imported.stderr
    exported = run_cli("contacts", "export", "--tenant", "salon", config=config, env=ENV)
    [contact] = [json.loads(line) for line in exported.stdout.splitlines()]

    hub = Hub.build(parse_config(raw, str(config), ENV))
    async with serving(hub) as served:
        status, _ = await write(served, standin, "whatsapp:+5215512345678", "Hola, quiero cambiar mi cita",
                                to=f"whatsapp:{SALON_WHATSAPP}", token=SALON_TOKEN)
        assert status == 200
        # Signed with clinic's token instead, the same message is refused.
        status, _ = await write(served, standin, "whatsapp:+5215512345678", "Hola", to=f"whatsapp:{SALON_WHATSAPP}")
        assert status == 403
        await process(hub)
        async with hub.db.sessions() as session:
            message = await session.scalar(select(Message))
            assert message is not None
            thread = await session.get_one(Conversation, message.conversation_id)
            contacts = (await session.scalars(select(Contact))).all()
    assert thread.contact_id == contact["id"]
    assert (thread.medium, thread.channel) == ("whatsapp", "twilio-whatsapp")
    assert [c.id for c in contacts] == [contact["id"]]
    assert contacts[0].name == "Lucía Pérez"  # the WhatsApp profile name does not overwrite it


async def test_help_is_answered_with_the_help_text_through_the_outbox(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        await write(served, standin, PHONE, "¡Ayuda!")
        await process(hub)
        async with hub.db.sessions() as session:
            reply = await session.scalar(select(Notification).where(Notification.kind == "reply"))
        assert reply is not None and tuple(reply.channel_order) == ("twilio-sms",)
        await drain(hub)
        sent = standin.accepted()[-1]
        assert (sent.get("To"), sent.get("From"), sent.get("Body")) == (PHONE, SMS_FROM, HELP)
        async with hub.db.sessions() as session:
            rows = (await session.execute(
                select(Message.direction, Message.channel, Message.body, Conversation.medium)
                .join(Conversation, Conversation.id == Message.conversation_id).order_by(Message.id)
            )).all()
        assert [tuple(r) for r in rows] == [("in", "twilio-sms", "¡Ayuda!", "sms"), ("out", "twilio-sms", HELP, "sms")]
        assert await opted_out(hub, "phone", PHONE) == set()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_payload_files_are_accepted_as_twilio_sends_them(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with serving(hub) as served:
        sms = parse_qsl((PAYLOADS / "inbound_sms.form").read_text(), keep_blank_values=True)
        # WIRE.md's 555 numbers are fictional, and the core's normaliser refuses them: a real sender here.
        whatsapp = json.loads((PAYLOADS / "inbound_whatsapp_image.json").read_text()) | {"From": "whatsapp:+34612345678"}
        undelivered = parse_qsl((PAYLOADS / "status_undelivered_whatsapp.form").read_text(), keep_blank_values=True)
        for url, form in ((INBOUND_URL, sms), (INBOUND_URL, whatsapp), (STATUS_URL, undelivered)):
            status, _ = await standin.post_webhook(url, form, token=TOKEN, deliver_to=served.base)
            assert status == 200
        async with hub.db.sessions() as session:
            events = {row.kind: row.payload for row in (await session.scalars(select(InboxEventRow))).all() if row.kind == "delivery.status"}
        # The status was found to be clinic's from its From, and WhatsApp's from ChannelPrefix.
        assert events["delivery.status"] | {"reported_at": None} == {
            "tenant": "clinic", "channel": "twilio-whatsapp", "provider_id": "SM2a3b4c5d6e7f80911223344556677889",
            "status": "undelivered", "error_code": "63016", "error_message": "Outside messaging window", "reported_at": None,
        }
        await process(hub)
        async with hub.db.sessions() as session:
            rows = (await session.execute(
                select(Message.channel, Message.body, Message.media, Contact.name)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .join(Contact, Contact.id == Conversation.contact_id).order_by(Message.id)
            )).all()
    assert [tuple(r) for r in rows] == [
        ("twilio-sms", "Hello", [], None),
        ("twilio-whatsapp", "", [{"url": whatsapp["MediaUrl0"], "content_type": "image/jpeg"}], "Jane Doe"),
    ]


# --- signatures ------------------------------------------------------------------------


VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309", "To": "+18005551212", "Caller": "+14158675309"}
JSON_BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
SHA256_SETTINGS = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}


def payload(name: str) -> dict[str, str]:
    return json.loads((PAYLOADS / name).read_text())


# (url validated, params, X-Twilio-Signature, extra headers, signing key, expected): WIRE.md 1.1-1.3;
# the official vectors are twilio-python's tests/unit/test_request_validator.py.
SIGNATURE_ROWS = [
    ("official", VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", {}, None, True),
    ("signed with :443", VECTOR_URL, VECTOR_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=", {}, None, True),
    ("http, signed with :80", VECTOR_URL.replace("https", "http"), VECTOR_PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=", {}, None, True),
    ("http with its own port", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", VECTOR_PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", {}, None, True),
    ("repeated fields", VECTOR_URL, MultiDict([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]),
     "IK+Dwps556ElfBT0I3Rgjkr1wJU=", {}, None, True),
    ("JSON body", f"{VECTOR_URL}&bodySHA256={BODY_HASH}", JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4=", {}, None, True),
    ("JSON body changed", f"{VECTOR_URL}&bodySHA256={BODY_HASH}", JSON_BODY.replace("true", "false"), "a9nBmqA0ju/hNViExpshrM61xv4=", {}, None, False),
    ("HMAC-SHA256 with the shared key", VECTOR_URL, VECTOR_PARAMS, "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=", SHA256_SETTINGS, "12345", True),
    ("HMAC-SHA256 without a shared key", VECTOR_URL, VECTOR_PARAMS, "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=", SHA256_SETTINGS, None, False),
    ("SHA256 signature, no settings header", VECTOR_URL, VECTOR_PARAMS, "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=", {}, "12345", False),
    ("another URL", VECTOR_URL.replace("foo=1", "foo=2"), VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", {}, None, False),
    ("a field changed", VECTOR_URL, {**VECTOR_PARAMS, "Digits": "9999"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", {}, None, False),
    ("no signature", VECTOR_URL, VECTOR_PARAMS, "", {}, None, False),
    ("WhatsApp inbound (WIRE 1.1)", "https://hub.example.com/twilio/whatsapp", payload("inbound_whatsapp_image.json"), "Gvj5WcCXNEQN8lvK4rCkkQRwq9c=", {}, None, True),
    ("status callback (WIRE 1.2)", "https://hub.example.com/twilio/status", payload("status_sent.json"), "ecrYL3h2GopeIQm6bdStO+whEFo=", {}, None, True),
]


@pytest.mark.parametrize(("label", "url", "params", "signature", "headers", "signing_key", "expected"), SIGNATURE_ROWS, ids=[r[0] for r in SIGNATURE_ROWS])
def test_signature_vectors(label: str, url: str, params: Any, signature: str, headers: dict[str, str], signing_key: str | None, expected: bool) -> None:
    all_headers = {"X-Twilio-Signature": signature, **headers} if signature else headers
    assert signature_ok(url, params, all_headers, auth_token="12345", signing_key=signing_key) is expected


def sha256_signature(url: str, form: list[tuple[str, str]], key: str) -> str:
    """The HMAC-SHA256 variant, computed independently of the SDK: same string to sign, SHA-256."""
    text = url + "".join(k + v for k, v in sorted(set(form)))
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode()


def test_sha256_vector_is_what_an_independent_hmac_gives() -> None:
    assert sha256_signature(VECTOR_URL, list(VECTOR_PARAMS.items()), "12345") == "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_signature_behind_a_proxy_and_with_a_shared_key(database_url: str, standin: TwilioStandIn) -> None:
    proxied = "https://edge.example.org/hub"
    hub = build_hub(database_url, twilio_table(standin, public_url=proxied, webhook_signing_key={"env": "TWILIO_SHARED_KEY"}))
    async with serving(hub) as served:
        url = f"{proxied}/webhooks/twilio_messaging/inbound"
        form = inbound_form(PHONE, "Hola", to=SMS_FROM, sid=new_sid())
        # Signed over the hub's [hub] public_url, not the plugin's: refused.
        status, _ = await standin.post_webhook(INBOUND_URL, form, token=TOKEN, deliver_to=served.base)
        assert status == 403
        status, _ = await standin.post_webhook(url, form, token=TOKEN, deliver_to=served.base, proxy_prefix="/hub")
        assert status == 200
        # With the SharedKey settings header, an HMAC-SHA256 signature keyed with the signing key passes ...
        other = inbound_form(PHONE, "Hola otra vez", to=SMS_FROM, sid=new_sid())
        status, _ = await standin.post_webhook(url, other, token=TOKEN, deliver_to=served.base, proxy_prefix="/hub",
                                               signature=sha256_signature(url, other, SIGNING_KEY), headers=SHA256_SETTINGS)
        assert status == 200
        # ... but not one keyed with the auth token, nor an SHA-1 one announced as SHA-256.
        for signature in (sha256_signature(url, other, TOKEN), sign(url, other, TOKEN)):
            status, _ = await standin.post_webhook(url, other, token=TOKEN, deliver_to=served.base, proxy_prefix="/hub",
                                                   signature=signature, headers=SHA256_SETTINGS)
            assert status == 403
        assert await count(hub, InboxEventRow) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tenants_sharing_a_sender_need_the_tenant_in_the_url(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin), tenants={"clinic": CLINIC, "salon": SALON})
    async with serving(hub) as served:
        status, text = await write(served, standin, PHONE, "Hola")
        assert status == 409 and "?tenant=" in text
        assert await count(hub, InboxEventRow) == 0
        status, _ = await write(served, standin, PHONE, "Hola", url=f"{INBOUND_URL}?tenant=salon")
        assert status == 200
        async with hub.db.sessions() as session:
            [event] = (await session.scalars(select(InboxEventRow))).all()
        assert event.payload["tenant"] == "salon"


# --- errors, sandbox, senders --------------------------------------------------------------


def sms(body: str = "Hola", **kwargs: Any) -> OutboundMessage:
    return OutboundMessage(tenant="clinic", to=PHONE, body=body, kind="message", locale="es", **kwargs)


# (stand-in failure, error class, its code, retry_after, opted_out, words in the reason)
ERROR_ROWS = [
    (Failure(429, 20429, "Too Many Requests", retry_after="7"), TransientError, "20429", 7.0, False, "429"),
    (Failure(503, 20500, "Service Unavailable", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), TransientError, "20500", 0.0, False, "503"),
    (Failure(500, 20500, "Internal Server Error"), TransientError, "20500", None, False, "500"),
    (Failure(401, 20003, "Authenticate"), TransientError, "20003", None, False, "credentials"),
    (Failure(400, 21211, "The 'To' number +34600123456 is not a valid phone number."), PermanentError, "21211", None, False, "invalid 'To'"),
    (Failure(400, 21610, "Attempt to send to unsubscribed recipient"), PermanentError, "21610", None, True, "STOP"),
    (Failure(400, 21614, "'To' number is not a valid mobile number"), PermanentError, "21614", None, False, "mobile"),
    (Failure(400, 63016, "Outside messaging window"), PermanentError, "63016", None, False, "24-hour"),
    (Failure(400, 21617, "The concatenated message body exceeds the 1600 character limit."), PermanentError, "21617", None, False, "1600"),
]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_twilio_errors_map_to_transient_and_permanent(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with hub.running():
        sender = channel(hub, "twilio-sms")
        for failure, error, code, retry_after, opted, words in ERROR_ROWS:
            standin.fail_next(1, failure)
            with pytest.raises(error) as raised:
                await sender.send(sms())
            assert raised.value.code == code, failure
            assert getattr(raised.value, "retry_after", None) == retry_after, failure
            assert getattr(raised.value, "opted_out", False) is opted, failure
            assert words in raised.value.reason, (failure, raised.value.reason)
        assert len(standin.received) == len(ERROR_ROWS)
        delivery = await sender.send(sms())
        assert delivery.status == "sent" and delivery.provider_id in standin.messages
        assert len(sender.clients) == 1
    # on_shutdown closed the client; nothing is left open.
    assert len(sender.clients) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_unreachable_twilio_and_wrong_credentials_are_transient(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(None, api_base_url=f"http://127.0.0.1:{free_port()}"), tenants={
        "clinic": CLINIC,
        "salon": {**SALON, "plugins": {"twilio_messaging": {"api_base_url": standin.base_url, "auth_token": {"env": "SALON_TWILIO_AUTH_TOKEN"}}}},
    })
    async with hub.running():
        with pytest.raises(TransientError) as unreachable:
            await channel(hub, "twilio-sms").send(sms())
        assert unreachable.value.code == "connection"
        # salon uses clinic's account with its own (wrong) token: the stand-in checks Basic auth.
        with pytest.raises(TransientError) as refused:
            await channel(hub, "twilio-sms").send(OutboundMessage(tenant="salon", to="+525512345678", body="Hola", kind="message"))
        assert refused.value.code == "20003" and "auth_token" in refused.value.reason
        assert [r.answered for r in standin.received] == [401]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sandbox_builds_the_request_but_sends_nothing(database_url: str, standin: TwilioStandIn) -> None:
    broken = {"es": {"reminder": {"content_sid": REMINDER_SID, "variables": {"1": "{{ appointment.room }}"}}}}
    tenants = {"clinic": CLINIC, "salon": {**SALON, "plugins": {"twilio_messaging": {"content_templates": broken}}}}
    hub = build_hub(database_url, twilio_table(standin, sandbox=True), tenants=tenants)
    async with hub.running():
        whatsapp = channel(hub, "twilio-whatsapp")
        assert whatsapp.sandbox is True
        reminder = OutboundMessage(tenant="clinic", to=PHONE, body="Recordatorio", kind="reminder", locale="es-MX",
                                   data={"contact": {"name": "Ana"}, "appointment": {"start": "2026-11-24T09:30:00+00:00"}})
        delivery = await whatsapp.send(reminder)
        assert (delivery.provider_id, delivery.status) == (None, "sandboxed")
        assert delivery.detail.startswith("template")  # es-MX found the es template
        # A kind with no template fails in sandbox exactly as it would live.
        with pytest.raises(PermanentError) as missing:
            await whatsapp.send(OutboundMessage(tenant="clinic", to=PHONE, body="Cancelada", kind="cancellation", locale="es"))
        assert missing.value.code == "no_template" and "'cancellation'" in missing.value.reason
        # A variable that does not render fails as clearly, naming what is undefined.
        with pytest.raises(PermanentError) as undefined:
            await whatsapp.send(OutboundMessage(tenant="salon", to="+525512345678", body="Recordatorio", kind="reminder",
                                                locale="es", data=reminder.data))
        assert undefined.value.code == "bad_variable" and "room" in undefined.value.reason
        # English has no template: never a Spanish one instead.
        with pytest.raises(PermanentError):
            await whatsapp.send(OutboundMessage(tenant="clinic", to=PHONE, body="Reminder", kind="reminder", locale="en"))
        # Inside the window the body goes free-form, whatever the kind.
        recent = utcnow() - dt.timedelta(hours=1)
        assert (await whatsapp.send(OutboundMessage(tenant="clinic", to=PHONE, body="Cancelada", kind="cancellation",
                                                    locale="en", last_inbound_at=recent))).detail.startswith("free-form")
        assert (await whatsapp.check()).ok
    assert standin.received == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tenants_send_from_their_own_account_and_messaging_service(database_url: str, standin: TwilioStandIn) -> None:
    service = "MG" + "5e" * 16
    tenants = {
        "clinic": {**CLINIC, "plugins": {"twilio_messaging": {"sms_from": "ClinicaSol"}}},
        "salon": {**SALON, "plugins": {"twilio_messaging": {
            "account_sid": SALON_ACCOUNT, "auth_token": {"env": "SALON_TWILIO_AUTH_TOKEN"}, "sms_from": "",
            "messaging_service_sid": service,
        }}},
    }
    hub = build_hub(database_url, twilio_table(standin), tenants=tenants)
    async with hub.running():
        sender = channel(hub, "twilio-sms")
        await sender.send(sms())
        await sender.send(OutboundMessage(tenant="salon", to="+525512345678", body="Hola", kind="message"))
        clinic, salon = standin.accepted()
        assert (clinic.account_sid, clinic.get("From"), clinic.get("MessagingServiceSid")) == (ACCOUNT, "ClinicaSol", None)
        assert (salon.account_sid, salon.get("From"), salon.get("MessagingServiceSid")) == (SALON_ACCOUNT, None, service)
        assert salon.authorization == "Basic " + base64.b64encode(f"{SALON_ACCOUNT}:{SALON_TOKEN}".encode()).decode()
        assert salon.get("StatusCallback") == f"{STATUS_URL}?tenant=salon"
        assert standin.messages[list(standin.messages)[-1]]["status"] == "accepted"
        assert len(sender.clients) == 2
        # /health fetches the plugin's account from the stand-in; a Twilio outage would not make the hub 503.
        health = await sender.check()
        assert (health.ok, health.required) == (True, False)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_rate_limit_is_retried_after_retry_after(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin))
    async with hub.running():
        async with hub.unit_of_work() as uow:
            queued = await hub.queue_notification(uow, tenant="clinic", request=NotificationRequest(
                kind="message", address=PHONE, data={"text": "Mañana cerramos a las 14:00."}, channel_order=("sms",)))
        standin.fail_next(1, Failure(429, 20429, "Too Many Requests", retry_after="30"))
        before = utcnow()
        await hub.dispatcher.dispatch_due()
        row = await notification(hub, queued.id)
        assert row.status == "pending" and row.next_attempt_at is not None
        assert row.next_attempt_at - before >= dt.timedelta(seconds=30)
        assert await hub.dispatcher.dispatch_due() == 0  # not before Retry-After
        async with hub.db.sessions.begin() as session:
            await session.execute(update(Notification).values(next_attempt_at=utcnow()))
        await drain(hub)
        assert await attempts(hub, queued.id) == [("twilio-sms", "transient"), ("twilio-sms", "sent")]
        assert [r.answered for r in standin.received] == [429, 201]


async def test_21610_opts_the_phone_out_of_that_medium(database_url: str, standin: TwilioStandIn) -> None:
    hub = build_hub(database_url, twilio_table(standin), smtp=True)
    async with hub.running():
        booking = await book(hub, email=EMAIL)
        standin.fail_to[PHONE] = Failure(400, 21610, "Attempt to send to unsubscribed recipient")
        first = await queue_text(hub, booking.contact_id, ("sms", "email"))
        await drain(hub)
        assert await attempts(hub, first) == [("twilio-sms", "permanent"), ("smtp-email", "sandboxed")]
        assert await opted_out(hub, "phone", PHONE) == {"sms"}
        # The next one skips SMS without asking Twilio; WhatsApp is not touched by the SMS opt-out
        # (it is tried, and refused here only because free text needs the 24-hour window).
        second = await queue_text(hub, booking.contact_id, ("whatsapp", "sms", "email"))
        await drain(hub)
        assert await attempts(hub, second) == [("twilio-whatsapp", "permanent"), ("smtp-email", "sandboxed")]
        assert [r.get("To") for r in standin.received].count(PHONE) == 1


async def queue_text(hub: Hub, contact_id: int, order: tuple[str, ...]) -> int:
    async with hub.unit_of_work() as uow:
        queued = await hub.queue_notification(uow, tenant="clinic", request=NotificationRequest(
            kind="message", contact_id=contact_id, data={"text": "Mañana cerramos a las 14:00."}, channel_order=order))
    return queued.id


# --- keywords ---------------------------------------------------------------------------


KEYWORD_ROWS = [
    ("STOP", "sms", "stop"), ("  stop. ", "whatsapp", "stop"), ("¡Baja!", "whatsapp", "stop"), ("ALTO", "sms", "stop"),
    ("Unsubscribe", "sms", "stop"), ("stopall", "whatsapp", "stop"), ("quit", "sms", "stop"), ("End", "sms", "stop"),
    ("cancel", "sms", "stop"), ("CANCEL", "whatsapp", None), ("cancelar", "sms", None), ("cancelar", "whatsapp", None),
    ("cancel my appointment", "whatsapp", None), ("cancel my appointment", "sms", None), ("stop sending me reminders", "sms", None),
    ("START", "sms", "start"), ("unstop", "whatsapp", "start"), ("Alta", "whatsapp", "start"), ("yes", "sms", None),
    ("HELP", "sms", "help"), ("ayuda 🙏", "whatsapp", "help"), ("", "sms", None), ("👍", "whatsapp", None),
]


@pytest.mark.parametrize(("body", "medium", "expected"), KEYWORD_ROWS)
def test_keywords(body: str, medium: str, expected: str | None) -> None:
    assert classify(body, medium) == expected


@pytest.mark.parametrize(("value", "expected"), [("30", 30.0), ("1.5", 1.5), ("", None), ("soon", None), ("Thu, 01 Jan 2099 00:00:00 GMT", "future")])
def test_retry_after_header(value: str, expected: Any) -> None:
    seconds = retry_after_seconds(value, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    if expected == "future":
        assert seconds is not None and seconds > 365 * 24 * 3600
    else:
        assert seconds == expected


# --- CLI, config, spec ---------------------------------------------------------------------


def test_hub_plugins_shows_both_channels_with_the_token_masked(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", document(sqlite_url, twilio_table(None)))
    result = run_cli("plugins", "--json", config=config, env=ENV)
    assert result.returncode == 0, result.stderr
    row = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}["twilio_messaging"]
    assert row["channels"] == ["twilio-sms", "twilio-whatsapp"]
    assert (row["configured"], row["mode"], row["origin"]) == (True, "live", "builtin")
    assert row["settings"]["auth_token"] == "********"
    assert set(row["hooks"]) >= {"register_channels", "register_routes", "respond_to_message", "on_shutdown"}
    text = run_cli("plugins", config=config, env=ENV)
    assert "twilio-sms, twilio-whatsapp" in text.stdout
    assert TOKEN not in result.stdout + result.stderr + text.stdout + text.stderr


def test_hub_twilio_templates_flags_kinds_without_a_template(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    complete = {kind: {"content_sid": "HX" + f"{i:02d}" * 16, "variables": {}} for i, kind in enumerate(("confirmation", "reminder", "cancellation", "reschedule"))}
    tenants = {
        "clinic": CLINIC,
        "salon": {**SALON, "locale": "es-MX", "plugins": {"twilio_messaging": {"content_templates": {"es": complete}}}},
    }
    config = write_toml(tmp_path / "config.toml", document(sqlite_url, twilio_table(None), tenants=tenants))
    result = run_cli("twilio", "templates", config=config, env=ENV)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(rf"\s+es\s+reminder\s+{REMINDER_SID}\s+.*appointment\.start \| datetime.*", line) for line in lines), lines
    missing = [line.split()[1] for line in lines if "MISSING" in line]
    assert missing == ["cancellation", "reschedule"]
    only_salon = run_cli("twilio", "templates", "--tenant", "salon", config=config, env=ENV)
    assert only_salon.returncode == 0, only_salon.stdout + only_salon.stderr
    assert "(from es)" in only_salon.stdout and "es-MX" in only_salon.stdout and "MISSING" not in only_salon.stdout


def test_docstring_example_is_a_valid_config(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", twilio_plugin.__doc__ or "", re.DOTALL)
    assert example is not None
    raw = tomllib.loads(example.group(1))
    raw["tenants"]["salon"] |= SALON
    raw["hub"] = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"}
    hub = Hub.build(parse_config(raw, "example.toml", ENV | {"SALON_TWILIO_AUTH_TOKEN": "x"}))
    salon = hub.settings_for("twilio_messaging", "salon")
    assert salon.account_sid == "AC11111111111111111111111111111111" and salon.sms_from == "+525550001111"
    assert set(salon.content_templates) == {"es-MX"}
    assert hub.settings_for("twilio_messaging").content_templates["es"]["reminder"]["variables"]["2"] == "{{ appointment.start | datetime }}"
    assert set(hub.channels) >= {"twilio-whatsapp", "twilio-sms"}


@pytest.mark.parametrize(("key", "value", "words"), [
    ("account_sid", "AC123", "Account SID"),
    ("whatsapp_from", "0034 600 123 456", "E.164"),
    ("content_templates", {"es": {"reminder": {"content_sid": "HX1"}}}, "es.reminder.content_sid"),
    ("content_templates", {"español": {}}, "not a locale"),
])
def test_bad_settings_stop_the_start_naming_the_key(sqlite_url: str, key: str, value: Any, words: str) -> None:
    with pytest.raises(StartupError) as raised:
        build_hub(sqlite_url, twilio_table(None, **{key: value}))
    assert "plugins.twilio_messaging" in str(raised.value) and words in str(raised.value)


def test_stand_in_speaks_the_vendor_spec() -> None:
    if not SPEC.exists():
        pytest.skip(f"the vendor spec is not beside the project ({SPEC})")
    spec = json.loads(SPEC.read_text())
    create = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    fields = create["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert CREATE_FIELDS - {"MessageIntent"} == set(fields)
    assert "201" in create["responses"]
    schemas = spec["components"]["schemas"]
    example = create["responses"]["201"]["content"]["application/json"]["examples"]["create"]["value"]
    assert set(example) == set(schemas["api.v2010.account.message"]["properties"])

    async def created() -> tuple[dict[str, Any], dict[str, Any]]:
        import aiohttp

        async with TwilioStandIn({ACCOUNT: TOKEN}) as server, aiohttp.ClientSession() as session:
            auth = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()}
            async with session.post(f"{server.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json", data={"To": PHONE, "From": SMS_FROM, "Body": "x"}, headers=auth) as r:
                message = await r.json()
            async with session.get(f"{server.base_url}/2010-04-01/Accounts/{ACCOUNT}.json", headers=auth) as r:
                account = await r.json()
        return message, account

    message, account = asyncio.run(created())
    assert set(message) == set(schemas["api.v2010.account.message"]["properties"])
    assert re.fullmatch(schemas["api.v2010.account.message"]["properties"]["sid"]["pattern"], message["sid"])
    assert set(account) == set(schemas["api.v2010.account"]["properties"])
