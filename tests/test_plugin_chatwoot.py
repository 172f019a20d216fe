"""The chatwoot plugin against the Chatwoot stand-in: signed webhooks, linking, context sync, notes, the channel, merges."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from hub import AppointmentInput, NotificationRequest
from hub.app import create_app
from hub.core import Hub
from hub.models import Identity, InboxEventRow, Message, Notification, PluginJob
from plugins.chatwoot.signature import sign
from tests.conftest import DEFAULT_TENANTS, make_config, write_toml, config_document
from tests.stand_ins.chatwoot import ChatwootStandIn, copy_payload, signed

SECRET = "cw-webhook-secret-7d1e"
WEBHOOK = "/webhooks/chatwoot/events"


@pytest.fixture
async def stand_in() -> AsyncIterator[ChatwootStandIn]:
    server = ChatwootStandIn()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert server.violations == [], "requests or answers that do not match Chatwoot's swagger"


def chatwoot_table(stand_in: ChatwootStandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": stand_in.base_url, "account_id": stand_in.account_id, "api_access_token": stand_in.token,
        "inbox_id": stand_in.inbox_id, "webhook_secret": SECRET, "sandbox": False, "coalesce_seconds": 0, **overrides,
    }


def tenants_with(stand_in: ChatwootStandIn, **overrides: Any) -> dict[str, dict[str, Any]]:
    tenants = {slug: dict(table) for slug, table in DEFAULT_TENANTS.items()}
    tenants["clinic"]["plugins"] = {"chatwoot": chatwoot_table(stand_in, **overrides)}
    return tenants


@asynccontextmanager
async def chatwoot_hub(database_url: str, stand_in: ChatwootStandIn, **overrides: Any) -> AsyncIterator[tuple[Hub, TestClient]]:
    """An opened hub with the test client of its app (workers off: tests run the queues themselves)."""
    hub = Hub.build(make_config(database_url, tenants=tenants_with(stand_in, **overrides)))
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            yield hub, client


async def post(client: TestClient, payload: dict[str, Any] | bytes, secret: str | None = SECRET, *,
               timestamp: int | None = None, delivery: str | None = None, tenant: str | None = "clinic") -> tuple[int, Any]:
    body, headers = signed(payload, secret, timestamp=timestamp, delivery=delivery)
    response = await client.post(WEBHOOK + (f"?tenant={tenant}" if tenant else ""), data=body, headers=headers)
    return response.status, await response.json()


async def drain(hub: Hub) -> None:
    """Run the inbox, the plugin jobs and the dispatcher until nothing is due."""
    for _ in range(20):
        done = (
            await hub.inbox.process_pending() + await hub.plugin_jobs.run_due() + (await hub.responders.answer_pending() or 0)
            + await hub.dispatcher.dispatch_due()
        )
        if not done:
            return


async def count(hub: Hub, model: Any, *where: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def identities(hub: Hub, contact_id: int) -> set[tuple[str, str]]:
    async with hub.db.sessions() as session:
        return {(i.kind, i.value) for i in (await session.scalars(select(Identity).where(Identity.contact_id == contact_id))).all()}


def booking(external_id: str, *, phone: str, hours: float = 48, status: str = "scheduled") -> AppointmentInput:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours)
    return AppointmentInput(
        source="api", external_id=external_id, start_at=start, end_at=start + dt.timedelta(minutes=30), service="Limpieza",
        status=status, addresses=(("phone", phone),), contact_name="Lucía",
    )


# --- the signature ------------------------------------------------------------------------


def test_signature_matches_the_wire_vector() -> None:
    body = b'{"event":"message_created","id":42,"content":"hi","message_type":"incoming"}'
    assert sign("cw_test_secret", "1719268245", body) == "sha256=369bada2030317eb6079d97e839a70f615e9ce837248550ba6d414ff8b7ab624"


# --- stored payloads, one row each --------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "answer", "inbox_kinds", "job_kinds"),
    [
        ("message_created_incoming.json", {"accepted": True}, ["message.received"], ["link"]),
        ("message_created_agent_reply.json", {"accepted": True}, [], ["agent_reply", "link"]),
        ("message_created_private_note.json", {"accepted": False, "ignored": "private note"}, [], []),
        ("message_created_agent_bot.json", {"accepted": False, "ignored": "outgoing message"}, [], []),
        ("conversation_created.json", {"accepted": True}, [], ["link"]),
        ("conversation_status_changed_resolved.json", {"accepted": True}, [], ["link", "status"]),
        ("contact_updated.json", {"accepted": True}, [], ["link"]),
        ("inbox_created.json", {"accepted": False, "ignored": "inbox_created"}, [], []),
    ],
)
async def test_each_stored_payload_is_stored_as_it_should_be(
    sqlite_url: str, stand_in: ChatwootStandIn, file: str, answer: dict[str, Any], inbox_kinds: list[str], job_kinds: list[str]
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        assert await post(client, copy_payload(file), tenant=None) == (200, answer)
        async with hub.db.sessions() as session:
            stored = sorted((await session.scalars(select(InboxEventRow.kind))).all())
            jobs = sorted((await session.scalars(select(PluginJob.kind))).all())
        assert (stored, jobs) == (inbox_kinds, job_kinds)


# --- the done-when flow ---------------------------------------------------------------------


async def test_signed_message_links_the_same_person_and_a_booking_updates_attributes_and_leaves_a_note(
    database_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(database_url, stand_in) as (hub, client):
        # The hub knows Lucía from an earlier booking, her number written the Spanish way.
        first = await hub.upsert_appointment("clinic", booking("a-1", phone="600 12 34 56", hours=-72))
        contact = first.appointment.contact_id
        # In Chatwoot the same number is in international form with spaces.
        lucia = stand_in.add_contact("Lucía", phone="+34 600-123-456")
        conversation = stand_in.add_conversation(lucia["id"])

        status, answer = await post(client, stand_in.incoming_message(conversation, "¿Puedo cambiar mi cita?"))
        assert (status, answer) == (200, {"accepted": True})
        await drain(hub)

        assert await identities(hub, contact) == {("phone", "+34600123456"), ("chatwoot", str(lucia["id"]))}
        async with hub.db.sessions() as session:
            inbound = (await session.scalars(select(Message).where(Message.direction == "in"))).all()
        assert [(m.body, m.channel) for m in inbound] == [("¿Puedo cambiar mi cita?", "chatwoot")]

        second = await hub.upsert_appointment("clinic", booking("a-2", phone="+34600123456", hours=48))
        await drain(hub)

        attributes = stand_in.contacts[lucia["id"]]["custom_attributes"]
        assert attributes["hub_appointments"] == 2
        assert attributes["hub_next_service"] == "Limpieza"
        start = second.appointment.start_at.astimezone(ZoneInfo("Europe/Madrid"))
        assert attributes["hub_next_time"] == start.strftime("%H:%M")  # the clinic's clock, not UTC
        assert dt.datetime.fromisoformat(attributes["hub_next_appointment"]) == second.appointment.start_at
        assert attributes["hub_last_appointment"] is not None
        assert attributes["hub_consent_whatsapp"] == "yes" and attributes["hub_consent_email"] == "no address"
        assert attributes["hub_link"].endswith(f"/api/v1/contacts/{contact}")
        notes = stand_in.notes(conversation)
        assert len(notes) == 1 and notes[0].startswith("Hub: cita reservada para el ") and "(Limpieza)" in notes[0]


@pytest.mark.parametrize(
    ("case", "secret", "age", "tamper"),
    [
        ("forged: another secret", "not-the-secret", 0, False),
        ("stale: six minutes old", SECRET, 360, False),
        ("from the future", SECRET, -120, False),
        ("body changed after signing", SECRET, 0, True),
        ("unsigned", None, 0, False),
    ],
)
async def test_forged_stale_and_unsigned_webhooks_are_refused_and_store_nothing(
    sqlite_url: str, stand_in: ChatwootStandIn, case: str, secret: str | None, age: int, tamper: bool
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        payload = stand_in.incoming_message(stand_in.add_conversation(lucia["id"]), "hola")
        body, headers = signed(payload, secret, timestamp=int(dt.datetime.now(dt.UTC).timestamp()) - age)
        if tamper:
            body = body.replace(b"hola", b"adios")
        response = await client.post(f"{WEBHOOK}?tenant=clinic", data=body, headers=headers)
        assert response.status in (401, 403), case
        assert response.status == (401 if secret is None else 403), case
        assert await count(hub, InboxEventRow) == 0
        assert await count(hub, PluginJob) == 0


async def test_the_agent_bots_secret_verifies_too(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in, agent_bot_secret="bot-secret-41") as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        conversation = stand_in.add_conversation(lucia["id"])
        assert await post(client, stand_in.incoming_message(conversation, "hola"), "bot-secret-41") == (200, {"accepted": True})
        assert (await post(client, stand_in.incoming_message(conversation, "hola"), "neither"))[0] == 403
        assert await count(hub, InboxEventRow) == 1


async def test_malformed_bodies_and_unknown_tenants_are_refused_with_nothing_stored(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        body, headers = signed(b"[1, 2", SECRET)
        response = await client.post(f"{WEBHOOK}?tenant=clinic", data=body, headers=headers)
        assert response.status == 400
        response = await client.post(f"{WEBHOOK}?tenant=salon", data=body, headers=headers)
        assert response.status == 400  # a body that is not JSON is refused at the edge, for any tenant
        other_account = {**stand_in.contact_event(stand_in.add_contact("X", phone="+34600000001")["id"]), "account": {"id": 77}}
        assert (await post(client, other_account, tenant=None))[0] == 403
        assert await count(hub, InboxEventRow) == 0 and await count(hub, PluginJob) == 0


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"account_id": 1, "api_access_token": "t", "inbox_id": 1}, "tenants.clinic.plugins.chatwoot.base_url", "required key is missing"),
        ({"base_url": "chat.example", "account_id": 1, "api_access_token": "t", "inbox_id": 1},
         "tenants.clinic.plugins.chatwoot.base_url", "must be an http:// or https:// URL"),
        ({"base_url": "https://c", "account_id": 1, "api_access_token": " ", "inbox_id": 1},
         "tenants.clinic.plugins.chatwoot.api_access_token", "a secret cannot be empty or blank"),
        ({"base_url": "https://c", "account_id": 1, "api_access_token": "t", "inbox_id": 1, "tolerance_seconds": 0},
         "tenants.clinic.plugins.chatwoot.tolerance_seconds", "must be more than 0"),
        ({"base_url": "https://c", "account_id": 1, "api_access_token": "t", "inbox_id": 1, "secret": "x"},
         "tenants.clinic.plugins.chatwoot.secret", "unknown key"),
    ],
)
def test_settings_errors_name_the_key(sqlite_url: str, table: dict[str, Any], key: str, problem: str) -> None:
    from hub.errors import ConfigError

    tenants = {slug: dict(t) for slug, t in DEFAULT_TENANTS.items()}
    tenants["clinic"]["plugins"] = {"chatwoot": table}
    with pytest.raises(ConfigError) as error:
        Hub.build(make_config(sqlite_url, tenants=tenants))
    assert (error.value.key, error.value.problem) == (key, problem)


async def test_unsigned_deliveries_pass_only_where_the_tenant_allows_them(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in, webhook_secret=None, allow_unsigned=True) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        status, answer = await post(client, stand_in.incoming_message(stand_in.add_conversation(lucia["id"]), "hola"), None)
        assert (status, answer) == (200, {"accepted": True})


async def test_a_redelivery_is_processed_once_and_the_tenant_can_come_from_the_account(
    sqlite_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        payload = stand_in.incoming_message(stand_in.add_conversation(lucia["id"]), "hola")
        assert await post(client, payload, delivery="d-1", tenant=None) == (200, {"accepted": True})
        assert await post(client, payload, delivery="d-1", tenant=None) == (200, {"accepted": False})
        await drain(hub)
        assert await count(hub, Message, Message.direction == "in") == 1


async def test_private_notes_and_the_hubs_own_echoes_are_not_recorded_but_agent_replies_are(
    sqlite_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        conversation = stand_in.add_conversation(lucia["id"])
        await post(client, stand_in.incoming_message(conversation, "hola"))
        assert (await post(client, stand_in.agent_message(conversation, "nota interna", private=True)))[1]["accepted"] is False
        reply = stand_in.agent_message(conversation, "¡Claro! ¿Qué día le va bien?")
        assert (await post(client, reply))[1] == {"accepted": True}
        await drain(hub)
        async with hub.db.sessions() as session:
            rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        assert [(m.direction, m.body) for m in rows] == [("in", "hola"), ("out", "¡Claro! ¿Qué día le va bien?")]


# --- context sync: durable, coalesced, backing off -------------------------------------------


async def test_attribute_updates_coalesce_and_survive_429_and_5xx(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in, coalesce_seconds=60) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        await post(client, stand_in.contact_event(lucia["id"], "contact_created"))
        await hub.plugin_jobs.run_due()  # the link job; its push waits out the coalescing window
        for index in range(3):
            await hub.upsert_appointment("clinic", booking(f"b-{index}", phone="+34600123456", hours=24 + index))
        puts = [r for r in stand_in.requests if r.method == "PUT"]
        assert puts == []  # nothing before the window ends
        async with hub.db.sessions.begin() as session:
            await session.execute(update(PluginJob).values(due_at=dt.datetime.now(dt.UTC)))
        stand_in.throttle(1)
        assert await hub.plugin_jobs.run_due() >= 1
        job = next(j for j in await hub.plugin_jobs.pending("chatwoot", "clinic") if j.kind == "push")
        assert job.last_error is not None and "429" in job.last_error and job.due_at > dt.datetime.now(dt.UTC)
        # The vendor comes back; an outage (503) on the next try still loses nothing.
        stand_in.fail_next(1)
        for _ in range(2):
            async with hub.db.sessions.begin() as session:
                await session.execute(update(PluginJob).values(due_at=dt.datetime.now(dt.UTC)))
            await hub.plugin_jobs.run_due()
        puts = [r for r in stand_in.requests if r.method == "PUT"]
        assert [r.status for r in puts] == [429, 503, 200]
        assert stand_in.contacts[lucia["id"]]["custom_attributes"]["hub_appointments"] == 3
        assert [j for j in await hub.plugin_jobs.pending("chatwoot", "clinic") if j.kind == "push"] == []


async def test_a_client_only_in_the_hub_is_created_in_chatwoot_when_the_tenant_wants_it(
    sqlite_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in, create_contacts=True) as (hub, client):
        update_ = await hub.upsert_appointment("clinic", booking("c-1", phone="611 22 33 44"))
        await drain(hub)
        created = [c for c in stand_in.contacts.values() if c["phone_number"] == "+34611223344"]
        assert len(created) == 1
        assert ("chatwoot", str(created[0]["id"])) in await identities(hub, update_.appointment.contact_id or 0)
        assert created[0]["custom_attributes"]["hub_appointments"] == 1


async def linked_client(hub: Hub, client: TestClient, stand_in: ChatwootStandIn) -> tuple[dict[str, Any], int]:
    """Lucía in Chatwoot with one conversation, linked to her hub contact; returns her and the conversation."""
    lucia = stand_in.add_contact("Lucía", phone="+34600123456")
    conversation = stand_in.add_conversation(lucia["id"])
    await post(client, stand_in.contact_event(lucia["id"], "contact_created"))
    await drain(hub)
    return lucia, conversation


async def test_moved_canceled_and_no_show_bookings_leave_one_note_each(database_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(database_url, stand_in) as (hub, client):
        _, conversation = await linked_client(hub, client, stand_in)
        await hub.upsert_appointment("clinic", booking("n-1", phone="+34600123456", hours=48))
        await hub.upsert_appointment("clinic", booking("n-1", phone="+34600123456", hours=72))
        await hub.upsert_appointment("clinic", booking("n-1", phone="+34600123456", hours=72, status="canceled"))
        await hub.upsert_appointment("clinic", booking("n-2", phone="+34600123456", hours=-2, status="no_show"))
        await drain(hub)
        await hub.upsert_appointment("clinic", booking("n-1", phone="+34600123456", hours=72, status="canceled"))  # unchanged
        await drain(hub)
        notes = stand_in.notes(conversation)
        assert [note.split(" ")[1:3] for note in notes] == [
            ["cita", "reservada"], ["cita", "movida"], ["cita", "del"], ["el", "cliente"],
        ], notes
        assert "cancelada" in notes[2] and "no se presentó" in notes[3]
        assert stand_in.contacts[next(iter(stand_in.contacts))]["custom_attributes"]["hub_no_shows"] == 1


async def test_a_reminder_that_failed_on_every_channel_leaves_a_note(sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path) -> None:
    from hub import DeliveryStatusEvent

    hub = Hub.build(make_config(sqlite_url, tenants=tenants_with(stand_in), record_file=tmp_path / "records.jsonl"))
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            _, conversation = await linked_client(hub, client, stand_in)
            contact = await hub.find_contact_id("clinic", "phone", "+34600123456")
            notification = await hub.notify(tenant="clinic", request=NotificationRequest(
                kind="reminder", contact_id=contact, template="message", data={"text": "Mañana a las 10"},
                channel_order=("recorder-sms",),
            ))
            await drain(hub)
            await hub.accept(DeliveryStatusEvent(tenant="clinic", channel="recorder-sms", provider_id=f"echo-{notification}",
                                                 status="undelivered", error_code="30003"), source="test", dedupe_key="s-1")
            await drain(hub)
            async with hub.db.sessions.begin() as session:
                await session.execute(update(PluginJob).values(due_at=dt.datetime.now(dt.UTC)))
            await drain(hub)
            assert stand_in.notes(conversation) == ["Hub: el recordatorio (reminder) no se pudo entregar por ningún canal."]


# --- merges ---------------------------------------------------------------------------------


async def test_two_chatwoot_contacts_of_one_person_are_proposed_for_merge_never_merged_silently(
    database_url: str, stand_in: ChatwootStandIn, tmp_path: Path
) -> None:
    async with chatwoot_hub(database_url, stand_in) as (hub, client):
        # One Mexican client typed twice: with the old mobile "1" and without.
        first = stand_in.add_contact("Ana", phone="+5215512345678")
        second = stand_in.add_contact("Ana M.", phone="+52 55 1234 5678")
        conversation = stand_in.add_conversation(second["id"])
        await post(client, stand_in.contact_event(first["id"], "contact_created"))
        await post(client, stand_in.contact_event(second["id"], "contact_created"))
        await drain(hub)

        async with hub.db.sessions() as session:
            owners = set((await session.scalars(select(Identity.contact_id).where(Identity.kind == "chatwoot"))).all())
        assert len(owners) == 1
        assert stand_in.merges == []
        notes = stand_in.notes(conversation)
        assert len(notes) == 1 and f"#{first['id']}" in notes[0]
        # The hub's own view of the client (console, `hub contacts show`) carries the Chatwoot section.
        [section] = [s for s in await hub.contact_context("clinic", owners.pop()) if s.title == "Chatwoot"]
        assert any(line.endswith(f"/contacts/{first['id']}") for line in section.lines)
        assert any(f"contacts {first['id']} and {second['id']}" in line for line in section.lines)

        document = config_document(hub.config.hub.database_url, tenants=tenants_with(stand_in))
        config = write_toml(tmp_path / "config.toml", document)
        listed = await hub_cli("chatwoot", "merges", "--tenant", "clinic", config=config)
        assert listed.returncode == 0, listed.stderr
        assert f"keep {first['id']}  merge {second['id']}" in listed.stdout

        merged = await hub_cli("chatwoot", "merge", "--tenant", "clinic", "--keep", str(first["id"]), "--merge", str(second["id"]), "--yes", config=config)
        assert merged.returncode == 0, merged.stderr
        assert stand_in.merges == [(first["id"], second["id"])]
        again = await hub_cli("chatwoot", "merges", "--tenant", "clinic", config=config)
        assert "no open merge proposals" in again.stdout


async def test_hub_contacts_merged_later_bring_their_chatwoot_contacts_to_a_proposal(
    sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path
) -> None:
    from hub.models import MergeProposal

    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        work = stand_in.add_contact("Pedro", phone="+34611000001")
        home = stand_in.add_contact("Pedro", phone="+34611000002")
        conversation = stand_in.add_conversation(home["id"])
        await post(client, stand_in.contact_event(work["id"], "contact_created"))
        await post(client, stand_in.contact_event(home["id"], "contact_created"))
        await drain(hub)
        # A booking names both numbers: two people or one? The hub proposes, an operator decides.
        await hub.upsert_appointment("clinic", AppointmentInput(
            source="api", external_id="p-1", start_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3),
            addresses=(("phone", "+34611000001"), ("phone", "+34611000002")), contact_name="Pedro",
        ))
        await drain(hub)
        assert stand_in.notes(conversation) == []
        async with hub.db.sessions() as session:
            proposal = (await session.scalars(select(MergeProposal))).one()

        config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, tenants=tenants_with(stand_in)))
        merged = await hub_cli("contacts", "merge", str(proposal.id), "--tenant", "clinic", config=config)
        assert merged.returncode == 0, merged.stderr
        await drain(hub)
        notes = stand_in.notes(conversation)
        assert len(notes) == 1 and f"#{work['id']}" in notes[0], notes
        assert stand_in.merges == []
        stored = await hub.get_plugin_data("chatwoot", "clinic", "merge_proposals") or {}
        assert [(p["keep"], p["merge"]) for p in stored.get("items", [])] == [(work["id"], home["id"])]


# --- the channel ----------------------------------------------------------------------------


async def test_a_notification_goes_into_the_clients_conversation_and_a_template_outside_the_window(
    sqlite_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(sqlite_url, stand_in, whatsapp_template="hub_notice") as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        await post(client, stand_in.contact_event(lucia["id"], "contact_created"))
        await drain(hub)
        # No conversation yet and no message from her in 24 hours: a conversation is opened, the template sent.
        await hub.notify(tenant="clinic", request=NotificationRequest(
            kind="notice", address="+34600123456", channel_order=("chatwoot",), template="message", data={"text": "Le esperamos mañana."},
        ))
        await drain(hub)
        conversation = next(c for c in stand_in.conversations.values() if c["contact_id"] == lucia["id"])
        sent = stand_in.messages[conversation["id"]]
        assert [m["content"] for m in sent] == ["Le esperamos mañana."]
        assert sent[0]["template_params"]["name"] == "hub_notice"
        assert sent[0]["template_params"]["processed_params"] == {"body": {"1": "Le esperamos mañana."}}
        async with hub.db.sessions() as session:
            row = (await session.scalars(select(Notification))).one()
        assert (row.status, row.channel) == ("sent", "chatwoot")

        # She writes: inside the window the text goes as it is, into that same conversation.
        await post(client, stand_in.incoming_message(conversation["id"], "Gracias"))
        await drain(hub)
        await hub.notify(tenant="clinic", request=NotificationRequest(
            kind="notice", address="+34600123456", channel_order=("chatwoot",), template="message", data={"text": "Hasta mañana."},
        ))
        await drain(hub)
        last = stand_in.messages[conversation["id"]][-1]
        assert last["content"] == "Hasta mañana." and last["template_params"] is None


async def test_a_wrong_token_fails_the_channel_for_good(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        await post(client, stand_in.contact_event(lucia["id"], "contact_created"))
        await drain(hub)
        stand_in.token = "rotated"
        await hub.notify(tenant="clinic", request=NotificationRequest(
            kind="notice", address="+34600123456", channel_order=("chatwoot",), template="message", data={"text": "x"},
        ))
        await drain(hub)
        async with hub.db.sessions() as session:
            row = (await session.scalars(select(Notification))).one()
        assert row.status == "failed" and "401" in (row.last_error or "")


# --- the command line -------------------------------------------------------------------------


async def hub_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    """`python -m hub ...` in a subprocess, awaited, so the stand-in in this event loop keeps answering."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ["HUB_CONFIG"] = str(config)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=config.parent,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return subprocess.CompletedProcess(list(args), process.returncode or 0, out.decode(), err.decode())


