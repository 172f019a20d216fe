"""POST /api/v1/notifications/batch: many notifications in one transaction, all queued or none."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from hub.core import Hub
from hub.models import Contact, Notification
from hub.tenants import issue_api_key
from tests.conftest import read_records
from tests.test_api import auth, later
from tests.test_dispatch import drain

URL = "/api/v1/notifications/batch"


@pytest.fixture
async def keys(hub: Hub) -> dict[str, str]:
    found = {}
    async with hub.db.sessions.begin() as session:
        for slug in ("clinic", "salon"):
            found[slug] = await issue_api_key(session, (await hub.tenants.get(slug)).id)
    return found


async def queued(hub: Hub) -> int:
    async with hub.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Notification)) or 0)


def message(to: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "message", "to": to, "data": {"text": text}, **extra}


async def test_a_batch_is_queued_and_sent_with_an_answer_per_item(client: Any, keys: dict[str, str], hub: Hub, record_file: Any) -> None:
    first = await client.post("/api/v1/notifications", json=message("+34 600 123 456", "before"), headers=auth(keys["clinic"]))
    contact_id = (await client.get(f"/api/v1/notifications/{(await first.json())['id']}", headers=auth(keys["clinic"])))
    known = (await contact_id.json())["contact_id"]
    batch = [
        message("+34 600 111 222", "one"),
        message("whatsapp:+34 600 777 888", "two", channels=["sms"]),
        {"kind": "message", "contact_id": known, "data": {"text": "three"}, "send_at": later(seconds=-1)},
        message("600 111 222", "four", idempotency_key="order-1"),
    ]
    response = await client.post(URL, json={"notifications": batch}, headers=auth(keys["clinic"]))
    assert response.status == 202, await response.text()
    items = (await response.json())["notifications"]
    assert [(i["index"], i["status"], i["created"]) for i in items] == [(n, "pending", True) for n in range(4)]
    assert len({i["id"] for i in items}) == 4
    await drain(hub)
    sent = {}
    for item in items:
        body = await (await client.get(f"/api/v1/notifications/{item['id']}", headers=auth(keys["clinic"]))).json()
        sent[item["index"]] = (body["status"], body["messages"][0]["body"], body["contact_id"])
    assert [status for status, _, _ in sent.values()] == ["sandboxed"] * 4
    assert [text for _, text, _ in sent.values()] == ["one", "two", "three", "four"]
    # The same number in two forms is one contact; the known contact is the one it was.
    assert sent[0][2] == sent[3][2] and sent[2][2] == known and len({c for _, _, c in sent.values()}) == 3
    linked = [r for r in read_records(record_file) if r.get("hook") == "on_contact_linked"]
    assert sorted(r["value"] for r in linked) == ["+34600111222", "+34600123456", "+34600777888"]


async def test_keys_answer_a_retried_batch_and_repeats_inside_one(client: Any, keys: dict[str, str], hub: Hub) -> None:
    batch = [message("+34600111222", "a", idempotency_key="k1"), message("+34600333444", "b", idempotency_key="k1"),
             message("+34600555666", "c")]
    first = await (await client.post(URL, json={"notifications": batch}, headers=auth(keys["clinic"]))).json()
    ids = [i["id"] for i in first["notifications"]]
    assert ids[0] == ids[1] and ids[2] != ids[0]
    assert [i["created"] for i in first["notifications"]] == [True, False, True]
    again = await (await client.post(URL, json={"notifications": batch[:2]}, headers=auth(keys["clinic"]))).json()
    assert [(i["id"], i["created"]) for i in again["notifications"]] == [(ids[0], False), (ids[0], False)]
    # A key is per tenant, and it names the same notification as POST /notifications's Idempotency-Key.
    other = await (await client.post(URL, json={"notifications": batch[:1]}, headers=auth(keys["salon"]))).json()
    assert other["notifications"][0]["id"] not in ids and other["notifications"][0]["created"] is True
    single = await client.post("/api/v1/notifications", json=message("+34600111222", "a"), headers=auth(keys["clinic"], **{"Idempotency-Key": "k1"}))
    assert single.status == 202 and (await single.json())["id"] == ids[0]
    assert await queued(hub) == 3


@pytest.mark.parametrize(("items", "field", "index", "reason"), [
    ([message("+34600111222", "ok"), message("12", "bad")], "notifications[1].to", 1, "too short"),
    ([message("+34600111222", "ok", channels=["fax"])], "notifications[0].channels", 0, "unknown channel or medium 'fax'"),
    ([message("+34600111222", "ok"), {"kind": "no_such_template", "to": "+34600111222"}], "notifications[1].kind", 1,
     "no template named 'no_such_template' (see `hub templates list`)"),
    ([message("+34600111222", "ok"), {"kind": "message", "contact_id": 999999}], "notifications[1].contact_id", 1, "no such contact"),
    ([message("+34600111222", "ok"), {"kind": "Bad Kind!", "to": "+34600111222"}], "notifications[1].kind", 1,
     "String should match pattern '^[a-z0-9_\\-]+$'"),
    ([{"kind": "message"}], "notifications[0].body", 0, "give exactly one of contact_id and to"),
    ([message("+34600111222", "ok", surprise=1)], "notifications[0].surprise", 0, "Extra inputs are not permitted"),
    ([message("+34600111222", "ok", idempotency_key="")], "notifications[0].idempotency_key", 0, "String should have at least 1 character"),
    ([], "notifications", None, "List should have at least 1 item after validation, not 0"),
    ([message("+34600111222", "x")] * 1001, "notifications", None, "List should have at most 1000 items after validation, not 1001"),
])
async def test_a_refused_item_refuses_the_batch_naming_index_and_field(
    client: Any, keys: dict[str, str], hub: Hub, items: list[dict[str, Any]], field: str, index: int | None, reason: str
) -> None:
    response = await client.post(URL, json={"notifications": items}, headers=auth(keys["clinic"]))
    assert response.status == 422
    body = await response.json()
    assert (body["error"], body["field"], body["index"], body["reason"]) == ("validation_failed", field, index, reason)
    assert body["errors"][0] == {"index": index, "field": field, "reason": reason}
    assert await queued(hub) == 0
    async with hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0


@pytest.mark.parametrize(("items", "listed"), [
    # The schema is checked first, over the whole batch ...
    ([message("+34600111222", "a", surprise=1), message("+34600111222", "b"), {"kind": "x Y", "to": "+34600111222"}],
     [(0, "notifications[0].surprise"), (2, "notifications[2].kind")]),
    # ... then what the hub refuses, item by item.
    ([message("12", "a"), message("+34600111222", "b"), message("+34600111222", "c", channels=["fax"])],
     [(0, "notifications[0].to"), (2, "notifications[2].channels")]),
])
async def test_every_refused_item_is_listed(client: Any, keys: dict[str, str], hub: Hub, items: list[dict[str, Any]],
                                            listed: list[tuple[int, str]]) -> None:
    body = await (await client.post(URL, json={"notifications": items}, headers=auth(keys["clinic"]))).json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == listed
    assert (body["index"], body["field"]) == listed[0]
    assert await queued(hub) == 0


@pytest.mark.parametrize(("payload", "headers", "status", "field"), [
    ({"notifications": [message("+34600111222", "a")]}, {"Idempotency-Key": "whole"}, 422, "Idempotency-Key"),
    ({"notifications": {"kind": "message"}}, {}, 422, "notifications"),
    ([message("+34600111222", "a")], {}, 422, "body"),
])
async def test_a_malformed_batch_is_a_4xx(client: Any, keys: dict[str, str], hub: Hub, payload: Any, headers: dict[str, str],
                                          status: int, field: str) -> None:
    response = await client.post(URL, json=payload, headers=auth(keys["clinic"], **headers))
    assert response.status == status and (await response.json())["field"] == field
    assert await queued(hub) == 0


async def test_another_tenants_contact_is_no_such_contact(client: Any, keys: dict[str, str], hub: Hub) -> None:
    made = await (await client.post(URL, json={"notifications": [message("+34600111222", "a")]}, headers=auth(keys["salon"]))).json()
    async with hub.db.sessions() as session:
        salon_contact = await session.scalar(select(Notification.contact_id).where(Notification.id == made["notifications"][0]["id"]))
    response = await client.post(URL, json={"notifications": [{"kind": "message", "contact_id": salon_contact}]}, headers=auth(keys["clinic"]))
    assert response.status == 422 and (await response.json())["field"] == "notifications[0].contact_id"
    assert await queued(hub) == 1


async def test_the_openapi_document_describes_the_batch(client: Any) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    route = document["paths"]["/notifications/batch"]["post"]
    assert set(route["responses"]) >= {"202", "422", "401"}
    schema = document["components"]["schemas"]["NotificationBatchIn"]
    assert schema["properties"]["notifications"]["maxItems"] == 1000
    assert "idempotency_key" in document["components"]["schemas"]["BatchNotificationIn"]["properties"]
