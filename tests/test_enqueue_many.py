"""`enqueue_many`: a batch of notification requests gets what `enqueue` gives each, one by one in order."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.contacts import link
from hub.core import Hub
from hub.models import Identity, Notification
from hub.notifications import NotificationRequest
from hub.outbox import Enqueued, enqueue, enqueue_many
from hub.tenants import TenantInfo
from tests.conftest import make_config

TENANTS = {slug: {"name": slug, "default_region": "ES", "timezone": "UTC", "locale": "es"} for slug in ("one", "many")}
LATER = dt.datetime(2031, 5, 4, 10, 0, tzinfo=dt.UTC)
SEEDED = ["+34612000001", "ana@example.com"]  # contacts made before each case; `contact_id=-1 - k` names the k-th

N = NotificationRequest
# (case, requests queued before (one by one), the batch)
CASES: list[tuple[str, list[NotificationRequest], list[NotificationRequest]]] = [
    ("new and known addresses", [], [
        N("message", address="612 34 56 78", data={"text": "a"}), N("message", address="ANA@example.com"),
        N("reminder", address="whatsapp:+34 611 22 33 44", send_at=LATER, channel_order=("whatsapp", "sms")),
    ]),
    ("one new person twice, by id and by address", [], [
        N("message", address="+34 699 00 00 01"), N("message", address="699000001", template="other", locale="en"),
        N("message", contact_id=-1), N("message", contact_id=-2, expires_at=LATER),
    ]),
    ("idempotency keys stored, repeated in the batch, and new", [N("message", address="612000001", idempotency_key="k1")], [
        N("message", address="612000002", idempotency_key="k1"), N("message", address="612000003", idempotency_key="k2"),
        N("message", address="612000004", idempotency_key="k2"), N("message", address="612000005"),
        N("message", contact_id=-1, idempotency_key="k3"), N("message", address="612000006", idempotency_key="k3"),
        N("message", address="612000007"),
    ]),
    ("a long batch", [N("message", address=f"+3460000{i:04d}", idempotency_key=f"seed{i}") for i in range(0, 30, 3)], [
        N("message", address=f"+3460000{i % 40:04d}", idempotency_key=f"seed{i}" if i % 4 == 0 else None, data={"i": i})
        for i in range(120)
    ]),
]


@pytest.fixture
async def twin_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    instance = Hub.build(make_config(database_url, record_file=tmp_path / "records.jsonl", tenants=TENANTS))
    async with instance.running():
        yield instance


def bind(request: NotificationRequest, seeded: list[int]) -> NotificationRequest:
    """The request with its placeholder contact id replaced by the tenant's seeded contact."""
    if request.contact_id is None:
        return request
    return dataclasses.replace(request, contact_id=seeded[-1 - request.contact_id])


class Names:
    """Ids as the order they first appear in, so two tenants' answers compare."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, int], int] = {}

    def __call__(self, kind: str, row_id: int | None) -> int | None:
        return None if row_id is None else self.ids.setdefault((kind, row_id), len([k for k in self.ids if k[0] == kind]))


def shape(queued: Enqueued, name: Names) -> tuple[Any, ...]:
    linked = queued.link
    return (name("n", queued.id), queued.status, queued.created,
            None if linked is None else (name("c", linked.contact.id), [(i.kind, i.value) for i in linked.added], linked.created))


async def stored(hub: Hub, tenant: TenantInfo, name: Names) -> list[tuple[Any, ...]]:
    async with hub.db.sessions() as session:
        rows = (await session.scalars(select(Notification).where(Notification.tenant_id == tenant.id).order_by(Notification.id))).all()
        owners = dict((await session.execute(select(Identity.contact_id, Identity.value).where(Identity.tenant_id == tenant.id))).all())
    return sorted(
        (name("n", r.id), owners.get(r.contact_id or 0), r.address, r.kind, r.template, r.data, r.locale, r.channel_order, r.idempotency_key,
         r.status, [h["status"] for h in r.status_history], r.due_at == LATER, r.expires_at, r.attempts)
        for r in rows
    )


@pytest.mark.parametrize(("case", "before", "batch"), CASES, ids=[case for case, _, _ in CASES])
async def test_a_batch_is_queued_as_one_by_one_would_queue_it(
    twin_hub: Hub, case: str, before: list[NotificationRequest], batch: list[NotificationRequest]
) -> None:
    results = []
    for slug in ("one", "many"):
        tenant = await twin_hub.tenants.get(slug)
        name = Names()
        async with twin_hub.db.sessions.begin() as session:
            seeded = [(await link(session, tenant, [("email" if "@" in a else "phone", a)])).contact.id for a in SEEDED]
            for request in before:
                await enqueue(session, tenant, bind(request, seeded))
        for contact_id in seeded:
            name("c", contact_id)
        requests = [bind(r, seeded) for r in batch]
        async with twin_hub.db.sessions.begin() as session:
            if slug == "one":
                answers = [await enqueue(session, tenant, r) for r in requests]
            else:
                answers = await enqueue_many(session, tenant, requests)
        results.append(([shape(a, name) for a in answers], await stored(twin_hub, tenant, name)))
    assert results[1] == results[0]
    assert len(results[1][0]) == len(batch)


async def test_a_key_repeated_inside_the_batch_is_one_notification(twin_hub: Hub) -> None:
    tenant = await twin_hub.tenants.get("many")
    async with twin_hub.db.sessions.begin() as session:
        first, again, other = await enqueue_many(session, tenant, [
            N("message", address="612345678", idempotency_key="same"), N("message", address="699999999", idempotency_key="same"),
            N("message", address="699999999"),
        ])
    assert (first.created, again.created, other.created) == (True, False, True)
    assert again.id == first.id and again.link is None and other.id != first.id
    async with twin_hub.db.sessions() as session:
        rows = (await session.execute(select(Notification.idempotency_key, Notification.address))).all()
    assert sorted(rows, key=str) == sorted([("same", "612345678"), (None, "699999999")], key=str)


async def test_a_request_without_recipient_fails_the_batch_naming_it(twin_hub: Hub) -> None:
    tenant = await twin_hub.tenants.get("many")
    with pytest.raises(ValueError, match="request 1: a notification needs a contact_id or an address"):
        async with twin_hub.db.sessions.begin() as session:
            await enqueue_many(session, tenant, [N("message", address="612345678"), N("message")])
    async with twin_hub.db.sessions() as session:
        assert (await session.execute(select(Notification.id))).all() == []


async def test_a_batch_racing_a_single_enqueue_for_one_key_queues_it_once(twin_hub: Hub) -> None:
    tenant = await twin_hub.tenants.get("many")
    batch = [N("message", address=f"+3461100{i:04d}") for i in range(100)] + [N("message", address="612345678", idempotency_key="raced")]

    async def many() -> list[Enqueued]:
        async with twin_hub.db.sessions.begin() as session:
            return await enqueue_many(session, tenant, batch)

    async def one() -> Enqueued:
        async with twin_hub.db.sessions.begin() as session:
            return await enqueue(session, tenant, N("message", address="+34 612 34 56 78", idempotency_key="raced"))

    answers, single = await asyncio.gather(many(), one())
    assert answers[-1].id == single.id and answers[-1].created != single.created
    async with twin_hub.db.sessions() as session:
        keyed = (await session.scalars(select(Notification.id).where(Notification.idempotency_key == "raced"))).all()
        total = len((await session.execute(select(Notification.id))).all())
    assert list(keyed) == [single.id] and total == 101