async def test_setup_is_idempotent_and_sync_links_every_contact(sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path) -> None:
    for index in range(20):  # more than one page of 15
        stand_in.add_contact(f"Client {index}", phone=f"+3460000{index:04d}")
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, tenants=tenants_with(stand_in)))

    first = await hub_cli("chatwoot", "setup", "--tenant", "clinic", config=config)
    assert first.returncode == 0, first.stderr
    assert "11 created, 0 already there" in first.stdout
    assert "/webhooks/chatwoot/events?tenant=clinic" in first.stdout and "/webhooks/chatwoot/app?tenant=clinic&key=" in first.stdout
    second = await hub_cli("chatwoot", "setup", "--tenant", "clinic", config=config)
    assert "0 created, 11 already there" in second.stdout
    types = {d["attribute_key"]: d["attribute_display_type"] for d in stand_in.definitions}
    assert types["hub_next_appointment"] == "date" and types["hub_no_shows"] == "number" and types["hub_link"] == "link"
    assert stand_in.token not in first.stdout + first.stderr

    synced = await hub_cli("chatwoot", "sync", "--tenant", "clinic", config=config)
    assert synced.returncode == 0, synced.stderr
    assert "tenant clinic: 20 Chatwoot contacts linked and their context pushed" in synced.stdout
    assert all(c["custom_attributes"].get("hub_appointments") == 0 for c in stand_in.contacts.values())
    hub = Hub.build(make_config(sqlite_url, tenants=tenants_with(stand_in)))
    async with hub.running():
        assert await count(hub, Identity, Identity.kind == "chatwoot") == 20

    # Again, with Chatwoot throttling one update: nothing is linked twice, that update waits in the queue.
    stand_in.throttle(1, method="PUT")
    before = len(stand_in.requests)
    again = await hub_cli("chatwoot", "sync", "--tenant", "clinic", config=config)
    assert again.returncode == 0, again.stderr
    assert "20 Chatwoot contacts linked and their context pushed (1 queued: Chatwoot asked to wait)" in again.stdout
    puts = [r for r in stand_in.requests[before:] if r.method == "PUT"]
    assert len(puts) == 20 and [r.status for r in puts].count(429) == 1
    throttled = next(r.path for r in puts if r.status == 429).rsplit("/", 1)[1]
    hub = Hub.build(make_config(sqlite_url, tenants=tenants_with(stand_in)))
    async with hub.running():
        assert await count(hub, Identity, Identity.kind == "chatwoot") == 20
        contact = await hub.find_contact_id("clinic", "chatwoot", throttled)
        assert f"contact:{contact}" in {job.key for job in await hub.plugin_jobs.pending("chatwoot", "clinic") if job.kind == "push"}


