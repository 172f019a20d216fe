"""The rules responder answering on WhatsApp end to end: Twilio and Calendly stand-ins, the real hub in between."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from hub.models import ConversationEvent, Identity, Notification, utcnow
from hub.tenants import issue_api_key
from plugins.calendly.mapping import booking_from_invitee
from tests.responder_world import ANA, ZONE, World, next_weekday, world
from tests.stand_ins.calendly import signed

SIGNING_KEY = "calendly-signing-key-0f3a"
BEA = "+34600999888"


async def reminder_for(w: World, appointment_id: int) -> list[str]:
    """Time passes until the appointment's first reminder is due; returns what reached Ana."""
    async with w.hub.db.sessions.begin() as session:
        first = await session.scalar(
            select(Notification.id).where(Notification.appointment_id == appointment_id, Notification.kind == "reminder")
            .order_by(Notification.due_at).limit(1)
        )
        await session.execute(update(Notification).where(Notification.id == first).values(due_at=utcnow()))
    await w.settle()
    return w.received()


async def booked_on_calendly(w: World, start: dt.datetime) -> int:
    """Ana has a Calendly booking the hub knows about (as its webhook would have told it); returns its id."""
    payload = w.calendly.book(start=start, email="ana@example.com", name="Ana", text_reminder_number=ANA, event_type=w.event_type)
    data = booking_from_invitee(payload, status="scheduled", region="ES", phone_questions=())
    update_ = await w.hub.upsert_appointment("clinic", data)
    await w.settle()
    w.received()  # its confirmation
    return update_.appointment.id


async def test_a_booking_request_gets_slots_then_a_calendly_booking_and_the_hubs_confirmation(database_url: str) -> None:
    async with world(database_url) as w:
        saturday = next_weekday(5)
        starts = w.add_slots(saturday, 10, 11, 12)
        [offer] = await w.turn("Hola, quiero pedir cita para el sábado")
        assert [line[:2] for line in offer.splitlines() if line[:1].isdigit()] == ["1)", "2)", "3)"]
        assert "11:00" in offer and "Responde con el número" in offer
        [ask] = await w.turn("la 2")
        assert "¿Te reservo" in ask and "11:00" in ask and "Responde SÍ" in ask
        assert w.calendly.calls("POST", "/invitees") == []  # nothing booked before the yes
        [email] = await w.turn("sí")
        assert "correo" in email
        answers = await w.turn("es ana@example.com")
        [call] = w.calendly.calls("POST", "/invitees")
        assert call.body == {
            "event_type": w.event_type["uri"], "start_time": starts[1].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "invitee": {"email": "ana@example.com", "name": "Ana", "timezone": "Europe/Madrid", "text_reminder_number": ANA},
        }
        [appointment] = await w.appointments()
        assert (appointment.source, appointment.start_at, appointment.status) == ("calendly", starts[1], "scheduled")
        assert appointment.external_id == w.calendly.booked[0]
        [confirmation] = await w.notifications("confirmation")
        assert (confirmation.status, confirmation.channel) == ("sent", "twilio-whatsapp")
        reminders = await w.notifications("reminder")
        assert reminders and all(r.status == "pending" for r in reminders)
        assert any("queda reservada" in text for text in answers)
        assert any("Te confirmamos tu cita" in text or "cita" in text for text in answers if "reservada" not in text)
        # The booking used and left a trace: the tool calls are on the conversation.
        async with w.hub.db.sessions() as session:
            calls = (await session.scalars(select(ConversationEvent.name).where(ConversationEvent.kind == "tool_call"))).all()
        assert calls == ["calendly_availability", "calendly_book"]


