"""The REST API: bearer keys per tenant, 422s that name the field, idempotent POSTs, appointments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.core import Hub
from hub.models import Notification, utcnow
from hub.tenants import issue_api_key
from tests.test_dispatch import drain


@pytest.fixture
async def keys(hub: Hub) -> dict[str, str]:
    found = {}
    async with hub.db.sessions.begin() as session:
        for slug in ("clinic", "salon"):
            found[slug] = await issue_api_key(session, (await hub.tenants.get(slug)).id)
    return found


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def later(**delta: float) -> str:
    return (utcnow() + dt.timedelta(**delta)).isoformat()


async def test_requests_without_a_valid_key_are_401(client: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = await client.get("/api/v1/contacts?phone=600123456", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"


async def test_post_and_get_notification(client: Any, keys: dict[str, str], hub: Hub) -> None:
    response = await client.post("/api/v1/notifications", json={"to": "+34 600 123 456", "kind": "message", "data": {"text": "Hola"}}, headers=auth(keys["clinic"]))
    assert response.status == 202
    created = await response.json()
    assert created["status"] == "pending" and isinstance(created["id"], int)
    await drain(hub)
    response = await client.get(f"/api/v1/notifications/{created['id']}", headers=auth(keys["clinic"]))
    body = await response.json()
    assert body["status"] == "sandboxed" and body["channel"] == "recorder-sms"
    assert [a["outcome"] for a in body["attempts"]] == ["sandboxed"]
    assert body["messages"][0]["body"] == "Hola"
    # Another tenant cannot see it, not even that it exists.
    other = await client.get(f"/api/v1/notifications/{created['id']}", headers=auth(keys["salon"]))
    assert other.status == 404


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"kind": "message"}, "body", "give exactly one of contact_id and to"),
        ({"kind": "message", "to": "12"}, "to", "too short"),
        ({"kind": "Bad Kind!", "to": "+34600123456"}, "kind", "String should match pattern '^[a-z0-9_\\-]+$'"),
        ({"kind": "message", "to": "+34600123456", "send_at": "2026-12-01T10:00:00"}, "send_at", "Input should have timezone info"),
        ({"kind": "message", "to": "+34600123456", "channels": ["fax"]}, "channels", "unknown channel or medium 'fax'"),
        ({"kind": "message", "contact_id": 999999}, "contact_id", "no such contact"),
        ({"kind": "message", "to": "+34600123456", "surprise": 1}, "surprise", "Extra inputs are not permitted"),
    ],
)
async def test_validation_errors_name_the_field(client: Any, keys: dict[str, str], payload: dict[str, Any], field: str, reason: str) -> None:
    response = await client.post("/api/v1/notifications", json=payload, headers=auth(keys["clinic"]))
    assert response.status == 422
    assert await response.json() == {"error": "validation_failed", "field": field, "reason": reason}


async def test_malformed_json_is_400(client: Any, keys: dict[str, str]) -> None:
    response = await client.post("/api/v1/notifications", data=b"{", headers=auth(keys["clinic"], **{"Content-Type": "application/json"}))
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_json"


async def test_idempotency_key_replays_the_first_answer(client: Any, keys: dict[str, str], hub: Hub) -> None:
    payload = {"to": "+34600123456", "kind": "message", "data": {"text": "once"}}
    headers = auth(keys["clinic"], **{"Idempotency-Key": "order-77"})
    first = await client.post("/api/v1/notifications", json=payload, headers=headers)
    await drain(hub)
    second = await client.post("/api/v1/notifications", json=payload, headers=headers)
    assert (first.status, second.status) == (202, 202)
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    clash = await client.post("/api/v1/notifications", json={**payload, "data": {"text": "other"}}, headers=headers)
    assert clash.status == 422 and (await clash.json())["field"] == "Idempotency-Key"
    # The same key from another tenant is that tenant's own.
    mine = await client.post("/api/v1/notifications", json=payload, headers=auth(keys["salon"], **{"Idempotency-Key": "order-77"}))
    assert mine.status == 202 and (await mine.json())["id"] != (await first.json())["id"]
    async with hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Notification)) == 2


async def test_appointment_lifecycle_drives_notifications(client: Any, keys: dict[str, str], hub: Hub) -> None:
    url = "/api/v1/appointments/booking-1"
    body = {
        "contact": {"name": "Ana", "phone": "600 123 456", "email": "Ana@Example.com"},
        "start": later(hours=26), "timezone": "Europe/Madrid", "service": "Limpieza", "location": "Calle Mayor 1",
    }
    created = await client.put(url, json=body, headers=auth(keys["clinic"]))
    assert created.status == 201
    appointment = await created.json()
    assert appointment["change"] == "created" and len(appointment["notifications"]) == 4  # confirmation + 3 reminders
    replay = await client.put(url, json=body, headers=auth(keys["clinic"]))
    assert replay.status == 200 and (await replay.json())["change"] == "unchanged" and (await replay.json())["notifications"] == []

    moved = await client.put(url, json={**body, "start": later(hours=50)}, headers=auth(keys["clinic"]))
    assert (await moved.json())["change"] == "rescheduled"
    canceled = await client.put(url, json={**body, "start": later(hours=50), "status": "canceled", "reason": "Enfermedad"}, headers=auth(keys["clinic"]))
    assert (await canceled.json())["change"] == "canceled"

    await drain(hub)  # the in-process worker races this test: let everything due settle
    contact = await (await client.get(f"/api/v1/contacts/{appointment['contact_id']}", headers=auth(keys["clinic"]))).json()
    by_kind: dict[str, list[str]] = {}
    for n in contact["notifications"]:
        by_kind.setdefault(n["kind"], []).append(n["status"])
    assert by_kind["reminder"] == ["canceled"] * 3  # never due: all canceled with the appointment
    assert by_kind["cancellation"] == ["sandboxed"]
    assert by_kind["confirmation"] in (["sandboxed"], ["canceled"])
    assert by_kind["reschedule"] in (["sandboxed"], ["canceled"])
    assert [i["value"] for i in contact["identities"]] == ["+34600123456", "ana@example.com"]
    assert contact["appointments"][0]["status"] == "canceled"
    found = await (await client.get("/api/v1/contacts?email=ANA@example.com", headers=auth(keys["clinic"]))).json()
    assert [c["id"] for c in found["contacts"]] == [appointment["contact_id"]]
    none = await (await client.get("/api/v1/contacts?email=ana@example.com", headers=auth(keys["salon"]))).json()
    assert none == {"contacts": []}


async def test_appointment_validation(client: Any, keys: dict[str, str]) -> None:
    base = {"contact": {"phone": "+34600123456"}, "start": later(hours=3)}
    cases = [
        ({**base, "contact": {"name": "x"}}, "body", "contact needs a phone, whatsapp or email"),
        ({**base, "start": "tomorrow"}, "start", "Input should be a valid datetime or date, input is too short"),
        ({**base, "end": later(hours=1)}, "body", "end must be after start"),
        ({**base, "status": "maybe"}, "status", "Input should be 'scheduled', 'canceled' or 'no_show'"),
        ({**base, "timezone": "Mars/Base"}, "timezone", "unknown timezone 'Mars/Base' (use an IANA name such as Europe/Madrid, or UTC)"),
        ({**base, "contact": {"phone": "12"}}, "contact.phone", "too short"),
        ({**base, "contact": {"email": "nope"}}, "contact.email", "invalid email"),
    ]
    for payload, field, reason in cases:
        response = await client.put("/api/v1/appointments/x1", json=payload, headers=auth(keys["clinic"]))
        assert response.status == 422, payload
        assert await response.json() == {"error": "validation_failed", "field": field, "reason": reason}


async def test_openapi_describes_every_route(client: Any) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/notifications", "/notifications/batch", "/notifications/{id}", "/appointments/{external_id}", "/contacts", "/contacts/{id}", "/openapi.json"}
    schema = document["components"]["schemas"]["AppointmentIn"]
    assert set(schema["required"]) == {"contact", "start"}
    assert document["components"]["schemas"]["ContactIn"]["properties"]["email"]