async def test_settings_configured_in_the_database_verify_webhooks(sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ.update(HUB_CONFIG=str(config), CW_TOKEN=stand_in.token, CW_SECRET=SECRET)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "tenants", "configure", "clinic", "chatwoot", f"base_url={stand_in.base_url}",
        f"account_id={stand_in.account_id}", f"inbox_id={stand_in.inbox_id}", "api_access_token=@env:CW_TOKEN",
        "webhook_secret=@env:CW_SECRET", "sandbox=false", "coalesce_seconds=0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=tmp_path,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert stand_in.token not in out.decode() + err.decode() and SECRET not in out.decode() + err.decode()

    hub = Hub.build(make_config(sqlite_url))
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            lucia = stand_in.add_contact("Lucía", phone="+34600123456")
            payload = stand_in.incoming_message(stand_in.add_conversation(lucia["id"]), "hola")
            assert (await post(client, payload, "wrong"))[0] == 403
            assert await post(client, payload) == (200, {"accepted": True})
            await drain(hub)
            assert stand_in.contacts[lucia["id"]]["custom_attributes"]["hub_appointments"] == 0


async def test_hub_plugins_lists_the_channel_and_hooks_and_no_secret(sqlite_url: str, stand_in: ChatwootStandIn, tmp_path: Path) -> None:
    import json

    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, tenants=tenants_with(stand_in)))
    listed = await hub_cli("plugins", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    row = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}["chatwoot"]
    # Configured per tenant only: the plugin-wide table is absent, the channel is there all the same.
    assert row["channels"] == ["chatwoot"]
    assert {"on_handoff", "on_appointment_changed", "on_delivery_status", "register_routes"} <= set(row["hooks"])
    assert stand_in.token not in listed.stdout and SECRET not in listed.stdout


