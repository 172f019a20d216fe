"""Booking ingestion under load: concurrent PUTs, the batch endpoint and `hub appointments import`."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.core import Hub
from hub.models import Appointment, Notification, utcnow
from hub.tenants import issue_api_key


@pytest.fixture
async def key(hub: Hub) -> str:
    async with hub.db.sessions.begin() as session:
        return await issue_api_key(session, (await hub.tenants.get("clinic")).id)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def booking(number: int, *, days: int = 5, phone: int | None = None) -> dict[str, Any]:
    start = (utcnow() + dt.timedelta(days=days, hours=number % 7)).replace(microsecond=0)
    person = number if phone is None else phone
    return {
        "contact": {"name": f"Cliente {person}", "phone": f"+34 600 100 {person:03d}"},
        "start": start.isoformat(),
        "end": (start + dt.timedelta(minutes=30)).isoformat(),
        "service": "Limpieza",
    }


async def stored(hub: Hub) -> dict[str, tuple[int, int]]:
    """external id -> (reminders, confirmations) of every appointment."""
    async with hub.db.sessions() as session:
        appointments = (await session.execute(select(Appointment.id, Appointment.external_id))).all()
        kinds = (
            await session.execute(
                select(Notification.appointment_id, Notification.kind, func.count()).group_by(Notification.appointment_id, Notification.kind)
            )
        ).all()
    counts = {(a, k): n for a, k, n in kinds}
    return {external: (counts.get((id_, "reminder"), 0), counts.get((id_, "confirmation"), 0)) for id_, external in appointments}


async def test_sixteen_concurrent_new_bookings_are_all_stored_and_never_answered_5xx(client: Any, hub: Hub, key: str) -> None:
    statuses: list[int] = []
    for round_ in range(4):
        # Every fourth booking is by someone who booked in the same round: their links race too.
        bodies = {f"c-{round_}-{i}": booking(i, phone=round_ * 16 + (i if i % 4 else 0)) for i in range(16)}
        answers = await asyncio.gather(
            *(client.put(f"/api/v1/appointments/{external}", json=body, headers=auth(key)) for external, body in bodies.items())
        )
        statuses += [answer.status for answer in answers]
    assert statuses == [201] * 64
    found = await stored(hub)
    assert len(found) == 64
    assert set(found.values()) == {(3, 1)}  # the tenant's plan: 24h, 2h, 30m, and one confirmation


async def test_concurrent_puts_answer_each_as_if_alone_and_a_bad_one_holds_nobody_back(client: Any, hub: Hub, key: str) -> None:
    # Concurrent PUTs share transactions (a group commit): each must still get its own answer,
    # and one request the hub refuses must not fail the others written with it.
    first = [client.put(f"/api/v1/appointments/g-{i}", json=booking(i), headers=auth(key)) for i in range(12)]
    bad = client.put("/api/v1/appointments/g-bad", json={**booking(50), "contact": {"phone": "+34 12"}}, headers=auth(key))
    twice = [client.put("/api/v1/appointments/g-twice", json=booking(60), headers=auth(key)) for _ in range(3)]
    answers = await asyncio.gather(*first, bad, *twice)
    assert [a.status for a in answers[:12]] == [201] * 12
    refused = answers[12]
    assert refused.status == 422 and (await refused.json())["field"] == "contact.phone"
    assert sorted(a.status for a in answers[13:]) == [200, 200, 201]  # one created it, the others found it
    assert sorted([(await a.json())["change"] for a in answers[13:]]) == ["created", "unchanged", "unchanged"]
    ids = {(await a.json())["external_id"]: (await a.json())["id"] for a in answers[:12]}
    assert sorted(ids) == sorted(f"g-{i}" for i in range(12)) and len(set(ids.values())) == 12
    found = await stored(hub)
    assert "g-bad" not in found
    assert {external: found[external] for external in (*ids, "g-twice")} == {external: (3, 1) for external in (*ids, "g-twice")}
    moved = await asyncio.gather(*(client.put(f"/api/v1/appointments/g-{i}", json=booking(i, days=8), headers=auth(key)) for i in range(12)))
    assert {(await a.json())["change"] for a in moved} == {"rescheduled"}


async def salon_key(hub: Hub) -> str:
    async with hub.db.sessions.begin() as session:
        return await issue_api_key(session, (await hub.tenants.get("salon")).id)


async def summary(hub: Hub, tenant: str) -> dict[str, tuple[str, tuple[tuple[str, str, str], ...]]]:
    """external id -> (status, its notifications as (kind, key without the appointment id, status)) for one tenant."""
    info = await hub.tenants.get(tenant)
    async with hub.db.sessions() as session:
        appointments = (await session.execute(select(Appointment.id, Appointment.external_id, Appointment.status)
                                              .where(Appointment.tenant_id == info.id))).all()
        notifications = (await session.execute(select(Notification.appointment_id, Notification.kind, Notification.idempotency_key,
                                                      Notification.status).where(Notification.tenant_id == info.id,
                                                                                 Notification.kind != "webhook"))).all()
    found: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {}
    for id_, external, status in appointments:
        mine = sorted((kind, (key or "").replace(f":{id_}:", ":"), "queued" if state in ("pending", "sending", "sent", "sandboxed") else state)
                      for owner, kind, key, state in notifications if owner == id_)
        found[external] = (status, tuple(mine))
    return found


async def test_a_batch_stores_what_the_same_puts_one_by_one_store(client: Any, hub: Hub, key: str) -> None:
    salon = await salon_key(hub)
    moved, kept, dropped = booking(1), booking(2), booking(3)
    for tenant_key in (key, salon):  # the same history first, in both tenants
        for external, body in (("moved", moved), ("kept", kept), ("dropped", dropped)):
            assert (await client.put(f"/api/v1/appointments/{external}", json=body, headers=auth(tenant_key))).status == 201
    items = [
        ("new-1", booking(10)),
        ("new-2", booking(11, phone=10)),  # the same person as new-1
        ("moved", {**moved, "start": booking(1, days=9)["start"], "end": None}),
        ("kept", kept),
        ("dropped", {**dropped, "status": "canceled", "reason": "ill"}),
        ("new-1", {**booking(10), "service": "Revisión"}),  # again later in the batch: an update
        ("born-canceled", {**booking(12), "status": "canceled"}),
            ("new-3", booking(13, days=1)),
    ]
    response = await client.post("/api/v1/appointments/batch", headers=auth(key),
                                  json={"appointments": [{"external_id": e, **b} for e, b in items]})
    assert response.status == 200
    body = await response.json()
    assert [(r["index"], r["external_id"], r["change"]) for r in body["results"]] == [
        (0, "new-1", "created"), (1, "new-2", "created"), (2, "moved", "rescheduled"), (3, "kept", "unchanged"),
        (4, "dropped", "canceled"), (5, "new-1", "updated"), (6, "born-canceled", "canceled"), (7, "new-3", "created"),
    ]
    assert body["counts"] == {"created": 3, "rescheduled": 1, "unchanged": 1, "canceled": 2, "updated": 1}
    puts = []
    for external, item in items:
        answer = await client.put(f"/api/v1/appointments/{external}", json=item, headers=auth(salon))
        puts.append((await answer.json())["change"])
    assert puts == [r["change"] for r in body["results"]]
    assert await summary(hub, "clinic") == await summary(hub, "salon")
    assert body["results"][0]["contact_id"] == body["results"][1]["contact_id"]


async def test_resending_a_batch_changes_nothing_and_queues_nothing(client: Any, hub: Hub, key: str, record_file: Any) -> None:
    from tests.conftest import read_records

    batch = {"appointments": [{"external_id": f"b-{i}", **booking(i, phone=i % 5)} for i in range(40)]}
    first = await (await client.post("/api/v1/appointments/batch", json=batch, headers=auth(key))).json()
    assert first["counts"] == {"created": 40}
    assert all(len(r["notifications"]) == 4 for r in first["results"])
    before = await stored(hub)
    async with hub.db.sessions() as session:
        queued = await session.scalar(select(func.count()).select_from(Notification))
    again = await (await client.post("/api/v1/appointments/batch", json=batch, headers=auth(key))).json()
    assert again["counts"] == {"unchanged": 40}
    assert all(r["notifications"] == [] for r in again["results"])
    assert await stored(hub) == before and len(before) == 40 and set(before.values()) == {(3, 1)}
    async with hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Notification)) == queued
    # Hooks fire once per created appointment, as they do for the PUT.
    from tests.conftest import wait_for

    def created() -> list[Any]:
        return [r for r in read_records(record_file) if r["hook"] == "on_appointment_changed" and r["change"] == "created"]

    await wait_for(lambda: len(created()) >= 40)
    assert sorted(r["appointment_id"] for r in created()) == sorted(r["id"] for r in first["results"])


async def test_a_bad_item_is_named_and_the_others_are_stored(client: Any, hub: Hub, key: str) -> None:
    items = [
        {"external_id": "ok-1", **booking(1)},
        {"external_id": "bad-phone", **{**booking(2), "contact": {"phone": "12"}}},
        {"external_id": "bad-start", **{**booking(3), "start": "tomorrow"}},
        {**booking(4)},
        "not an object",
        {"external_id": "ok-2", **booking(5)},
    ]
    body = await (await client.post("/api/v1/appointments/batch", json={"appointments": items}, headers=auth(key))).json()
    errors = [(r["index"], r["field"]) for r in body["results"] if "error" in r]
    assert errors == [(1, "appointments.1.contact.phone"), (2, "appointments.2.start"), (3, "appointments.3.external_id"),
                      (4, "appointments.4.body")]
    assert body["counts"] == {"created": 2, "failed": 4}
    assert set(await stored(hub)) == {"ok-1", "ok-2"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ({}, "appointments"),
        ({"appointments": []}, "appointments"),
        ({"appointments": {"a": 1}}, "appointments"),
        ({"appointments": [{}] * 1001}, "appointments"),
        ({"appointments": [], "extra": 1}, "extra"),
    ],
)
async def test_a_batch_body_of_the_wrong_shape_is_422(client: Any, key: str, payload: Any, field: str) -> None:
    response = await client.post("/api/v1/appointments/batch", json=payload, headers=auth(key))
    assert response.status == 422
    assert (await response.json())["field"] == field


async def test_the_batch_endpoint_is_in_the_openapi_document(client: Any) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    operation = document["paths"]["/appointments/batch"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AppointmentBatchIn"}
    items = document["components"]["schemas"]["AppointmentBatchIn"]["properties"]["appointments"]
    assert items["maxItems"] == 1000 and "external_id" in document["components"]["schemas"]["AppointmentItem"]["required"]


async def test_migration_0017_remembers_the_ids_replaced_before_it(empty_database_url: str) -> None:
    """Bookings replaced before the table existed (ids kept only in data) are still found by their old id."""
    import json

    from sqlalchemy import text

    from hub.database import Database

    db = Database(empty_database_url)
    try:
        await db.upgrade("0014")
        now = utcnow().replace(tzinfo=None)  # raw SQL: the columns hold naive UTC
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO tenants (slug, name, default_region, timezone, locale, settings, created_at) "
                                    "VALUES ('clinic', 'Clinic', 'ES', 'Europe/Madrid', 'es', '{}', :now)"), {"now": now})
            tenant_id = (await conn.execute(text("SELECT id FROM tenants"))).scalar_one()
            for external_id, data in (("new-b", {"replaced_ids": ["old-a", "older"]}), ("plain", {"note": "replaced_ids"})):
                await conn.execute(text(
                    "INSERT INTO appointments (tenant_id, source, external_id, start_at, status, booked_at, data, created_at, updated_at) "
                    "VALUES (:tenant, 'calendly', :external, :now, 'scheduled', :now, :data, :now, :now)"
                ), {"tenant": tenant_id, "external": external_id, "now": now, "data": json.dumps(data)})
        await db.upgrade()
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT r.external_id, a.external_id FROM appointment_replacements r JOIN appointments a ON a.id = r.appointment_id "
                "ORDER BY r.external_id"
            ))).all()
        assert [tuple(row) for row in rows] == [("old-a", "new-b"), ("older", "new-b")]
    finally:
        await db.close()
