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