async def test_stand_in_refuses_a_wrong_token_and_unknown_ids_as_chatwoot_does(stand_in: ChatwootStandIn) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        base = f"{stand_in.base_url}/api/v1/accounts/{stand_in.account_id}"
        async with session.get(f"{base}/contacts", headers={"api_access_token": "nope"}) as response:
            assert (response.status, await response.json()) == (401, {"error": "Invalid Access Token"})
        async with session.get(f"{base}/contacts/999/conversations", headers={"api_access_token": stand_in.token}) as response:
            assert (response.status, await response.json()) == (404, {"error": "Resource could not be found"})
        stand_in.throttle()
        async with session.get(f"{base}/contacts", headers={"api_access_token": stand_in.token}) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "1"
        async with session.post(f"{base}/conversations/1/messages", json={"private": True}, headers={"api_access_token": stand_in.token}):
            pass
    assert any("'content' is a required property" in v for v in stand_in.violations)
    stand_in.violations.clear()


# --- the hand-off ---------------------------------------------------------------------------


def outgoing(stand_in: ChatwootStandIn, conversation: int) -> list[str]:
    """What was posted to the client (not private) in a conversation, oldest first."""
    return [m["content"] for m in stand_in.messages[conversation] if m.get("message_type") == 1 and not m["private"]]


