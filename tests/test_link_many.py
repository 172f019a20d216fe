"""`link_many`: a batch of link requests gives each one what `link` gives it, one by one in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.contacts import LinkOutcome, LinkRequest, link, link_many
from hub.core import Hub
from hub.models import Contact, ContactMerge, Identity, MergeProposal
from hub.phones import InvalidAddress
from hub.tenants import TenantInfo
from tests.conftest import make_config

# Two tenants alike: one links one by one, the other in a batch, from the same stored evidence.
TENANTS = {slug: {"name": slug, "default_region": "ES", "timezone": "UTC", "locale": "es"} for slug in ("one", "many")}

Req = LinkRequest
ANA = {"name": "Ana Pérez"}

# (case, evidence stored first (each a request linked alone), the batch)
CASES: list[tuple[str, list[LinkRequest], list[LinkRequest]]] = [
    ("new addresses", [], [Req([("phone", "612 34 56 78")]), Req([("email", "Bea@Example.com")], profile={"locale": "en"}),
                           Req([("phone", "whatsapp:+34 611 22 33 44")], profile=ANA)]),
    ("one new person twice, and in other forms", [], [
        Req([("phone", "+34 612 34 56 78")], profile=ANA), Req([("phone", "612345678")]), Req([("phone", "0034612345678")], profile=ANA),
    ]),
    ("a later request fills a gap of a new contact", [], [
        Req([("phone", "612345678")]), Req([("phone", "+34612345678")], profile={"name": "Ana"}), Req([("phone", "612345678")]),
    ]),
    ("known addresses", [Req([("phone", "612345678"), ("email", "ana@example.com")], profile=ANA)], [
        Req([("email", "ANA@example.com")]), Req([("phone", "+34 612 345 678")], profile={"name": "Other"}), Req([("phone", "699000111")]),
    ]),
    ("a known contact gets a profile gap filled", [Req([("phone", "612345678")]), Req([("email", "ana@example.com")])], [
        Req([("email", "ana@example.com")]), Req([("phone", "612345678")], profile={"name": "Ana", "timezone": "Europe/Madrid"}),
        Req([("phone", "612345678")]), Req([("email", "ana@example.com")], profile={"locale": "es"}),
    ]),
    ("several addresses in one request, beside simple ones", [Req([("phone", "612345678")]), Req([("email", "ana@example.com")])], [
        Req([("email", "ana@example.com")]), Req([("phone", "612345678"), ("email", "ana@example.com")]),
        Req([("phone", "612345678")]), Req([("email", "ana@example.com")]), Req([("email", "new@example.com")]),
        Req([("phone", "655555555"), ("email", "pair@example.com")]), Req([("phone", "655 555 555")]),
    ]),
    ("two contacts each with their own phone: proposed, not merged", [
        Req([("phone", "612345678"), ("email", "home@example.com")]), Req([("phone", "699999999"), ("email", "work@example.com")]),
    ], [Req([("email", "home@example.com"), ("email", "work@example.com")], reason="import"), Req([("email", "work@example.com")])]),
    ("certain evidence merges", [
        Req([("whatsapp_id", "whatsapp:US.13491208655302741918")], profile={"name": "Lucía"}),
        Req([("phone", "612 34 56 78"), ("email", "lucia@example.com")]),
    ], [Req([("email", "lucia@example.com")]),
        Req([("whatsapp_id", "US.13491208655302741918"), ("phone", "+34612345678")], certain=True),
        Req([("phone", "612345678")])]),
    ("same name, same last eight digits elsewhere: proposed", [Req([("phone", "+34 612 34 56 78")], profile=ANA)], [
        Req([("phone", "+52 33 1234 5678")], profile={"name": "ana pérez"}), Req([("phone", "+52 55 1234 5678")], profile={"name": "Bea"}),
        Req([("phone", "+52 33 1234 5678")]),
    ]),
    ("lookalikes inside the batch", [], [
        Req([("phone", "+34 612 34 56 78")], profile=ANA), Req([("phone", "+52 33 1234 5678")], profile=ANA),
        Req([("phone", "whatsapp:+551134567890")]), Req([("phone", "+55 11 93456-7890")]),
    ]),
    ("brazilian twin stored before", [Req([("phone", "whatsapp:+551134567890")])], [Req([("phone", "+55 11 93456-7890")])]),
    ("argentine number learns its 9", [Req([("phone", "+54 341 555 0123")]), Req([("phone", "+54 11 2345 6789")])], [
        Req([("phone", "5493415550123")]), Req([("phone", "+54 341 555 0123")]),
        Req([("phone", "+54 11 2345 6789")]), Req([("phone", "+54 9 11 2345 6789")]),
    ]),
    ("a long batch", [Req([("phone", f"+3460000{i:04d}")]) for i in range(0, 40, 4)],
     [Req([("phone", f"+3460000{i % 60:04d}")], profile={"name": f"n{i % 7}"} if i % 5 == 0 else None) for i in range(150)]
     + [Req([("email", f"p{i}@example.com")]) for i in range(30)]),
]


@pytest.fixture
async def twin_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    instance = Hub.build(make_config(database_url, record_file=tmp_path / "records.jsonl", tenants=TENANTS))
    async with instance.running():
        yield instance


async def link_each(hub: Hub, tenant: TenantInfo, requests: list[LinkRequest]) -> list[LinkOutcome]:
    async with hub.db.sessions.begin() as session:
        return [await link(session, tenant, r.addresses, profile=r.profile, reason=r.reason, certain=r.certain) for r in requests]


async def link_batch(hub: Hub, tenant: TenantInfo, requests: list[LinkRequest]) -> list[LinkOutcome]:
    async with hub.db.sessions.begin() as session:
        return await link_many(session, tenant, requests)


class Names:
    """Contact ids as the order they first appear in, so two tenants' outcomes compare."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def __call__(self, contact_id: int | None) -> int | None:
        return None if contact_id is None else self.ids.setdefault(contact_id, len(self.ids))


