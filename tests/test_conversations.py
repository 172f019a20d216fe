"""The port's responder methods act for one contact only: their own appointments, their own conversation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from hub import AppointmentInput, HubError, InboundMessage
from hub.core import Hub
from hub.models import Conversation, Identity, utcnow


async def appointment(hub: Hub, external_id: str, phone: str, days: int = 3) -> tuple[int, int]:
    update = await hub.upsert_appointment("clinic", AppointmentInput(
        source="api", external_id=external_id, start_at=utcnow() + dt.timedelta(days=days), addresses=(("phone", phone),),
    ))
    assert update.appointment.contact_id is not None
    return update.appointment.id, update.appointment.contact_id


def records(record_file: Path, hook: str) -> list[dict[str, object]]:
    lines = record_file.read_text().splitlines() if record_file.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["hook"] == hook]


async def test_confirming_is_for_the_contacts_own_appointment_and_announced_once(hub: Hub, record_file: Path) -> None:
    ana_appointment, ana = await appointment(hub, "a-1", "+34600111222")
    bea_appointment, bea = await appointment(hub, "b-1", "+34600333444")
    with pytest.raises(HubError, match=f"contact {ana} has no appointment {bea_appointment}"):
        await hub.confirm_appointment("clinic", ana, bea_appointment)
    with pytest.raises(HubError):
        await hub.cancel_appointment("clinic", ana, bea_appointment)
    confirmed = await hub.confirm_appointment("clinic", ana, ana_appointment)
    again = await hub.confirm_appointment("clinic", ana, ana_appointment)
    assert confirmed.confirmed_at is not None and again.confirmed_at == confirmed.confirmed_at
    changes = [(r["appointment_id"], r["change"]) for r in records(record_file, "on_appointment_changed")]
    assert changes.count((ana_appointment, "confirmed")) == 1 and (bea_appointment, "confirmed") not in changes
    assert [a.id for a in await hub.contact_appointments("clinic", ana)] == [ana_appointment]
    assert [a.id for a in await hub.contact_appointments("clinic", bea)] == [bea_appointment]
    canceled = await hub.cancel_appointment("clinic", ana, ana_appointment, reason="the client asked")
    assert canceled.status == "canceled" and await hub.contact_appointments("clinic", ana) == []


async def test_an_email_given_in_a_conversation_never_merges_two_clients(hub: Hub) -> None:
    _, ana = await appointment(hub, "a-1", "+34600111222")
    _, bea = await appointment(hub, "b-1", "+34600333444")
    assert await hub.set_contact_email("clinic", bea, "Bea@Example.com") is True
    assert await hub.set_contact_email("clinic", ana, "bea@example.com") is False  # Bea's: Ana's typing it changes nothing
    assert (await hub.contact_details("clinic", ana)).emails == ()
    details = await hub.contact_details("clinic", bea)
    assert (details.emails, details.phones) == (("bea@example.com",), ("+34600333444",))
    with pytest.raises(ValueError):
        await hub.set_contact_email("clinic", ana, "not an address")
    async with hub.db.sessions() as session:
        owners = {i.value: i.contact_id for i in (await session.scalars(select(Identity))).all()}
    assert owners == {"+34600111222": ana, "+34600333444": bea, "bea@example.com": bea}


async def test_messages_calls_and_state_belong_to_one_tenants_conversation(hub: Hub) -> None:
    event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="+34600111222", body="hola", provider_id="m1")
    await hub.accept(event, source="test", dedupe_key="m1")
    await hub.inbox.process_pending()
    async with hub.db.sessions() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None
    [message] = await hub.recent_messages("clinic", conversation.id)
    assert (message.direction, message.body, message.kind) == ("in", "hola", None)
    await hub.record_call("clinic", conversation.id, kind="model_call", name="gpt-4o-mini", outcome="ok", tokens=120, latency_ms=900)
    await hub.record_call("clinic", conversation.id, kind="tool_call", name="echo", outcome="ok")
    assert await hub.tokens_used_today("clinic") == 120 and await hub.tokens_used_today("salon") == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        await hub.record_call("clinic", conversation.id, kind="handoff", name="x", outcome="ok")
    await hub.set_conversation_state("rules_responder", "clinic", conversation.id, {"awaiting": "pick"})
    await hub.set_conversation_state("openai_responder", "clinic", conversation.id, {"pending": {"action": "cancel"}})
    assert await hub.conversation_state("rules_responder", "clinic", conversation.id) == {"awaiting": "pick"}
    await hub.set_conversation_state("rules_responder", "clinic", conversation.id, {})
    assert await hub.conversation_state("rules_responder", "clinic", conversation.id) == {}
    assert await hub.conversation_state("openai_responder", "clinic", conversation.id) == {"pending": {"action": "cancel"}}
    for call in (hub.recent_messages("salon", conversation.id), hub.conversation_state("x", "salon", conversation.id)):
        with pytest.raises(HubError, match="no conversation"):
            await call


async def test_conversation_context_reads_what_the_three_separate_reads_return(hub: Hub) -> None:
    for n, body in enumerate(("hola", "quiero una cita", "mañana")):
        event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="+34600111222", body=body,
                               provider_id=f"c{n}")
        await hub.accept(event, source="test", dedupe_key=f"c{n}")
    await hub.inbox.process_pending()
    async with hub.db.sessions() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None
    await hub.set_contact_email("clinic", conversation.contact_id, "ana@example.com")
    await hub.set_conversation_state("rules_responder", "clinic", conversation.id, {"awaiting": "pick"})
    contact, messages, state = await hub.conversation_context("rules_responder", "clinic", conversation.id, limit=2)
    assert contact == await hub.contact_details("clinic", conversation.contact_id)
    assert contact.emails == ("ana@example.com",) and contact.phones == ("+34600111222",)
    assert messages == await hub.recent_messages("clinic", conversation.id, limit=2)
    assert [m.body for m in messages] == ["quiero una cita", "mañana"]
    assert state == {"awaiting": "pick"}
    assert (await hub.conversation_context("openai_responder", "clinic", conversation.id))[2] == {}
    with pytest.raises(HubError, match="no conversation"):
        await hub.conversation_context("rules_responder", "salon", conversation.id)