async def test_a_reminder_reply_confirms_the_appointment_on_the_api(database_url: str) -> None:
    async with world(database_url) as w:
        assert await w.turn("Hola") and True  # Ana writes first: WhatsApp's 24-hour window is open
        appointment_id = await booked_on_calendly(w, dt.datetime.now(ZONE).replace(microsecond=0) + dt.timedelta(days=2))
        w.received()
        [reminder] = await reminder_for(w, appointment_id)
        assert "te recordamos tu cita" in reminder.lower()
        [answer] = await w.turn("👍")
        assert "queda confirmada" in answer
        async with w.hub.db.sessions.begin() as session:
            key = await issue_api_key(session, (await w.hub.tenants.get("clinic")).id)
        [row] = await w.appointments()
        response = await w.client.get(f"/api/v1/contacts/{row.contact_id}", headers={"Authorization": f"Bearer {key}"})
        [shown] = (await response.json())["appointments"]
        assert shown["id"] == appointment_id and shown["confirmed_at"] is not None
        # An "ok, thanks" to that answer confirms nothing more: it is a thank-you.
        assert await w.turn("ok gracias") == ["¡A ti! Aquí estamos para lo que necesites."]


async def test_cant_that_day_moves_the_appointment_as_one_move_even_after_calendlys_webhooks(database_url: str) -> None:
    async with world(database_url) as w:
        await w.turn("Hola")
        old_start = dt.datetime.combine(next_weekday(3), dt.time(10), tzinfo=ZONE)
        appointment_id = await booked_on_calendly(w, old_start)
        old_invitee = (await w.appointments())[0].external_id
        w.received()
        await reminder_for(w, appointment_id)
        monday = next_weekday(0, after=old_start.date())
        new_starts = w.add_slots(monday, 9, 17)
        [offer] = await w.turn("no puedo ese día, ¿tienen el lunes?")
        assert "1)" in offer and "2)" in offer
        [ask] = await w.turn("1")
        assert "¿Cambio tu cita" in ask
        answers = await w.turn("sí")
        assert any("se ha cambiado" in text for text in answers)
        [moved] = await w.appointments()
        assert (moved.id, moved.start_at, moved.status) == (appointment_id, new_starts[0], "scheduled")
        assert moved.external_id == w.calendly.booked[0] and moved.confirmed_at is None
        assert w.calendly.events[old_invitee.split("/")[-3]]["status"] == "canceled"
        # Calendly now posts both webhooks: the new booking and the old one's cancellation.
        await w.hub.set_plugin_data("calendly", "clinic", "subscription", {"signing_key": SIGNING_KEY})
        for event, uri in (("invitee.canceled", old_invitee), ("invitee.created", moved.external_id)):
            body, headers = signed(w.calendly.envelope(event, w.calendly.payload(uri)), SIGNING_KEY)
            response = await w.client.post("/webhooks/calendly/events?tenant=clinic", data=body, headers=headers)
            assert response.status == 200
        await w.settle()
        [after] = await w.appointments()
        assert (after.id, after.start_at, after.status) == (appointment_id, new_starts[0], "scheduled")
        assert [n.status for n in await w.notifications("reschedule")] == ["sent"]
        assert await w.notifications("cancellation") == []


async def test_cancel_asks_first_then_cancels_on_calendly_and_in_the_hub(database_url: str) -> None:
    async with world(database_url) as w:
        await w.turn("Hola")
        appointment_id = await booked_on_calendly(w, dt.datetime.now(ZONE).replace(microsecond=0) + dt.timedelta(days=3))
        w.received()
        await reminder_for(w, appointment_id)
        [ask] = await w.turn("cancelar")
        assert "¿Seguro que quieres cancelar" in ask
        assert (await w.appointments())[0].status == "scheduled"
        [kept] = await w.turn("no")
        assert "mantenemos" in kept and (await w.appointments())[0].status == "scheduled"
        await w.turn("Quiero cancelar mi cita")
        answers = await w.turn("sí")
        assert any("ha quedado cancelada" in text for text in answers)
        [row] = await w.appointments()
        assert row.status == "canceled"
        assert len(w.calendly.calls("POST", f"/scheduled_events/{row.external_id.split('/')[-3]}/cancellation")) == 1
        assert [n.status for n in await w.notifications("cancellation")] == ["sent"]