def shape(outcome: LinkOutcome, name: Names) -> tuple[Any, ...]:
    contact = outcome.contact
    return (name(contact.id), contact.name, contact.locale, contact.timezone, [(i.kind, i.value) for i in outcome.identities],
            [(i.kind, i.value) for i in outcome.added], [name(m) for m in outcome.merged], outcome.created, len(outcome.proposed))


async def stored(hub: Hub, tenant: TenantInfo, name: Names) -> dict[str, Any]:
    async with hub.db.sessions() as session:
        contacts = (await session.scalars(select(Contact).where(Contact.tenant_id == tenant.id).order_by(Contact.id))).all()
        identities = (await session.scalars(select(Identity).where(Identity.tenant_id == tenant.id).order_by(Identity.kind, Identity.value))).all()
        proposals = (await session.scalars(select(MergeProposal).where(MergeProposal.tenant_id == tenant.id))).all()
        merges = await session.scalar(select(func.count()).select_from(ContactMerge).where(ContactMerge.tenant_id == tenant.id))
    return {
        "contacts": sorted((name(c.id), c.name, c.locale, c.timezone, name(c.merged_into_id)) for c in contacts),
        "identities": [(i.kind, i.value, name(i.contact_id)) for i in identities],
        "proposals": sorted((name(p.contact_id), name(p.other_contact_id), p.reason) for p in proposals),
        "merges": merges,
    }


@pytest.mark.parametrize(("case", "before", "batch"), CASES, ids=[case for case, _, _ in CASES])
async def test_a_batch_links_as_one_by_one_would(twin_hub: Hub, case: str, before: list[LinkRequest], batch: list[LinkRequest]) -> None:
    one, many = await twin_hub.tenants.get("one"), await twin_hub.tenants.get("many")
    results = []
    for tenant, run in ((one, link_each), (many, link_batch)):
        name = Names()
        seeded = await link_each(twin_hub, tenant, before)
        outcomes = await run(twin_hub, tenant, batch)
        results.append(([shape(o, name) for o in seeded], [shape(o, name) for o in outcomes], await stored(twin_hub, tenant, name)))
    assert results[1] == results[0]
    assert len(results[1][1]) == len(batch)


async def test_two_requests_for_one_new_person_make_one_contact(twin_hub: Hub) -> None:
    many = await twin_hub.tenants.get("many")
    first, second = await link_batch(twin_hub, many, [Req([("phone", "+34 612 34 56 78")]), Req([("phone", "612345678")])])
    assert first.created and not second.created
    assert first.contact.id == second.contact.id and second.added == []
    assert first.identities == second.identities
    async with twin_hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact).where(Contact.tenant_id == many.id)) == 1


@pytest.mark.parametrize(("batch", "error"), [
    ([Req([("phone", "612345678")]), Req([])], "link needs at least one address"),
    ([Req([("phone", "612345678")]), Req([("phone", "611111111")], profile={"age": 3})], "unknown profile field 'age'"),
    ([Req([("phone", "612345678")]), Req([("phone", "not a number")])], None),
])
async def test_a_bad_request_fails_the_batch_before_anything_is_written(twin_hub: Hub, batch: list[LinkRequest], error: str | None) -> None:
    many = await twin_hub.tenants.get("many")
    with pytest.raises(InvalidAddress if error is None else ValueError) as raised:
        async with twin_hub.db.sessions.begin() as session:
            await link_many(session, many, batch)
            raise AssertionError("link_many accepted a bad request")
    if error is not None:
        assert str(raised.value) == error
    async with twin_hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Identity)) == 0


async def test_a_batch_and_a_plain_link_racing_for_one_person_make_one_contact(twin_hub: Hub) -> None:
    many = await twin_hub.tenants.get("many")
    batch = [Req([("phone", f"+3461100{i:04d}")]) for i in range(50)] + [Req([("phone", "+34 699 12 34 56")], profile=ANA)]

    async def plain() -> LinkOutcome:
        async with twin_hub.db.sessions.begin() as session:
            return await link(session, many, [("phone", "699123456"), ("email", "ana@example.com")])

    outcomes, alone = await asyncio.gather(link_batch(twin_hub, many, batch), plain())
    assert outcomes[-1].contact.id == alone.contact.id
    assert outcomes[-1].created != alone.created
    async with twin_hub.db.sessions() as session:
        owners = dict((await session.execute(select(Identity.value, Identity.contact_id).where(Identity.tenant_id == many.id))).all())
        contacts = await session.scalar(select(func.count()).select_from(Contact).where(Contact.tenant_id == many.id))
    assert owners["+34699123456"] == owners["ana@example.com"] == alone.contact.id
    assert contacts == 51
    assert len({o.contact.id for o in outcomes}) == 51
