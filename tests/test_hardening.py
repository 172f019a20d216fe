"""Issue 13, one test per class: what an attacker or a careless client sends gets a 4xx naming the field, never a 500."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from hub import OutboundMessage, PermanentError
from hub.core import Hub
from hub.tenants import issue_api_key
from plugins.smtp_email.message import build_message
from plugins.smtp_email.settings import Settings as SmtpSettings
from tests.conftest import config_document, write_toml


@pytest.fixture
async def key(hub: Hub) -> str:
    async with hub.db.sessions.begin() as session:
        return await issue_api_key(session, (await hub.tenants.get("clinic")).id)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def soon(days: float = 1) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).isoformat()


INJECTED_SUBJECT = "=?utf-8?q?Cita=0D=0AReply-To:_x@evil?="


# --- security -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/contacts/openapi.json", "/api/v1/notifications/openapi.json", "/api/v1/x/openapi.json"])
async def test_only_the_documented_openapi_path_is_public(client: Any, path: str) -> None:
    assert (await client.get("/api/v1/openapi.json")).status == 200
    response = await client.get(path)
    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"


async def test_an_encoded_word_that_hides_a_header_is_refused_at_the_api(client: Any, key: str) -> None:
    body = {"kind": "message", "to": "ana@example.com", "data": {"text": "hola", "subject": INJECTED_SUBJECT}}
    response = await client.post("/api/v1/notifications", json=body, headers=auth(key))
    assert response.status == 422
    answer = await response.json()
    assert "data.subject" in answer["reason"] and "line break" in answer["reason"]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (INJECTED_SUBJECT, None),
        ("=?utf-8?b?Q2l0YQ0KQmNjOiB4QGV2aWw=?=", None),  # the same in base64: "Cita\r\nBcc: x@evil"
        ("=?utf-8?q?Cita_ma=C3=B1ana?=", "Cita mañana"),
        ("Your visit\r\nBcc: x@evil", "Your visit Bcc: x@evil"),  # raw breaks are folded into one line
    ],
)
def test_email_headers_are_built_from_decoded_checked_values(subject: str, expected: str | None) -> None:
    settings = SmtpSettings(host="127.0.0.1", from_address="citas@example.com")
    message = OutboundMessage(tenant="clinic", to="ana@example.com", body="hola", kind="message", subject=subject)
    if expected is None:
        with pytest.raises(PermanentError, match="line break"):
            build_message(message, settings)
        return
    mail = build_message(message, settings)
    assert str(mail["Subject"]) == expected
    assert mail.get_all("Bcc") is None and mail.get_all("Reply-To") is None and len(mail.get_all("From")) == 1


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,<script>x</script>", "/relative", "https://"])
async def test_links_must_be_http_urls(client: Any, key: str, link: str) -> None:
    body = {"contact": {"email": "ana@example.com"}, "start": soon(), "cancel_url": link}
    response = await client.put("/api/v1/appointments/link-1", json=body, headers=auth(key))
    assert response.status == 422
    assert (await response.json())["field"] == "cancel_url"


@pytest.mark.parametrize(("value", "problem"), [("", "is empty"), ("   ", "is empty")])
def test_an_empty_secret_from_the_environment_stops_the_hub_naming_the_key(
    run_cli: Any, tmp_path: Path, sqlite_url: str, value: str, problem: str
) -> None:
    document = config_document(sqlite_url, plugins={"twilio_messaging": {
        "account_sid": "AC" + "0" * 32, "auth_token": {"env": "TWILIO_TOKEN"}}})
    config = write_toml(tmp_path / "config.toml", document)
    result = run_cli("plugins", config=config, env={"TWILIO_TOKEN": value})
    assert result.returncode == 2
    assert "plugins.twilio_messaging.auth_token" in result.stderr and problem in result.stderr


def test_an_empty_literal_secret_is_refused_in_every_plugin(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    document = config_document(sqlite_url, plugins={"smtp_email": {
        "host": "127.0.0.1", "from_address": "citas@example.com", "username": "u", "password": " "}})
    result = run_cli("plugins", config=write_toml(tmp_path / "config.toml", document))
    assert result.returncode == 2
    assert "smtp_email.password" in result.stderr and "secret cannot be empty" in result.stderr


# --- bad input gets a 4xx naming the field --------------------------------------------

NOTIFICATION = {"kind": "message", "to": "+34600123456", "data": {"text": "hola"}}


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        ({**NOTIFICATION, "to": ""}, 422, "to"),
        ({**NOTIFICATION, "contact_id": 2**63, "to": None}, 422, "body"),
        ('{"kind": "message", "to": "+34600123456", "data": {"n": ' + "9" * 5000 + "}}", 422, "body"),
        ('{"kind": "message", "to": "+34600123456", "data": {"n": ' + "9" * 30 + "}}", 422, "body"),
        ({**NOTIFICATION, "data": deep(100)}, 422, None),
        ({**NOTIFICATION, "data": {"text": "a\x00b"}}, 422, "data.text"),
        ('{"kind": "message", "to": "+34600123456", "data": {"text": "\\ud800"}}', 422, "data.text"),
        ('{"kind": "message", "to": "+34600123456", "data": {"n": NaN}}', 422, "body"),
        ('{"kind": "message", "to": "+34600123456", "data": {"n": Infinity}}', 422, "body"),
        ('{"kind": "message", "to": "+34600123456", "data": {"n": 1e999}}', 422, "body"),
        ({**NOTIFICATION, "send_at": "0001-01-01T00:00:00+05:00"}, 422, "send_at"),
        ({**NOTIFICATION, "send_at": "9999-12-31T23:59:59-05:00"}, 422, "send_at"),
        ({**NOTIFICATION, "send_at": 12345}, 422, "send_at"),
        ({**NOTIFICATION, "send_at": soon(2), "expires_at": soon(1)}, 422, "body"),
        ({**NOTIFICATION, "locale": "../../etc"}, 422, "locale"),
        ({**NOTIFICATION, "kind": "no_such_kind"}, 422, "kind"),
        ({**NOTIFICATION, "template": "no_such_template"}, 422, "template"),
    ],
)
async def test_bad_notification_input_is_4xx_naming_the_field(client: Any, key: str, raw: Any, status: int, field: str | None) -> None:
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if v is not None}
        import json
        data = json.dumps(raw).encode()
    else:
        data = raw.encode()
    response = await client.post("/api/v1/notifications", data=data, headers={**auth(key), "Content-Type": "application/json"})
    assert response.status == status, await response.text()
    answer = await response.json()
    if field is not None:
        assert answer["field"] == field, answer
    assert answer["reason"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"start": 12345}, "start"),
        ({"start": "0001-01-01T00:00:00+00:00"}, "start"),
        ({"start": "9999-06-01T10:00:00+00:00"}, "start"),
        ({"timezone": "localtime"}, "timezone"),
        ({"timezone": "Factory"}, "timezone"),
        ({"timezone": "EST5EDT"}, "timezone"),
        ({"contact": {"email": "ana@example.com", "timezone": "posix/Europe/Madrid"}}, "contact.timezone"),
        ({"contact": {"email": "ana@example.com", "locale": "../../etc"}}, "contact.locale"),
        ({"service": "x" * 201}, "service"),
    ],
)
async def test_bad_appointment_input_is_422_naming_the_field(client: Any, key: str, change: dict[str, Any], field: str) -> None:
    body = {"contact": {"email": "ana@example.com"}, "start": soon(), **change}
    response = await client.put("/api/v1/appointments/a-1", json=body, headers=auth(key))
    assert response.status == 422, await response.text()
    assert (await response.json())["field"] == field


@pytest.mark.parametrize("path", ["/api/v1/notifications/9223372036854775808", "/api/v1/contacts/99999999999999999999999", "/api/v1/contacts/0"])
async def test_ids_out_of_range_are_422(client: Any, key: str, path: str) -> None:
    response = await client.get(path, headers=auth(key))
    assert response.status == 422
    assert (await response.json())["field"] == "id"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"From=%2B34600123456&Body=%FF%FE", "application/x-www-form-urlencoded"),
        (b"From=\xff\xfe&Body=x", "application/x-www-form-urlencoded"),
        (b"--xyz\r\ngarbage without an end", "multipart/form-data; boundary=xyz"),
        (b"Body=a%00b", "application/x-www-form-urlencoded"),
        # A character split across two fields, an encoded surrogate, a raw byte completed by an escape,
        # a field past the limit: each valid-looking as a whole, refused like the field-by-field parse does.
        (b"From=%C3&Body=%A9", "application/x-www-form-urlencoded"),
        (b"Body=%ED%A0%80", "application/x-www-form-urlencoded"),
        (b"Body=\xc3%A9", "application/x-www-form-urlencoded"),
        (b"&".join([b"f=1"] * 1001), "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_webhook_forms_are_400_or_422(client: Any, body: bytes, content_type: str) -> None:
    response = await client.post("/webhooks/twilio_messaging/inbound", data=body, headers={"Content-Type": content_type})
    assert response.status in (400, 422), await response.text()
    assert (await response.json())["error"] in ("malformed_form", "validation_failed")


async def test_a_deeply_nested_webhook_body_is_refused_before_any_handler(client: Any) -> None:
    response = await client.post("/webhooks/calendly/events", data="[" * 5000 + "]" * 5000, headers={"Content-Type": "application/json"})
    assert response.status == 422
    assert "nested" in (await response.json())["reason"]


# --- API keys: list, revoke, expiry, last use -------------------------------------------


def test_api_keys_are_listed_revoked_and_expire_through_the_cli_and_http(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    first = run_cli("tenants", "key", "clinic", "--name", "booking-system", config=config)
    second = run_cli("tenants", "key", "clinic", config=config)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first_key, second_key = first.stdout.strip(), second.stdout.strip()
    assert first_key != second_key

    async def status_with(key: str) -> int:
        from aiohttp.test_utils import TestClient, TestServer

        from hub.app import create_app
        from tests.conftest import make_config

        hub = Hub.build(make_config(sqlite_url))
        async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            response = await client.get("/api/v1/contacts?email=a@example.com", headers=auth(key))
            return response.status

    import asyncio

    assert asyncio.run(status_with(first_key)) == 200
    listed = run_cli("tenants", "keys", "list", "clinic", config=config)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split("\t")[:4] == ["PREFIX", "STATE", "CREATED", "LAST USED"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert set(rows) == {first_key[:12], second_key[:12]}
    assert rows[first_key[:12]][1] == "active" and rows[first_key[:12]][3] != "-" and rows[first_key[:12]][5] == "booking-system"
    assert rows[second_key[:12]][3] == "-"  # never used
    assert first_key[12:] not in listed.stdout  # only the prefix is shown

    revoked = run_cli("tenants", "keys", "revoke", "clinic", first_key[:12], config=config)
    assert revoked.returncode == 0, revoked.stderr
    assert asyncio.run(status_with(first_key)) == 401
    assert asyncio.run(status_with(second_key)) == 200
    again = run_cli("tenants", "keys", "revoke", "clinic", first_key[:12], config=config)
    assert again.returncode == 1 and "no active API key" in again.stderr
    listed = run_cli("tenants", "keys", "list", "clinic", config=config)
    assert "\trevoked\t" in listed.stdout


async def test_an_expired_key_is_refused(client: Any, hub: Hub) -> None:
    async with hub.db.sessions.begin() as session:
        tenant_id = (await hub.tenants.get("clinic")).id
        expired = await issue_api_key(session, tenant_id, expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
        valid = await issue_api_key(session, tenant_id, expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    assert (await client.get("/api/v1/contacts?email=a@example.com", headers=auth(expired))).status == 401
    assert (await client.get("/api/v1/contacts?email=a@example.com", headers=auth(valid))).status == 200


# --- rate limits --------------------------------------------------------------------------


def same_minute_ahead(seconds: float = 8) -> None:
    """Start a counting test early in a window, so the fixed one-minute window does not roll over under it."""
    import time

    if time.time() % 60 > 60 - seconds:
        time.sleep(60 - time.time() % 60 + 0.1)


async def test_api_rate_limit_per_tenant_is_shared_by_processes_and_answers_429(database_url: str, record_file: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from tests.conftest import DEFAULT_TENANTS, make_config

    tenants = {**DEFAULT_TENANTS, "clinic": {**DEFAULT_TENANTS["clinic"], "api_requests_per_minute": 4}}
    config = make_config(database_url, record_file=record_file, tenants=tenants)
    first, second = Hub.build(config), Hub.build(config)
    async with first.running(), second.running():
        async with first.db.sessions.begin() as session:
            clinic = await issue_api_key(session, (await first.tenants.get("clinic")).id)
            salon = await issue_api_key(session, (await first.tenants.get("salon")).id)
        apps = [create_app(hub, manage_hub=False, run_workers=False) for hub in (first, second)]
        async with TestClient(TestServer(apps[0])) as one, TestClient(TestServer(apps[1])) as two:
            same_minute_ahead()
            # On PostgreSQL both processes count into one row; on SQLite (one process) each counts alone.
            clients = [one, two, one, two] if database_url.startswith("postgresql") else [one] * 4
            for client in clients:
                response = await client.get("/api/v1/contacts?email=a@example.com", headers=auth(clinic))
                assert response.status == 200
            refused = await clients[-1].get("/api/v1/contacts?email=a@example.com", headers=auth(clinic))
            assert refused.status == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert (await refused.json())["error"] == "rate_limited"
            # Another tenant has its own budget.
            assert (await one.get("/api/v1/contacts?email=a@example.com", headers=auth(salon))).status == 200


async def test_webhook_rate_limit_per_source_answers_429(database_url: str, record_file: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from tests.conftest import make_config

    hub = Hub.build(make_config(database_url, record_file=record_file, hub={"webhook_requests_per_minute": 2}))
    async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
        same_minute_ahead()
        statuses = [(await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic"})).status for _ in range(3)]
        assert statuses[:2] == [422, 422]  # counted, then refused by the handler for the missing fields
        assert statuses[2] == 429
        limited = await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic"})
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        # The API is not a webhook: it keeps its own (per tenant) budget.
        assert (await client.get("/api/v1/openapi.json")).status == 200


# --- slow clients, an unreachable database ---------------------------------------------------


async def test_a_body_that_never_arrives_is_answered_408_and_closed(sqlite_url: str, record_file: Path) -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from tests.conftest import make_config

    hub = Hub.build(make_config(sqlite_url, record_file=record_file, hub={"body_timeout_seconds": 0.3}))
    async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
        for path in ("/api/v1/notifications", "/webhooks/recorder/inbound"):
            reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=30)  # read() returns once the server closes
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]


@pytest.fixture
def pg_url(pg_cluster: Any, pg_template: str) -> str:
    from tests.conftest import _fresh_pg

    return _fresh_pg(pg_cluster, pg_template)


async def test_an_unreachable_postgresql_is_503_with_retry_after_and_the_hub_reconnects(
    pg_cluster: Any, pg_url: str, record_file: Path
) -> None:
    import asyncpg
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from tests.conftest import make_config

    url = pg_url
    name = url.rsplit("/", 1)[1]
    hub = Hub.build(make_config(url, record_file=record_file))
    admin = await asyncpg.connect(pg_cluster.dsn())
    try:
        async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            async with hub.db.sessions.begin() as session:
                key = await issue_api_key(session, (await hub.tenants.get("clinic")).id)
            assert (await client.get("/api/v1/contacts?email=a@example.com", headers=auth(key))).status == 200
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            down = [
                await client.get("/api/v1/contacts?email=a@example.com", headers=auth(key)),
                await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "id": "m1", "text": "hola"}),
            ]
            for response in down:
                assert response.status == 503, await response.text()
                assert int(response.headers["Retry-After"]) > 0
                assert (await response.json())["error"] == "database_unavailable"
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            # Nobody restarts anything: the pool reconnects on the next request.
            assert (await client.get("/api/v1/contacts?email=a@example.com", headers=auth(key))).status == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


@pytest.mark.parametrize("values", [{"id": "Ana Secreta", "slug": None}, {"id": 1, "slug": "Ana Secreta"}])
async def test_a_failing_statement_logs_no_value_of_it(database_url: str, values: dict[str, Any]) -> None:
    import io
    import json

    import structlog
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from hub.database import Database
    from hub.logs import configure_logging

    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    db = Database(database_url)
    try:
        with pytest.raises(DBAPIError) as failure:
            async with db.sessions.begin() as session:
                await session.execute(text("INSERT INTO tenants (id, slug, name) VALUES (:id, :slug, 'Ana Secreta')"), values)
                await session.execute(text("INSERT INTO tenants (id, slug, name) VALUES (:id, :slug, 'Ana Secreta')"), values)
        # The hub's workers log failures as "Type: text"; whatever the driver quoted stays out.
        structlog.get_logger("hub").error("worker_error", error=f"{type(failure.value).__name__}: {failure.value}")
    finally:
        await db.close()
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert "Ana Secreta" not in stream.getvalue() and "INSERT" not in stream.getvalue()
    assert line["error"].startswith(type(failure.value).__name__) and "details withheld" in line["error"]


async def test_aiohttp_error_logs_pass_through_the_masking(sqlite_url: str, record_file: Path) -> None:
    import asyncio
    import io

    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from hub.logs import configure_logging
    from tests.conftest import make_config

    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    hub = Hub.build(make_config(sqlite_url, record_file=record_file))
    async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        header = "X-Contact: ana.secreta@example.com +34600123456 " + "y" * 9000
        writer.write(f"GET /health HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
    assert answer.split(b"\r\n")[0].endswith(b"400 Bad Request")
    logged = stream.getvalue()
    assert "Error handling request" in logged  # aiohttp's own line reached our output...
    assert "ana.secreta" not in logged and "600123456" not in logged and "yyyy" not in logged  # ...without the header


# --- concurrency --------------------------------------------------------------------------------


async def test_an_appointment_first_seen_canceled_sends_nothing(client: Any, key: str, hub: Hub) -> None:
    from sqlalchemy import func, select

    from hub.models import Notification

    body = {"contact": {"email": "ana@example.com"}, "start": soon(3), "status": "canceled"}
    response = await client.put("/api/v1/appointments/never-seen", json=body, headers=auth(key))
    assert response.status in (200, 201)
    assert (await response.json())["notifications"] == []
    async with hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Notification)) == 0
    # One that was seen and then canceled still gets its notice.
    await client.put("/api/v1/appointments/seen", json={**body, "status": "scheduled"}, headers=auth(key))
    canceled = await client.put("/api/v1/appointments/seen", json=body, headers=auth(key))
    async with hub.db.sessions() as session:
        kinds = (await session.scalars(select(Notification.kind).where(Notification.id.in_((await canceled.json())["notifications"])))).all()
    assert list(kinds) == ["cancellation"]


async def test_one_idempotency_key_sent_concurrently_with_different_bodies_queues_one_and_refuses_the_rest(
    client: Any, key: str, hub: Hub
) -> None:
    import asyncio

    from sqlalchemy import func, select

    from hub.models import Notification

    # The contact exists first: concurrent linking of one new address is the identity module's own race.
    assert (await client.post("/api/v1/notifications", json={"kind": "message", "to": "+34600123456", "data": {"text": "hi"}},
                              headers=auth(key))).status == 202
    headers = {**auth(key), "Idempotency-Key": "same-key-1"}
    bodies = [{"kind": "message", "to": "+34600123456", "data": {"text": f"version {i}"}} for i in range(8)]
    responses = await asyncio.gather(*(client.post("/api/v1/notifications", json=b, headers=headers) for b in bodies))
    statuses = [r.status for r in responses]
    assert statuses.count(202) == 1, statuses
    assert statuses.count(422) == 7, statuses
    for response in responses:
        if response.status == 422:
            assert (await response.json())["field"] == "Idempotency-Key"
    async with hub.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Notification)) == 2
    # The same key and the same body, sent concurrently: one notification, every answer 202 with its id.
    same = await asyncio.gather(*(client.post("/api/v1/notifications", json=bodies[0], headers={**auth(key), "Idempotency-Key": "k2"})
                                  for _ in range(8)))
    assert {r.status for r in same} == {202}
    assert len({(await r.json())["id"] for r in same}) == 1


async def test_sixteen_concurrent_writers_never_get_database_is_locked(client: Any, key: str) -> None:
    import asyncio

    async def book(i: int) -> int:
        statuses = []
        for round_ in range(3):
            body = {"contact": {"email": f"c{i}@example.com", "name": f"C{i}"}, "start": soon(2 + round_), "service": "x"}
            response = await client.put(f"/api/v1/appointments/w-{i}", json=body, headers=auth(key))
            statuses.append(response.status)
            note = {"kind": "message", "to": f"c{i}@example.com", "data": {"text": "hola"}}
            statuses.append((await client.post("/api/v1/notifications", json=note, headers=auth(key))).status)
        return max(statuses)

    worst = await asyncio.gather(*(book(i) for i in range(16)))
    assert max(worst) < 300, worst


# --- templates render for every input the API and the CLI accept --------------------------------


@pytest.mark.parametrize("kind", ["reminder", "confirmation", "cancellation", "reschedule"])
def test_shipped_templates_render_an_appointment_given_with_only_its_required_fields(
    run_cli: Any, tmp_path: Path, sqlite_url: str, kind: str
) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    data = '{"appointment": {"start": "2030-03-10T09:30:00+01:00", "service": "Limpieza"}}'
    result = run_cli("send", "--tenant", "clinic", "--to", "+34600123456", "--kind", kind, "--data", data, config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SANDBOXED" in result.stdout and "undefined" not in result.stdout


def test_cli_refuses_what_the_hub_could_not_keep(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    nan = run_cli("send", "--tenant", "clinic", "--to", "+34600123456", "--kind", "message", "--data", '{"text": NaN}', config=config)
    assert nan.returncode == 2 and "--data" in nan.stderr and "NaN" in nan.stderr
    locale = run_cli("tenants", "create", "shop", "--locale", "../../etc", config=config)
    assert locale.returncode == 2 and "--locale" in locale.stderr
    zone = run_cli("tenants", "create", "shop", "--timezone", "localtime", config=config)
    assert zone.returncode == 2 and "--timezone" in zone.stderr


# --- newcomer frictions ---------------------------------------------------------------------------


def test_serve_on_another_port_uses_it_for_a_loopback_public_url(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.pg import free_port

    port = free_port()
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"public_url": "http://127.0.0.1:8080"}))
    serve = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--port", str(port)], cwd=tmp_path, text=True,
                             env={"HUB_CONFIG": str(config), "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        document = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2) as response:
                    document = json.load(response)
                    break
            except OSError:
                time.sleep(0.2)
        assert document is not None
        assert document["servers"] == [{"url": f"http://127.0.0.1:{port}/api/v1"}]
    finally:
        serve.terminate()
        _, stderr = serve.communicate(timeout=30)
    assert f"public_url: http://127.0.0.1:{port}" in stderr


TWILIO_CLINIC = {"account_sid": "AC" + "1" * 32, "auth_token": "clinic-token", "sms_from": "+34911222333"}


def test_a_global_twilio_table_with_only_sandbox_is_defaults_and_plugins_say_configured_per_tenant(
    run_cli: Any, tmp_path: Path, sqlite_url: str
) -> None:
    import json

    from tests.conftest import DEFAULT_TENANTS

    tenants = {**DEFAULT_TENANTS, "clinic": {**DEFAULT_TENANTS["clinic"], "plugins": {"twilio_messaging": TWILIO_CLINIC}}}
    document = config_document(sqlite_url, tenants=tenants, plugins={"twilio_messaging": {"sandbox": False}})
    config = write_toml(tmp_path / "config.toml", document)
    listed = run_cli("plugins", config=config)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("twilio_messaging"))
    assert "configured per tenant (clinic)" in line
    rows = [json.loads(line) for line in run_cli("plugins", "--json", config=config).stdout.splitlines()]
    twilio = next(row for row in rows if row["name"] == "twilio_messaging")
    assert twilio["configured_per_tenant"] == ["clinic"]
    # The tenant's merged settings are still checked at start: a bad tenant value names its key.
    tenants["clinic"]["plugins"]["twilio_messaging"] = {**TWILIO_CLINIC, "account_sid": "nope"}
    broken = run_cli("plugins", config=write_toml(tmp_path / "broken.toml", config_document(
        sqlite_url, tenants=tenants, plugins={"twilio_messaging": {"sandbox": False}})))
    assert broken.returncode == 2 and "account_sid" in broken.stderr
    # A global switch alone, tenants configured later (in the database): the hub starts.
    switch_only = run_cli("plugins", config=write_toml(tmp_path / "switch.toml", config_document(
        sqlite_url, plugins={"twilio_messaging": {"sandbox": False}})))
    assert switch_only.returncode == 0, switch_only.stderr
    assert "twilio_messaging" in switch_only.stdout and "has no account_sid: set per tenant" in switch_only.stdout


async def test_health_names_the_tenants_a_plugin_is_configured_for(sqlite_url: str, record_file: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from tests.conftest import DEFAULT_TENANTS, make_config

    tenants = {**DEFAULT_TENANTS, "clinic": {**DEFAULT_TENANTS["clinic"], "plugins": {"twilio_messaging": TWILIO_CLINIC}}}
    hub = Hub.build(make_config(sqlite_url, record_file=record_file, tenants=tenants))
    async with hub.running(), TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
        body = await (await client.get("/health")).json()
    assert body["plugins"]["twilio_messaging"]["configured_per_tenant"] == ["clinic"]
    assert "configured_per_tenant" not in body["plugins"]["smtp_email"]


@pytest.mark.parametrize(
    ("content", "summary", "problems"),
    [
        ("name;phone;email\nAna;600 123 456;ana@example.com\nLuis;;luis@example.com\n",
         "2 rows: 2 contacts created", []),
        ("name,phone,email\nAna,600 123 456,ana@example.com,extra\nLuis,600 123 457\n",
         "2 rows: 0 contacts created",
         ["clients.csv:2: row: 4 values for 3 columns (is a value missing its quotes?)", "clients.csv:3: row: 2 values for 3 columns"]),
    ],
    ids=["semicolons", "extra-and-missing-columns"],
)
def test_client_lists_with_semicolons_or_wrong_columns(
    run_cli: Any, tmp_path: Path, sqlite_url: str, content: str, summary: str, problems: list[str]
) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    (tmp_path / "clients.csv").write_text(content, encoding="utf-8")
    result = run_cli("contacts", "import", "clients.csv", "--tenant", "clinic", config=config)
    assert result.stdout.startswith(summary), result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("clients.csv:")] == problems


def test_a_too_large_field_is_reported_on_the_line_it_starts(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    huge = "x" * 200_000
    content = f'name,phone\nAna,600 123 456\n"{huge}\n{huge}",600 123 457\nLuis,600 123 458\n'
    (tmp_path / "clients.csv").write_text(content, encoding="utf-8")
    result = run_cli("contacts", "import", "clients.csv", "--tenant", "clinic", config=config)
    assert result.returncode == 1
    assert "line 3:" in result.stderr and "field larger than field limit" in result.stderr


# --- crash accounting -------------------------------------------------------------------------------


async def test_a_send_cut_by_kill_is_recorded_and_a_restarted_process_retakes_its_dead_leases_at_once(hub: Hub) -> None:
    import os
    import socket

    from sqlalchemy import select

    from hub import NotificationRequest, outbox
    from hub.models import DeliveryAttempt, Notification, utcnow

    dead_pid = 4_194_000
    while True:  # a pid no process has: the dispatcher that held it was killed
        try:
            os.kill(dead_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        dead_pid -= 1
    dead = f"{socket.gethostname()}:{dead_pid}:abc"
    notification_id = await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="+34600123456", data={"text": "hola"}))
    async with hub.db.engine.begin() as connection:
        # The killed process had claimed it, with two minutes of lease left, and was sending it.
        claimed = await outbox.claim(connection, now=utcnow(), lease=dt.timedelta(seconds=120), owner=dead, limit=10)
    assert [row.id for row in claimed] == [notification_id]
    assert await hub.dispatcher.dispatch_due() == 0  # its lease holds it...
    assert await hub.dispatcher.reclaim_dead_leases() == 1  # ...until the restarted process sees its former self is gone
    assert await hub.dispatcher.dispatch_due() == 1
    async with hub.db.sessions() as session:
        row = await session.get(Notification, notification_id)
        attempts = (await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification_id)
                                          .order_by(DeliveryAttempt.id))).all()
    assert row is not None and row.status == "sandboxed"
    # Both sends are on record: the one the crash cut short (it may have gone out) and the one after.
    assert [a.outcome for a in attempts] == ["interrupted", "sandboxed"]
    assert dead in (attempts[0].error or "") and "may have been sent" in (attempts[0].error or "")


@pytest.mark.parametrize("header", ["t=" + "9" * 5000 + ",v1=abcd", "t=1700000000,v1=" + "a" * 5000, "t=1,v1=zz"])
async def test_a_calendly_signature_header_out_of_bounds_is_401(client: Any, header: str) -> None:
    response = await client.post("/webhooks/calendly/events", data=b'{"event": "x", "payload": {}}',
                                 headers={"Content-Type": "application/json", "Calendly-Webhook-Signature": header})
    assert response.status == 401


def test_a_client_list_locale_must_be_a_language_tag(run_cli: Any, tmp_path: Path, sqlite_url: str) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    (tmp_path / "clients.csv").write_text("name,email,locale\nAna,ana@example.com,../../etc\n", encoding="utf-8")
    result = run_cli("contacts", "import", "clients.csv", "--tenant", "clinic", config=config)
    assert "clients.csv:2: locale: not a language tag" in result.stderr