async def test_the_bot_answers_in_chatwoot_hands_off_to_a_team_stays_silent_and_resumes_on_resolve(
    database_url: str, stand_in: ChatwootStandIn
) -> None:
    async with chatwoot_hub(database_url, stand_in, bot_enabled=True, handoff_team_id=4) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        conversation = stand_in.add_conversation(lucia["id"])
        stand_in.conversations[conversation]["status"] = "pending"  # the bot's conversations wait in "pending"

        await post(client, stand_in.incoming_message(conversation, "echo hola"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola"]
        # Chatwoot reports the bot's own reply back as an outgoing message: not an agent's, so no hand-off.
        posted = stand_in.messages[conversation][-1]["id"]
        assert (await post(client, stand_in.echo_of(conversation, posted)))[1] == {"accepted": True}
        await drain(hub)
        await post(client, stand_in.incoming_message(conversation, "echo otra vez"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola", "otra vez"]

        await post(client, stand_in.incoming_message(conversation, "person quiero cambiar la cita del martes"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola", "otra vez", "one moment"]
        assert stand_in.conversations[conversation]["status"] == "open"
        assert stand_in.conversations[conversation]["team_id"] == 4
        notes = stand_in.notes(conversation)
        assert len(notes) == 1 and "quiero cambiar la cita del martes" in notes[0] and "asked for a person" in notes[0]

        await post(client, stand_in.incoming_message(conversation, "echo ¿hola?"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola", "otra vez", "one moment"]  # a human has it: the bot is silent

        resolved = {**stand_in.conversation_data(conversation), "status": "resolved", "event": "conversation_status_changed",
                    "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}]}
        assert (await post(client, resolved))[0] == 200
        await post(client, stand_in.incoming_message(conversation, "echo de nuevo"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola", "otra vez", "one moment", "de nuevo"]

        # An agent answers: the bot stays silent again, without a second note.
        await post(client, stand_in.agent_message(conversation, "Soy Ana, ¿en qué le ayudo?"))
        await drain(hub)
        await post(client, stand_in.incoming_message(conversation, "echo silencio"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == ["hola", "otra vez", "one moment", "de nuevo"]
        assert len(stand_in.notes(conversation)) == 1


async def test_with_the_bot_off_chatwoot_conversations_are_the_agents(sqlite_url: str, stand_in: ChatwootStandIn) -> None:
    async with chatwoot_hub(sqlite_url, stand_in) as (hub, client):
        lucia = stand_in.add_contact("Lucía", phone="+34600123456")
        conversation = stand_in.add_conversation(lucia["id"])
        await post(client, stand_in.incoming_message(conversation, "echo hola"))
        await drain(hub)
        assert outgoing(stand_in, conversation) == []
        contact = await hub.find_contact_id("clinic", "chatwoot", str(lucia["id"]))
        assert contact is not None
        thread = await hub.find_conversation_id("clinic", contact, "chatwoot")
        assert thread is not None and await hub.conversation_handler("clinic", thread) == "human"
        assert stand_in.notes(conversation) == []
