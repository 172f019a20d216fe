"""One test per hook spec, each through the surface that calls it (HTTP, CLI, the inbox)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hub import InboundMessage
from hub.appointments import AppointmentInput
from hub.outbox import NotificationRequest
from hub.core import Hub
from hub.models import Message
from tests.conftest import CliResult, config_document, read_records, wait_for, write_toml


def records(path: Path, hook: str) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r["hook"] == hook]


async def test_hook_register_settings(hub: Hub) -> None:
    settings = hub.settings_for("recorder")
    assert type(settings).__name__ == "Settings"
    assert settings.greeting == "hello" and settings.sandbox is True


async def test_hook_register_channels(hub: Hub, client: Any) -> None:
    # Twilio's and Chatwoot's channels are always there (a tenant may be configured while the hub runs).
    assert hub.channel_plugins == {
        "recorder-sms": "recorder", "twilio-sms": "twilio_messaging", "twilio-whatsapp": "twilio_messaging", "chatwoot": "chatwoot",
    }
    assert hub.channels["recorder-sms"].medium == "sms"
    body = await (await client.get("/health")).json()
    assert list(body["plugins"]["recorder"]["channels"]) == ["recorder-sms"]


async def test_hook_register_routes(client: Any) -> None:
    response = await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "id": "r1"})
    assert response.status == 200 and await response.json() == {"accepted": True}


def test_hook_register_tools(sqlite_url: str, record_file: Path, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, record_file=record_file))
    result = run_cli("tools", "--tenant", "salon", config=config)
    assert result.returncode == 0, result.stderr
    assert "echo  [recorder]  Repeat text back (salon)" in result.stdout
    assert '"text": {"type": "string"}' in result.stdout


async def test_hook_register_template_dirs(hub: Hub) -> None:
    # The recorder plugin ships es/ping.text.j2; the dispatcher finds it after the tenant's folder.
    async with hub.unit_of_work() as uow:
        queued = await hub.queue_notification(uow, tenant="clinic", request=NotificationRequest(kind="ping", address="+34600123456", data={"text": "hola"}))
    await hub.dispatcher.dispatch_due()
    async with hub.db.sessions() as session:
        message = await session.scalar(select(Message).where(Message.notification_id == queued.id))
    assert message is not None and message.body == "ping desde el plugin: hola"


def test_hook_register_commands(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    document = config_document(sqlite_url, plugins={"recorder": {"greeting": "hola"}})
    config = write_toml(tmp_path / "config.toml", document)
    result = run_cli("recorder", "ping", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pong hola"
    assert "recorder" in run_cli("--help", config=config).stdout


def test_hook_on_startup(sqlite_url: str, record_file: Path, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, record_file=record_file))
    result = run_cli("tenants", "list", config=config)
    assert result.returncode == 0, result.stderr
    assert [r["hook"] for r in read_records(record_file)] == ["on_startup", "on_shutdown"]


def test_hook_on_shutdown(sqlite_url: str, record_file: Path, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, record_file=record_file))
    result = run_cli("contacts", "export", "--tenant", "clinic", config=config)
    assert result.returncode == 0, result.stderr
    assert read_records(record_file)[-1] == {"hook": "on_shutdown"}


async def test_hook_on_message_received(hub: Hub, client: Any, record_file: Path) -> None:
    await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "600 12 34 56", "body": "hola", "id": "m1"})
    got = await wait_for(lambda: records(record_file, "on_message_received"))
    assert got[0]["address"] == "+34600123456" and got[0]["body"] == "hola"
    # The flaky plugin raises in the same hook: counted, and the recorder still ran.
    assert hub.hooks.failures["flaky"] == 1


async def test_hook_on_delivery_status(hub: Hub, client: Any, record_file: Path) -> None:
    await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "body": "echo ok", "id": "m2"})

    async def reply() -> Message | None:
        async with hub.db.sessions() as session:
            return await session.scalar(select(Message).where(Message.direction == "out"))

    sent = await wait_for(reply)
    await client.post("/webhooks/recorder/status", json={"tenant": "clinic", "channel": "recorder-sms", "id": sent.provider_id, "status": "delivered"})
    got = await wait_for(lambda: records(record_file, "on_delivery_status"))
    assert got[0]["provider_id"] == sent.provider_id and got[0]["status"] == "delivered" and got[0]["message_id"] == sent.id


async def test_hook_on_appointment_changed(hub: Hub, record_file: Path) -> None:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    booking = AppointmentInput(source="api", external_id="ext-7", start_at=start, addresses=(("phone", "+34600123456"),))
    created = await hub.upsert_appointment("clinic", booking)
    await hub.upsert_appointment("clinic", booking)  # unchanged: no hook
    await hub.upsert_appointment("clinic", dataclasses.replace(booking, status="canceled"))
    assert records(record_file, "on_appointment_changed") == [
        {"hook": "on_appointment_changed", "appointment_id": created.appointment.id, "change": "created"},
        {"hook": "on_appointment_changed", "appointment_id": created.appointment.id, "change": "canceled"},
    ]


async def test_hook_on_contact_linked(hub: Hub, record_file: Path) -> None:
    first = InboundMessage(tenant="salon", medium="whatsapp", channel="recorder-sms", sender="whatsapp:+5215512345678", provider_id="a")
    again = InboundMessage(tenant="salon", medium="sms", channel="recorder-sms", sender="55 1234 5678", provider_id="b")
    for event in (first, again):
        await hub.inbox.accept(event, source="recorder", dedupe_key=event.provider_id or "")
        await hub.inbox.process_pending()
    linked = records(record_file, "on_contact_linked")
    assert [(r["kind"], r["value"]) for r in linked] == [("phone", "+525512345678")]


async def test_hook_respond_to_message(hub: Hub, client: Any) -> None:
    await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "body": "echo buenos días", "id": "m3"})
    await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic", "from": "+34600123456", "body": "no reply to this", "id": "m4"})

    async def outbound() -> list[str]:
        async with hub.db.sessions() as session:
            if await session.scalar(select(Message).where(Message.provider_id == "m4")) is None:
                return []
            return list((await session.scalars(select(Message.body).where(Message.direction == "out"))).all())

    assert await wait_for(outbound) == ["buenos días"]


def test_hook_contact_context(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    csv = tmp_path / "clients.csv"
    csv.write_text("name,phone\nAna,600123456\n")
    assert run_cli("contacts", "import", str(csv), "--tenant", "clinic", config=config).returncode == 0
    result = run_cli("contacts", "show", "1", "--tenant", "clinic", config=config)
    assert result.returncode == 0, result.stderr
    assert "phone: +34600123456" in result.stdout
    # The flaky plugin's section fails first (tryfirst); the recorder's still shows.
    assert "Recorder:\n  contact 1 of clinic" in result.stdout