async def test_an_opt_out_keyword_opts_out_and_is_confirmed_once(database_url: str) -> None:
    async with world(database_url) as w:
        await w.turn("Hola")
        assert await w.turn("BAJA") == [
            "Hecho: no te enviaremos más mensajes por aquí desde Clínica Sol. Si cambias de idea, responde ALTA."
        ]
        assert await w.turn("BAJA") == []  # already out: nothing applied twice, nothing sent
        # A request in words (no keyword) goes through the rules responder, with the same one confirmation.
        assert await w.turn("Hola, no me manden más mensajes por favor", sender=BEA) == [
            "Hecho: no te enviaremos más mensajes por aquí desde Clínica Sol. Si cambias de idea, responde ALTA."
        ]
        assert await w.turn("no me manden más mensajes!!", sender=BEA) == []
        async with w.hub.db.sessions() as session:
            out = {i.value: sorted(i.opted_out) for i in (await session.scalars(select(Identity))).all()}
            confirmations = (await session.scalars(select(Notification).where(Notification.kind == "opt_out_confirmation"))).all()
        assert out == {ANA: ["whatsapp"], BEA: ["whatsapp"]}
        assert [n.status for n in confirmations] == ["sent", "sent"]


async def test_a_request_for_a_person_hands_off_and_the_bot_goes_quiet(database_url: str) -> None:
    async with world(database_url, smtp=True, clinic={"handoff_email": "recepcion@clinic.example"}) as w:
        [answer] = await w.turn("Quiero hablar con una persona, por favor")
        assert "Te paso con una persona" in answer
        conversation = await w.conversation()
        assert (conversation.handler, conversation.handler_reason) == ("human", "asked for a person")
        [email] = await w.notifications("handoff")
        assert (email.status, email.address) == ("sandboxed", "recepcion@clinic.example")
        assert await w.turn("¿hola? ¿cuánto cuesta una limpieza?") == []
        await w.hub.release("clinic", conversation.id, reason="resolved")
        [price] = await w.turn("¿cuánto cuesta una limpieza?")
        assert price == "Limpieza dental: 45 €"


@pytest.mark.parametrize("message, words", [
    ("¿A qué hora abren el sábado?", "Nuestro horario: lunes a viernes 9:00-19:00, sábado 10:00-14:00."),
    ("¿Dónde están?", "Estamos en Calle Mayor 1, Madrid."),
    ("How much is teeth whitening? Blanqueamiento", "Blanqueamiento: 180 €"),
    ("hello!", "I'm Clínica Sol's assistant"),
])
async def test_information_comes_from_the_business_profile(database_url: str, message: str, words: str) -> None:
    async with world(database_url) as w:
        [answer] = await w.turn(message)
        assert words in answer


@pytest.mark.parametrize("refusal", ["plan (403)", "rate limit (429)"])
async def test_when_calendly_refuses_the_booking_a_single_use_link_for_that_day_is_sent(database_url: str, refusal: str) -> None:
    async with world(database_url, calendly_api=refusal != "plan (403)") as w:
        friday = next_weekday(4)
        w.add_slots(friday, 16)
        await w.turn("Can I book this Friday at 4pm?")
        await w.turn("1")
        await w.turn("yes")
        if refusal == "rate limit (429)":
            w.calendly.booking_limit_reached = True  # not waited out: the client gets the link now
        [answer] = await w.turn("ana@example.com")
        assert [seen.status for seen in w.calendly.calls("POST", "/invitees")] == [429 if "429" in refusal else 403]
        link = re.search(r"https://calendly\.com/d/\S+", answer)
        assert link is not None and link.group(0).endswith(f"?month={friday:%Y-%m}&date={friday:%Y-%m-%d}")
        assert "finish the booking" in answer  # Ana wrote English: she is answered in English
        assert await w.appointments() == []
        assert len(w.calendly.links) == 1


async def test_two_misunderstandings_in_a_row_hand_off(database_url: str) -> None:
    async with world(database_url) as w:
        [first] = await w.turn("ajá")
        assert "no te he entendido" in first
        [second] = await w.turn("mmm bueno no sé")
        assert "Te paso con una persona" in second
        assert (await w.conversation()).handler == "human"
