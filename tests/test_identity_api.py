"""Identity through the REST API: concurrent requests about one new person all succeed with one
contact (before linking was race-free, nine of ten failed with `UNIQUE constraint failed:
identities...`, a 500, on both databases), and WhatsApp business-scoped ids are addresses."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from hub.core import Hub
from hub.models import Appointment, Contact, Identity, Notification
from tests.test_api import auth, keys, later  # noqa: F401 - `keys` is a fixture

RACERS = 10


async def count(hub: Hub, model: Any, *where: Any) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_concurrent_puts_of_one_new_appointment_make_one_contact(client: Any, keys: dict[str, str], hub: Hub) -> None:
    payload = {"contact": {"name": "Ana", "phone": "+34 600 123 456", "email": "ana@example.com"}, "start": later(days=3)}
    responses = await asyncio.gather(*(
        client.put("/api/v1/appointments/race-1", json=payload, headers=auth(keys["clinic"])) for _ in range(RACERS)
    ))
    answers = [(r.status, await r.json()) for r in responses]
    assert sorted(status for status, _ in answers) == [200] * (RACERS - 1) + [201], answers
    assert {body["contact_id"] for _, body in answers} == {answers[0][1]["contact_id"]}
    assert await count(hub, Contact) == 1
    assert await count(hub, Identity) == 2
    assert await count(hub, Appointment) == 1
    assert await count(hub, Notification, Notification.kind == "confirmation") == 1


async def test_concurrent_sends_to_one_new_address_make_one_contact(client: Any, keys: dict[str, str], hub: Hub) -> None:
    responses = await asyncio.gather(*(
        client.post("/api/v1/notifications", json={"to": "611 22 33 44", "kind": "message", "data": {"text": f"Hola {n}"}},
                    headers=auth(keys["clinic"]))
        for n in range(RACERS)
    ))
    answers = [(r.status, await r.json()) for r in responses]
    assert [status for status, _ in answers] == [202] * RACERS, answers
    assert await count(hub, Contact) == 1
    assert await count(hub, Identity) == 1
    async with hub.db.sessions() as session:
        owners = set((await session.scalars(select(Notification.contact_id))).all())
    assert len(owners) == 1 and await count(hub, Notification) == RACERS


async def test_a_business_scoped_id_is_an_address_for_bookings_and_sends(client: Any, keys: dict[str, str], hub: Hub) -> None:
    booking = {"contact": {"name": "Lucía", "whatsapp": "US.13491208655302741918"}, "start": later(days=2)}
    response = await client.put("/api/v1/appointments/bsuid-1", json=booking, headers=auth(keys["clinic"]))
    assert response.status == 201, await response.text()
    contact_id = (await response.json())["contact_id"]
    sent = await client.post("/api/v1/notifications", headers=auth(keys["clinic"]),
                             json={"to": "whatsapp:US.13491208655302741918", "kind": "message", "data": {"text": "Hola"}})
    assert sent.status == 202
    async with hub.db.sessions() as session:
        identities = (await session.execute(select(Identity.contact_id, Identity.kind, Identity.value))).all()
        owner = await session.scalar(select(Notification.contact_id).where(Notification.id == (await sent.json())["id"]))
    assert [tuple(row) for row in identities] == [(contact_id, "whatsapp_id", "US.13491208655302741918")]
    assert owner == contact_id
