"""A WhatsApp user who hides their number: contact, answer, 24-hour window, and the later link to a phone.

Signed inbound webhooks go through the real route to the Twilio stand-in's
signature; the recorder test plugin answers "echo ..." messages through
`respond_to_message`, and the reply leaves through the outbox and the
twilio-whatsapp channel to the same `whatsapp:<business-scoped id>`.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select, update

from hub import AppointmentInput
from hub.config import parse_config
from hub.core import Hub
from hub.models import Appointment, Contact, ContactMerge, Conversation, Identity, Message, utcnow
from hub.outbox import NotificationRequest
from tests.conftest import TEST_PLUGINS
from tests.stand_ins.twilio import TwilioStandIn
from tests.test_plugin_twilio_messaging import (  # noqa: F401 - `standin` is a fixture
    ACCOUNT,
    CONFIRMATION_SID,
    ENV,
    INBOUND_URL,
    TOKEN,
    WHATSAPP_FROM,
    Served,
    document,
    drain,
    new_sid,
    process,
    serving,
    standin,
    twilio_table,
)

USER_ID = "US.13491208655302741918"
PHONE = "+34612345678"


def phoneless_form(body: str, *, wa_id: str | None = None, profile: str = "Lucía") -> list[tuple[str, str]]:
    """An inbound WhatsApp message from a user with a username: From is their business-scoped id."""
    sid = new_sid()
    form = [
        ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", profile), ("MessageType", "text"), ("SmsSid", sid),
        ("SmsStatus", "received"), ("Body", body), ("To", f"whatsapp:{WHATSAPP_FROM}"), ("NumSegments", "1"),
        ("ReferralNumMedia", "0"), ("MessageSid", sid), ("AccountSid", ACCOUNT), ("From", f"whatsapp:{USER_ID}"),
        ("ExternalUserId", USER_ID), ("ApiVersion", "2010-04-01"),
    ]
    if wa_id is not None:
        form.append(("WaId", wa_id))
    return form


async def identities(hub: Hub) -> list[tuple[int, str, str]]:
    async with hub.db.sessions() as session:
        rows = (await session.scalars(select(Identity).order_by(Identity.id))).all()
    return [(row.contact_id, row.kind, row.value) for row in rows]


async def live_contacts(hub: Hub) -> list[Contact]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(Contact).where(Contact.merged_into_id.is_(None)))).all())


async def post(served: Served, standin: TwilioStandIn, form: list[tuple[str, str]]) -> None:
    status, _ = await standin.post_webhook(INBOUND_URL, form, token=TOKEN, deliver_to=served.base)
    assert status == 200


async def test_a_user_without_a_phone_is_answered_and_later_linked_to_their_phone(
    database_url: str, standin: TwilioStandIn
) -> None:
    raw = document(database_url, twilio_table(standin), hub={"plugin_dirs": [str(TEST_PLUGINS)]})
    hub = Hub.build(parse_config(raw, "test-config.toml", ENV))
    async with serving(hub) as served:
        # 1. Lucía writes without sharing her number: a contact is made for her business-scoped id.
        await post(served, standin, phoneless_form("echo ¡Hola! ¿Tenéis hueco el jueves?"))
        await process(hub)
        [contact] = await live_contacts(hub)
        assert contact.name == "Lucía"
        assert await identities(hub) == [(contact.id, "whatsapp_id", USER_ID)]

        # 2. The responder's answer leaves through the outbox to the same whatsapp:<id>, as free text.
        await drain(hub)
        reply = standin.accepted()[-1]
        assert (reply.get("To"), reply.get("From")) == (f"whatsapp:{USER_ID}", f"whatsapp:{WHATSAPP_FROM}")
        assert reply.get("Body") == "¡Hola! ¿Tenéis hueco el jueves?" and reply.get("ContentSid") is None
        async with hub.db.sessions() as session:
            thread = await session.scalar(select(Conversation).where(Conversation.contact_id == contact.id))
            assert thread is not None and thread.medium == "whatsapp"
            messages = (await session.scalars(select(Message).where(Message.conversation_id == thread.id).order_by(Message.id))).all()
        assert [(m.direction, m.status) for m in messages] == [("in", "received"), ("out", "sent")]

        # 3. The 24-hour window applies to her as to anyone: a day later only the approved template goes.
        async with hub.unit_of_work() as uow:
            await uow.session.execute(
                update(Conversation).where(Conversation.id == thread.id).values(last_inbound_at=utcnow() - dt.timedelta(hours=25))
            )
            await hub.queue_notification(uow, tenant="clinic", request=NotificationRequest(
                kind="confirmation", template="message", contact_id=contact.id, channel_order=("twilio-whatsapp",),
                data={"text": "Su cita está confirmada"},
            ))
        await drain(hub)
        late = standin.accepted()[-1]
        assert late.get("To") == f"whatsapp:{USER_ID}"
        assert (late.get("ContentSid"), late.get("Body")) == (CONFIRMATION_SID, None)
        assert json.loads(late.get("ContentVariables") or "") == {"1": "Clínica Sol"}

        # 4. Meanwhile she had booked by phone: a second contact, for now.
        change = await hub.upsert_appointment("clinic", AppointmentInput(
            source="test", external_id="cita-7", start_at=utcnow() + dt.timedelta(days=2), timezone="Europe/Madrid",
            addresses=(("phone", "612 34 56 78"),), contact_name="Lucía Gómez", confirm=False,
        ))
        by_phone = change.appointment.contact_id
        assert by_phone is not None and by_phone != contact.id

        # 5. A later message carries her WaId: WhatsApp vouches both are one account, so they merge.
        await post(served, standin, phoneless_form("Gracias", wa_id=PHONE.removeprefix("+")))
        await process(hub)
        [merged] = await live_contacts(hub)
        assert merged.id == contact.id and merged.name == "Lucía"
        assert sorted((kind, value) for owner, kind, value in await identities(hub) if owner == contact.id) == [
            ("phone", PHONE), ("whatsapp_id", USER_ID)
        ]
        async with hub.db.sessions() as session:
            appointment = await session.scalar(select(Appointment).where(Appointment.external_id == "cita-7"))
            record = await session.scalar(select(ContactMerge))
        assert appointment is not None and appointment.contact_id == contact.id
        assert record is not None and (record.kept_contact_id, record.merged_contact_id) == (contact.id, by_phone)
        assert set(record.evidence["identities"]) == {f"whatsapp_id:{USER_ID}", f"phone:{PHONE}"}


async def test_a_business_scoped_id_is_never_read_as_a_number(database_url: str, standin: TwilioStandIn) -> None:
    raw = document(database_url, twilio_table(standin))
    hub = Hub.build(parse_config(raw, "test-config.toml", ENV))
    async with serving(hub) as served:
        # An id made only of digits after the country code, as Meta's examples are: still an id.
        await post(served, standin, phoneless_form("Hola") + [("WaId", "")])
        await process(hub)
        assert [(kind, value) for _, kind, value in await identities(hub)] == [("whatsapp_id", USER_ID)]
