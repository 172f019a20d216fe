"""Identity rules on both databases: every way people write one number links to one contact, Argentine
numbers match with or without the 9, business-scoped WhatsApp ids are an identity of their own,
uncertain evidence is proposed rather than merged, and every merge can be undone."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.contacts import LinkOutcome, link
from hub.merges import (
    BRAZIL_NINTH_DIGIT,
    CONFLICTING_IDENTITIES,
    SAME_NAME_SAME_DIGITS,
    MergeError,
    accept_proposal,
    reject_proposal,
    unmerge,
)
from hub.core import Hub
from hub.models import Appointment, Contact, ContactMerge, Conversation, Identity, MergeProposal, Message, Notification
from hub.phones import InvalidAddress
from tests.conftest import make_config

TENANTS = {
    region.lower(): {"name": region, "default_region": region, "timezone": "UTC", "locale": "es"}
    for region in ("ES", "MX", "AR", "BR", "DE", "US", "IT")
}


@pytest.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    instance = Hub.build(make_config(database_url, tenants=TENANTS))
    async with instance.running():
        yield instance


async def resolve(hub: Hub, tenant: str, addresses: list[tuple[str, str]], **kwargs: Any) -> LinkOutcome:
    info = await hub.tenants.get(tenant)
    async with hub.db.sessions.begin() as session:
        return await link(session, info, addresses, **kwargs)


async def rows(hub: Hub, model: Any, *where: Any) -> list[Any]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(model).where(*where).order_by(model.id))).all())


async def count(hub: Hub, model: Any, *where: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# Class -> (tenant, the address as first stored, other ways the same person's number arrives).
SAME_PERSON: dict[str, tuple[str, str, list[str]]] = {
    "text around the number": ("es", "+34612345678", [
        "Móvil: 612 34 56 78", "Tel. 612345678", "WhatsApp: +34 612 34 56 78", "'612345678", '="+34612345678"',
        "++34 612 345 678", "612 34 56 78 (móvil)",
    ]),
    "invisible characters": ("mx", "+525512345678", [
        "\u202a+52 1 55 1234 5678\u202c", "55\u200b1234\u200b5678", "\ufeff5512345678", "\u200e+52 55 1234 5678\u200f",
        "55\u00a01234\u00a05678", "\u2066+525512345678\u2069",
    ]),
    "letters": ("us", "+18883368478", [
        "1-888-DENTIST", "(888) DENTIST", "+1 888 336 8478", "888-336-8478", "1 888 DEN TIST",
    ]),
    "legacy notations (Brazil)": ("es", "+5521987654321", [
        "(0xx21) 98765-4321", "(0XX21) 8765-4321", "+55 21 98765 4321", "5521987654321", "0xx 21 98765 4321",
    ]),
    "legacy notations (Argentina)": ("ar", "+5492615551234", [
        "+54 9 261 15 555-1234", "0261 15 555-1234", "+54 261 555 1234", "5492615551234", "261 15 555 1234",
    ]),
    "own country code without +": ("de", "+4917655512345", [
        "4917655512345", "49 176 55512345", "0176 55512345", "+49 176 555 123 45", "0049 176 55512345",
    ]),
}

# Class -> (tenant, raw, reason): refused, and nothing stored.
REFUSED: dict[str, list[tuple[str, str, str]]] = {
    "text around the number": [("es", "llamar al 612345678", "not a number"), ("es", "Móvil:", "empty"),
                               ("es", "Tel. 612 345", "too short"), ("es", "Fax 612345678", "not a number"),
                               ("es", "'", "empty")],
    "invisible characters": [("mx", "\u200b", "empty"), ("mx", "\u202a55 1234\u202c", "too short"),
                             ("es", "\u2066+34 000 000 000\u2069", "invalid number"), ("mx", "\ufeff", "empty"),
                             ("es", "\u200e612\u200f", "too short")],
    "letters": [("es", "+34 6l2 345 678", "letters"), ("es", "6I2 345 678", "letters"),
                ("mx", "+52 55 I234 5678", "letters"), ("us", "+1 8OO 555 0123", "letters"),
                ("es", "+44 800 FLOWERS", "letters")],
    "legacy notations": [("br", "(0xx1) 98765-4321", "letters"), ("br", "(0xx21) 98765", "too short"),
                         ("ar", "+54 9 11 15 2345-678", "too long"), ("br", "(0xx10) 98765-4321", "invalid number"),
                         ("ar", "+54 9 261 15 555 12345", "too long")],
    "own country code without +": [("it", "3907047258", "ambiguous"), ("de", "4912", "invalid number"),
                                   ("es", "34 600 123 45", "too short"), ("es", "34 600 123 4567", "too long"),
                                   ("it", "39 0704 7258", "ambiguous")],
}


@pytest.mark.parametrize("cls", list(SAME_PERSON))
async def test_every_way_of_writing_one_number_links_to_one_contact(hub: Hub, cls: str) -> None:
    tenant, stored, forms = SAME_PERSON[cls]
    assert len(forms) >= 5
    first = await resolve(hub, tenant, [("phone", stored)])
    for form in forms:
        again = await resolve(hub, tenant, [("phone", form)])
        assert (again.contact.id, again.created, again.added) == (first.contact.id, False, []), form
    assert await count(hub, Contact) == 1
    assert await count(hub, Identity) == 1


@pytest.mark.parametrize("cls", list(REFUSED))
async def test_refused_numbers_store_nothing_and_say_why(hub: Hub, cls: str) -> None:
    assert len(REFUSED[cls]) >= 5
    for tenant, raw, reason in REFUSED[cls]:
        with pytest.raises(InvalidAddress) as caught:
            await resolve(hub, tenant, [("email", "ana@example.com"), ("phone", raw)])
        assert caught.value.reason == reason, raw
    assert await count(hub, Contact) == 0
    assert await count(hub, Identity) == 0


# (first address, a later one of the same person, the value stored in the end)
ARGENTINA: list[tuple[str, str, str]] = [
    ("+54 341 555 0123", "5493415550123", "+5493415550123"),  # SMS, then WhatsApp: the 9 is learnt
    ("5493415550123", "+54 341 555 0123", "+5493415550123"),  # WhatsApp first: the 9 is kept
    ("0351 422-0000", "+54 9 351 422 0000", "+5493514220000"),
    ("+54 11 2345-6789", "011 15 2345-6789", "+5491123456789"),  # national 15 marks the mobile
    ("+54 223 456 7890", "+54 223 456 7890", "+542234567890"),  # never said to be a mobile: as written
]


@pytest.mark.parametrize(("first", "later", "stored"), ARGENTINA)
async def test_argentine_numbers_match_with_or_without_the_9(hub: Hub, first: str, later: str, stored: str) -> None:
    one = await resolve(hub, "ar", [("phone", first)])
    two = await resolve(hub, "es", [("phone", stored)])  # another tenant is another person
    again = await resolve(hub, "ar", [("phone", later)])
    assert again.contact.id == one.contact.id and again.added == []
    assert two.contact.id != one.contact.id
    assert [(i.kind, i.value) for i in again.identities] == [("phone", stored)]
    assert [i.value for i in await rows(hub, Identity, Identity.contact_id == one.contact.id)] == [stored]


async def test_business_scoped_id_is_its_own_identity_and_links_to_the_phone_when_vouched(hub: Hub) -> None:
    phoneless = await resolve(hub, "es", [("whatsapp_id", "whatsapp:US.13491208655302741918")], profile={"name": "Lucía"})
    imported = await resolve(hub, "es", [("phone", "612 34 56 78"), ("email", "lucia@example.com")])
    assert phoneless.contact.id != imported.contact.id
    # WhatsApp says the id and the number are one account: certain evidence, merged.
    vouched = await resolve(hub, "es", [("whatsapp_id", "US.13491208655302741918"), ("phone", "+34612345678")], certain=True)
    assert vouched.contact.id == phoneless.contact.id and vouched.merged == [imported.contact.id]
    assert sorted((i.kind, i.value) for i in await rows(hub, Identity, Identity.contact_id == phoneless.contact.id)) == [
        ("email", "lucia@example.com"), ("phone", "+34612345678"), ("whatsapp_id", "US.13491208655302741918"),
    ]


async def proposals(hub: Hub) -> list[tuple[int, int, str, str]]:
    return [(p.contact_id, p.other_contact_id, p.reason, p.status) for p in await rows(hub, MergeProposal)]


async def test_same_name_and_last_eight_digits_in_another_country_is_proposed(hub: Hub) -> None:
    spain = await resolve(hub, "es", [("phone", "+34 612 34 56 78")], profile={"name": "Ana Pérez"})
    other_name = await resolve(hub, "es", [("phone", "+52 55 1234 5678")], profile={"name": "Bea Ruiz"})
    mexico = await resolve(hub, "es", [("phone", "+52 33 1234 5678")], profile={"name": "ana pérez"})
    assert mexico.merged == [] and mexico.contact.id not in (spain.contact.id, other_name.contact.id)
    assert await proposals(hub) == [(spain.contact.id, mexico.contact.id, SAME_NAME_SAME_DIGITS, "open")]
    assert len(mexico.proposed) == 1


async def test_brazilian_eight_digit_id_beside_a_nine_digit_phone_is_proposed(hub: Hub) -> None:
    whatsapp = await resolve(hub, "br", [("phone", "whatsapp:+551134567890")])  # landline-looking: no 9 inferred
    mobile = await resolve(hub, "br", [("phone", "(11) 93456-7890")])
    assert mobile.contact.id != whatsapp.contact.id and mobile.merged == []
    assert await proposals(hub) == [(whatsapp.contact.id, mobile.contact.id, BRAZIL_NINTH_DIGIT, "open")]


async def test_two_emails_with_one_phone_is_proposed_not_merged(hub: Hub) -> None:
    home = await resolve(hub, "es", [("phone", "612345678"), ("email", "ana@example.com")])
    work = await resolve(hub, "es", [("email", "ana.perez@clinica.example")])
    booking = await resolve(hub, "es", [("email", "ana.perez@clinica.example"), ("phone", "+34 612 345 678")])
    assert booking.merged == [] and booking.contact.id == home.contact.id
    assert await proposals(hub) == [(home.contact.id, work.contact.id, CONFLICTING_IDENTITIES, "open")]
    assert {i.value: i.contact_id for i in await rows(hub, Identity)} == {
        "+34612345678": home.contact.id, "ana@example.com": home.contact.id, "ana.perez@clinica.example": work.contact.id,
    }
    # Certain evidence (the same address) still links: a new phone joins whichever contact it names.
    again = await resolve(hub, "es", [("email", "ana.perez@clinica.example"), ("phone", "611 22 33 44")])
    assert again.contact.id == work.contact.id and again.proposed == []


async def test_a_rejected_pair_stays_apart_whatever_evidence_comes(hub: Hub) -> None:
    home = await resolve(hub, "es", [("phone", "612345678"), ("email", "ana@example.com")])
    work = await resolve(hub, "es", [("email", "ana@clinica.example")])
    booking = await resolve(hub, "es", [("email", "ana@clinica.example"), ("phone", "612345678")])
    info = await hub.tenants.get("es")
    async with hub.db.sessions.begin() as session:
        await reject_proposal(session, info, booking.proposed[0])
    again = await resolve(hub, "es", [("email", "ana@clinica.example"), ("phone", "612345678")], certain=True)
    assert again.merged == [] and again.proposed == []
    assert await count(hub, Contact, Contact.merged_into_id.is_not(None)) == 0
    assert await proposals(hub) == [(home.contact.id, work.contact.id, CONFLICTING_IDENTITIES, "rejected")]
    async with hub.db.sessions.begin() as session:
        with pytest.raises(MergeError, match="already rejected"):
            await accept_proposal(session, info, booking.proposed[0])


async def test_an_accepted_merge_is_undone_with_everything_it_moved(hub: Hub) -> None:
    info = await hub.tenants.get("es")
    home = await resolve(hub, "es", [("phone", "612345678"), ("email", "ana@example.com")], profile={"name": "Ana"})
    work = await resolve(hub, "es", [("email", "ana@clinica.example")], profile={"locale": "en"})
    keep, other = home.contact.id, work.contact.id
    t1, t2 = (dt.datetime(2026, 5, day, 9, tzinfo=dt.UTC) for day in (1, 2))
    async with hub.db.sessions.begin() as session:
        kept_thread = Conversation(tenant_id=info.id, contact_id=keep, medium="whatsapp", channel="wa", last_inbound_at=t1)
        their_thread = Conversation(tenant_id=info.id, contact_id=other, medium="whatsapp", channel="wa", last_inbound_at=t2)
        their_email = Conversation(tenant_id=info.id, contact_id=other, medium="email", channel="smtp")
        session.add_all([kept_thread, their_thread, their_email])
        await session.flush()
        for thread, provider_id in ((kept_thread, "m1"), (their_thread, "m2"), (their_email, "m3")):
            session.add(Message(tenant_id=info.id, conversation_id=thread.id, direction="in", channel=thread.channel,
                                body=provider_id, provider_id=provider_id, status="received"))
        session.add(Appointment(tenant_id=info.id, contact_id=other, source="test", external_id="a1", start_at=t2, status="scheduled"))
        session.add(Notification(tenant_id=info.id, contact_id=other, kind="reminder", template="reminder", status="pending", due_at=t2))
        await session.flush()
        kept_thread_id, their_email_id = kept_thread.id, their_email.id
    booking = await resolve(hub, "es", [("email", "ana@clinica.example"), ("phone", "612345678")])
    async with hub.db.sessions.begin() as session:
        record = await accept_proposal(session, info, booking.proposed[0])
    assert (record.kept_contact_id, record.merged_contact_id) == (keep, other)
    assert {i.contact_id for i in await rows(hub, Identity)} == {keep}
    assert [(c.medium, c.contact_id) for c in await rows(hub, Conversation)] == [("whatsapp", keep), ("email", keep)]
    assert [c.locale for c in await rows(hub, Contact, Contact.id == keep)] == ["en"]

    async with hub.db.sessions.begin() as session:
        await unmerge(session, info, other)

    contacts = {c.id: c for c in await rows(hub, Contact)}
    assert contacts[other].merged_into_id is None and contacts[keep].locale is None
    assert {i.value: i.contact_id for i in await rows(hub, Identity)} == {
        "+34612345678": keep, "ana@example.com": keep, "ana@clinica.example": other,
    }
    threads = {(c.contact_id, c.medium): c for c in await rows(hub, Conversation)}
    assert set(threads) == {(keep, "whatsapp"), (other, "whatsapp"), (other, "email")}
    assert threads[(other, "email")].id == their_email_id and threads[(keep, "whatsapp")].id == kept_thread_id
    assert threads[(keep, "whatsapp")].last_inbound_at == t1 and threads[(other, "whatsapp")].last_inbound_at == t2
    owner = {m.provider_id: threads_key for m in await rows(hub, Message)
             for threads_key, c in threads.items() if c.id == m.conversation_id}
    assert owner == {"m1": (keep, "whatsapp"), "m2": (other, "whatsapp"), "m3": (other, "email")}
    assert [a.contact_id for a in await rows(hub, Appointment)] == [other]
    assert [n.contact_id for n in await rows(hub, Notification)] == [other]
    # The audit trail keeps the merge, marked undone; the pair is now known to be two people.
    [kept_record] = await rows(hub, ContactMerge)
    assert kept_record.undone_at is not None and kept_record.proposal_id == booking.proposed[0]
    again = await resolve(hub, "es", [("email", "ana@clinica.example"), ("phone", "612345678")], certain=True)
    assert again.merged == []
    async with hub.db.sessions.begin() as session:
        with pytest.raises(MergeError, match="was not merged"):
            await unmerge(session, info, other)


async def test_automatic_merges_are_undoable_too(hub: Hub) -> None:
    info = await hub.tenants.get("mx")
    by_phone = await resolve(hub, "mx", [("phone", "55 1234 5678")])
    by_chat = await resolve(hub, "mx", [("chatwoot", "42")])
    joined = await resolve(hub, "mx", [("chatwoot", "42"), ("phone", "+52 1 55 1234 5678")])
    assert joined.merged == [by_chat.contact.id]
    async with hub.db.sessions.begin() as session:
        await unmerge(session, info, by_chat.contact.id)
    assert {i.value: i.contact_id for i in await rows(hub, Identity)} == {
        "+525512345678": by_phone.contact.id, "42": by_chat.contact.id,
    }
