"""The contact resolver `hub.contacts.link`: one person's addresses end on one contact, per tenant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import hub as hub_api
from hub.contacts import LinkOutcome, find_contact, link
from hub.core import Hub
from hub.models import Appointment, Contact, ContactMerge, Conversation, Identity, Message, Notification
from hub.tenants import TenantInfo
from tests.conftest import read_records

MX_FORMS = ("whatsapp:+5215512345678", "55 1234 5678", "+52 55 1234 5678", "5215512345678", "(55) 1234-5678")
MX_KEY = "+525512345678"
UTC = dt.UTC


async def resolve(hub: Hub, tenant: TenantInfo, addresses: list[tuple[str, str]], **kwargs: Any) -> LinkOutcome:
    """Run one link in its own committed transaction, as a use case would."""
    async with hub.db.sessions.begin() as session:
        return await link(session, tenant, addresses, **kwargs)


async def all_rows(hub: Hub, model: type, *where: Any) -> list[Any]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(model).where(*where).order_by(model.id))).all())


async def count(hub: Hub, model: type, *where: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_new_address_creates_one_contact(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    outcome = await resolve(hub, salon, [("phone", "+52 55 1234 5678")])

    assert outcome.created is True
    assert outcome.merged == []
    assert outcome.contact.tenant == "salon"
    assert [(i.kind, i.value) for i in outcome.identities] == [("phone", MX_KEY)]
    assert outcome.added == outcome.identities
    contacts = await all_rows(hub, Contact)
    assert [(c.id, c.tenant_id, c.merged_into_id) for c in contacts] == [(outcome.contact.id, salon.id, None)]
    identities = await all_rows(hub, Identity)
    assert [(i.id, i.contact_id, i.tenant_id, i.kind, i.value) for i in identities] == [
        (outcome.identities[0].id, outcome.contact.id, salon.id, "phone", MX_KEY)
    ]


async def test_every_form_of_one_number_resolves_to_one_contact_and_identity(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    outcomes = [await resolve(hub, salon, [("phone", form)]) for form in MX_FORMS]

    assert {o.contact.id for o in outcomes} == {outcomes[0].contact.id}
    assert [o.created for o in outcomes] == [True] + [False] * (len(MX_FORMS) - 1)
    assert [len(o.added) for o in outcomes] == [1] + [0] * (len(MX_FORMS) - 1)
    assert {o.identities[0].id for o in outcomes} == {outcomes[0].identities[0].id}
    assert await count(hub, Contact) == 1
    assert [(i.kind, i.value) for i in await all_rows(hub, Identity)] == [("phone", MX_KEY)]
    async with hub.db.sessions() as session:
        found = await find_contact(session, salon, "phone", "+5215512345678")
    assert found is not None and found.id == outcomes[0].contact.id


async def test_forms_given_together_are_one_identity(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    outcome = await resolve(hub, salon, [("phone", form) for form in MX_FORMS])

    assert outcome.created is True
    assert [(i.kind, i.value) for i in outcome.identities] == [("phone", MX_KEY)]
    assert await count(hub, Identity) == 1


async def test_kind_is_case_insensitive(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    first = await resolve(hub, salon, [(" Phone", "+52 55 1234 5678")])
    second = await resolve(hub, salon, [("phone", "55 1234 5678")])
    third = await resolve(hub, salon, [("EMAIL", "Ana@Example.com")])
    fourth = await resolve(hub, salon, [("email", "ana@example.com"), ("PHONE", MX_KEY)])

    assert second.contact.id == first.contact.id
    assert second.added == []
    assert fourth.contact.id == first.contact.id
    assert fourth.merged == [third.contact.id]
    assert sorted((i.kind, i.value) for i in await all_rows(hub, Identity)) == [
        ("email", "ana@example.com"),
        ("phone", MX_KEY),
    ]


async def test_email_is_trimmed_and_lower_cased(hub: Hub) -> None:
    clinic = await hub.tenants.get("clinic")
    first = await resolve(hub, clinic, [("email", "  Ana.Lopez@Example.COM ")])
    again = await resolve(hub, clinic, [("email", "ana.lopez@example.com")])

    assert [(i.kind, i.value) for i in first.identities] == [("email", "ana.lopez@example.com")]
    assert again.contact.id == first.contact.id
    assert again.created is False and again.added == []
    assert [i.value for i in await all_rows(hub, Identity)] == ["ana.lopez@example.com"]


async def test_new_address_with_known_one_is_added_to_that_contact(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    first = await resolve(hub, salon, [("phone", "55 1234 5678")])
    second = await resolve(hub, salon, [("phone", "whatsapp:+5215512345678"), ("email", "ana@example.com")])

    assert second.contact.id == first.contact.id
    assert second.created is False and second.merged == []
    assert [(i.kind, i.value) for i in second.added] == [("email", "ana@example.com")]
    assert [(i.kind, i.value) for i in second.identities] == [("phone", MX_KEY), ("email", "ana@example.com")]
    assert {i.contact_id for i in await all_rows(hub, Identity)} == {first.contact.id}


async def test_evidence_joining_two_contacts_merges_them_into_the_older(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    older = await resolve(hub, salon, [("phone", "55 1234 5678")], profile={"name": "Ana"})
    newer = await resolve(
        hub,
        salon,
        [("email", "ana@example.com"), ("chatwoot", "42")],
        profile={"name": "Ana L.", "locale": "en", "timezone": "America/Mexico_City"},
    )
    keep, other = older.contact.id, newer.contact.id
    assert keep != other

    t1, t2, t3 = (dt.datetime(2024, 5, day, 12, tzinfo=UTC) for day in (1, 2, 3))
    async with hub.db.sessions.begin() as session:
        kept_whatsapp = Conversation(tenant_id=salon.id, contact_id=keep, medium="whatsapp", channel="wa", last_inbound_at=t1)
        other_whatsapp = Conversation(
            tenant_id=salon.id, contact_id=other, medium="whatsapp", channel="wa", last_inbound_at=t2, last_outbound_at=t3
        )
        other_sms = Conversation(tenant_id=salon.id, contact_id=other, medium="sms", channel="sms")
        session.add_all([kept_whatsapp, other_whatsapp, other_sms])
        await session.flush()
        for conversation, provider_id in (
            (kept_whatsapp, "m1"),
            (other_whatsapp, "m2"),
            (other_whatsapp, "m3"),
            (other_sms, "m4"),
        ):
            session.add(
                Message(
                    tenant_id=salon.id,
                    conversation_id=conversation.id,
                    direction="in",
                    channel=conversation.channel,
                    body=provider_id,
                    provider_id=provider_id,
                    status="received",
                )
            )
        appointment = Appointment(
            tenant_id=salon.id, contact_id=other, source="test", external_id="a1", start_at=t3, status="scheduled"
        )
        notification = Notification(
            tenant_id=salon.id, contact_id=other, kind="reminder", template="reminder", status="scheduled", due_at=t2
        )
        session.add_all([appointment, notification])
        await session.flush()
        ids = {"kept_whatsapp": kept_whatsapp.id, "other_whatsapp": other_whatsapp.id, "other_sms": other_sms.id}
        appointment_id, notification_id = appointment.id, notification.id

    outcome = await resolve(
        hub, salon, [("phone", "+52 55 1234 5678"), ("email", "ANA@example.com")], reason="booking form"
    )

    assert outcome.contact.id == keep
    assert outcome.merged == [other]
    assert outcome.created is False and outcome.added == []
    contacts = {c.id: c for c in await all_rows(hub, Contact)}
    assert contacts[other].merged_into_id == keep
    assert contacts[keep].merged_into_id is None
    # Evidence fills the kept contact's gaps but never overwrites it.
    assert (contacts[keep].name, contacts[keep].locale, contacts[keep].timezone) == ("Ana", "en", "America/Mexico_City")
    assert outcome.contact.name == "Ana"
    assert sorted((i.kind, i.value, i.contact_id) for i in await all_rows(hub, Identity)) == [
        ("chatwoot", "42", keep),
        ("email", "ana@example.com", keep),
        ("phone", MX_KEY, keep),
    ]
    merges = await all_rows(hub, ContactMerge)
    assert [(m.tenant_id, m.kept_contact_id, m.merged_contact_id, m.reason) for m in merges] == [
        (salon.id, keep, other, "booking form")
    ]
    assert set(merges[0].evidence["identities"]) == {f"phone:{MX_KEY}", "email:ana@example.com"}

    # One thread per medium: the absorbed WhatsApp messages join the kept thread, SMS moves over.
    conversations = {c.medium: c for c in await all_rows(hub, Conversation)}
    assert set(conversations) == {"whatsapp", "sms"}
    assert conversations["whatsapp"].id == ids["kept_whatsapp"]
    assert conversations["sms"].id == ids["other_sms"]
    assert {c.contact_id for c in conversations.values()} == {keep}
    assert conversations["whatsapp"].last_inbound_at == t2
    assert conversations["whatsapp"].last_outbound_at == t3
    messages = {m.provider_id: m.conversation_id for m in await all_rows(hub, Message)}
    assert messages == {"m1": ids["kept_whatsapp"], "m2": ids["kept_whatsapp"], "m3": ids["kept_whatsapp"], "m4": ids["other_sms"]}
    assert [a.contact_id for a in await all_rows(hub, Appointment, Appointment.id == appointment_id)] == [keep]
    assert [n.contact_id for n in await all_rows(hub, Notification, Notification.id == notification_id)] == [keep]

    # The merged contact is gone for good: its addresses now find the kept one.
    again = await resolve(hub, salon, [("chatwoot", "42")])
    assert again.contact.id == keep and again.merged == []


async def test_evidence_joining_three_contacts_merges_all_into_the_oldest(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    a = await resolve(hub, salon, [("email", "ana@example.com")])
    b = await resolve(hub, salon, [("phone", "55 1234 5678")])
    c = await resolve(hub, salon, [("chatwoot", "7")])

    outcome = await resolve(hub, salon, [("chatwoot", "7"), ("phone", MX_KEY), ("email", "ana@example.com")])

    assert outcome.contact.id == a.contact.id
    assert sorted(outcome.merged) == sorted([b.contact.id, c.contact.id])
    assert [(c.id, c.merged_into_id) for c in await all_rows(hub, Contact)] == [
        (a.contact.id, None),
        (b.contact.id, a.contact.id),
        (c.contact.id, a.contact.id),
    ]
    assert {i.contact_id for i in await all_rows(hub, Identity)} == {a.contact.id}
    assert sorted(m.merged_contact_id for m in await all_rows(hub, ContactMerge)) == sorted([b.contact.id, c.contact.id])


async def test_tenants_never_share_contacts(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    clinic = await hub.tenants.get("clinic")
    in_clinic = await resolve(hub, clinic, [("phone", "+52 55 1234 5678")])
    in_salon = await resolve(hub, salon, [("phone", "55 1234 5678")])

    assert in_salon.contact.id != in_clinic.contact.id
    assert in_salon.created is True and in_clinic.created is True
    assert (in_salon.contact.tenant, in_clinic.contact.tenant) == ("salon", "clinic")
    identities = await all_rows(hub, Identity)
    assert sorted((i.tenant_id, i.contact_id, i.value) for i in identities) == sorted(
        [(clinic.id, in_clinic.contact.id, MX_KEY), (salon.id, in_salon.contact.id, MX_KEY)]
    )

    # Two clinic contacts that salon evidence connects stay apart: evidence is per tenant.
    clinic_email = await resolve(hub, clinic, [("email", "ana@example.com")])
    joined = await resolve(hub, salon, [("phone", MX_KEY), ("email", "ana@example.com")])
    assert joined.contact.id == in_salon.contact.id
    assert joined.merged == []
    assert await count(hub, ContactMerge) == 0
    assert await count(hub, Contact, Contact.merged_into_id.is_not(None)) == 0
    async with hub.db.sessions() as session:
        found = await find_contact(session, clinic, "email", "ana@example.com")
    assert found is not None and found.id == clinic_email.contact.id


async def test_profile_fills_gaps_but_never_overwrites(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    first = await resolve(hub, salon, [("phone", MX_KEY)], profile={"name": "Ana", "locale": None, "timezone": ""})
    second = await resolve(
        hub,
        salon,
        [("phone", "55 1234 5678")],
        profile={"name": "Ana María", "locale": "es-MX", "timezone": "America/Mexico_City", "external_id": "X1"},
    )

    assert second.contact.id == first.contact.id
    assert (second.contact.name, second.contact.locale, second.contact.timezone) == ("Ana", "es-MX", "America/Mexico_City")
    [contact] = await all_rows(hub, Contact)
    assert (contact.name, contact.locale, contact.timezone, contact.external_id) == (
        "Ana",
        "es-MX",
        "America/Mexico_City",
        "X1",
    )


async def test_profile_values_that_cannot_be_stored_are_left_out(hub: Hub) -> None:
    # PostgreSQL refuses these (SQLite would keep them): the link must still succeed on both.
    salon = await hub.tenants.get("salon")
    outcome = await resolve(
        hub,
        salon,
        [("phone", MX_KEY)],
        profile={"name": "A" * 201, "locale": "es-MX-x-private-use", "external_id": "X\x001", "timezone": "Europe/Madrid"},
    )

    assert outcome.created is True
    [contact] = await all_rows(hub, Contact)
    assert (contact.name, contact.locale, contact.external_id, contact.timezone) == (None, None, None, "Europe/Madrid")


async def test_unknown_profile_field_stores_nothing(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    async with hub.db.sessions.begin() as session:
        with pytest.raises(ValueError, match="unknown profile field 'age'"):
            await link(session, salon, [("phone", MX_KEY)], profile={"age": 30})
    assert await count(hub, Contact) == 0
    assert await count(hub, Identity) == 0


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        ([("phone", "123")], "too short"),
        ([("phone", "+52 55 1234 5678"), ("phone", "call me")], "not a number"),
        ([("email", "ana@example.com"), ("email", "ana(at)example.com")], "invalid email"),
        ([("email", "x" * 320 + "@example.com")], "too long"),
        ([("chatwoot", "   ")], "empty"),
    ],
)
async def test_invalid_address_raises_and_stores_nothing(
    hub: Hub, addresses: list[tuple[str, str]], reason: str
) -> None:
    salon = await hub.tenants.get("salon")
    # The exception is caught inside the transaction, which then commits: link itself must not
    # have written anything before finding the bad address.
    async with hub.db.sessions.begin() as session:
        with pytest.raises(hub_api.InvalidAddress) as raised:
            await link(session, salon, addresses)
    assert raised.value.reason == reason
    assert await count(hub, Contact) == 0
    assert await count(hub, Identity) == 0


async def test_link_needs_an_address(hub: Hub) -> None:
    salon = await hub.tenants.get("salon")
    async with hub.db.sessions.begin() as session:
        with pytest.raises(ValueError, match="at least one address"):
            await link(session, salon, [])


def linked(record_file: Path) -> list[tuple[int, str, str]]:
    return [(r["contact_id"], r["kind"], r["value"]) for r in read_records(record_file) if r["hook"] == "on_contact_linked"]


async def test_announce_link_fires_on_contact_linked(hub: Hub, record_file: Path) -> None:
    salon = await hub.tenants.get("salon")
    outcome = await announced(hub, salon, [("phone", "whatsapp:+5215512345678"), ("email", "Ana@Example.com")])
    ana = outcome.contact.id
    assert linked(record_file) == [(ana, "phone", MX_KEY), (ana, "email", "ana@example.com")]

    # Nothing new: nothing announced.
    await announced(hub, salon, [("phone", "55 1234 5678")])
    assert len(linked(record_file)) == 2

    # A merge that adds no identity is still announced, once, with the first identity named.
    other = await announced(hub, salon, [("chatwoot", "9")])
    merge = await announced(hub, salon, [("chatwoot", "9"), ("phone", MX_KEY)])
    assert merge.merged == [other.contact.id] and merge.added == []
    assert linked(record_file)[2:] == [(other.contact.id, "chatwoot", "9"), (ana, "chatwoot", "9")]



async def test_a_rolled_back_link_announces_nothing(hub: Hub, record_file: Path) -> None:
    salon = await hub.tenants.get("salon")
    with pytest.raises(RuntimeError):
        async with hub.unit_of_work() as uow:
            hub.announce_link(uow, await link(uow.session, salon, [("email", "gone@example.com")]))
            raise RuntimeError("the use case failed after linking")
    assert linked(record_file) == []
    assert await all_rows(hub, Identity, Identity.value == "gone@example.com") == []


async def announced(hub: Hub, tenant: TenantInfo, addresses: list[tuple[str, str]]) -> LinkOutcome:
    """Link in a unit of work that announces what it added, as every use case does."""
    async with hub.unit_of_work() as uow:
        outcome = await link(uow.session, tenant, addresses)
        hub.announce_link(uow, outcome)
    return outcome