"""What a newcomer does with the shipped config, end to end through the real processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from babel.dates import format_date as FORMAT_DATE
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.app import create_app
from hub.core import Hub
from hub.models import Notification, utcnow
from hub.tenants import issue_api_key
from tests.conftest import ROOT, CliResult, make_config
from tests.pg import free_port
from tests.smtp_server import Server
from tests.test_dispatch import drain


def http(method: str, url: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_shipped_config_shows_the_2h_reminder_in_spanish_in_sandbox(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = Path(shutil.copy(ROOT / "config.toml", tmp_path / "config.toml"))
    assert run_cli("db", "upgrade", config=config).returncode == 0
    key = run_cli("tenants", "key", "demo", config=config).stdout.strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    server = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "serve", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        start = (utcnow() + dt.timedelta(hours=2, minutes=10)).replace(microsecond=0)
        status, appointment = http("PUT", f"{base}/api/v1/appointments/cita-1", key, {
            "contact": {"name": "Lucía", "phone": "612 345 678", "email": "lucia@example.com"},
            "start": start.isoformat(), "timezone": "Europe/Madrid", "service": "Revisión", "location": "Calle Mayor 1",
        })
        assert status == 201, appointment
        _, contact = http("GET", f"{base}/api/v1/contacts/{appointment['contact_id']}", key)
        reminders = {n["due_at"]: n for n in contact["notifications"] if n["kind"] == "reminder"}
        two_hours = reminders[(start - dt.timedelta(hours=2)).isoformat()]
        assert two_hours["status"] == "pending" and len(reminders) == 2  # 24 h is already past: not planned
        # Ten minutes pass: make the 2 h reminder due now.
        with sqlite3.connect(tmp_path / "hub.db") as db:
            db.execute("UPDATE notifications SET due_at = ? WHERE id = ?", (utcnow().replace(tzinfo=None).isoformat(" "), two_hours["id"]))
        for _ in range(100):
            _, shown = http("GET", f"{base}/api/v1/notifications/{two_hours['id']}", key)
            if shown["status"] not in ("pending", "sending"):
                break
            time.sleep(0.1)
        assert shown["status"] == "sandboxed" and shown["channel"] == "smtp-email"
        body = shown["messages"][0]["body"]
        assert "Hola Lucía" in body and "Te recordamos tu cita de Revisión" in body
        local = start.astimezone(ZoneInfo("Europe/Madrid"))
        assert f"Fecha y hora: {FORMAT_DATE(local, format='full', locale='es')}, {local.hour}:{local:%M}" in body
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=10)
    listed = run_cli("notifications", "list", "--tenant", "demo", "--status", "sandboxed", config=config)
    assert listed.returncode == 0
    assert any(line.split("\t")[2:5] == ["reminder", "sandboxed", "smtp-email"] for line in listed.stdout.splitlines())


async def test_smtp_configured_hub_emails_the_confirmation_with_its_invite(sqlite_url: str, start_server: Callable[..., Server]) -> None:
    smtp = start_server()
    plugins = {"smtp_email": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "from_address": "citas@clinic.example", "sandbox": False}}
    hub = Hub.build(make_config(sqlite_url, plugins=plugins, tenants={"clinic": {"name": "Clínica Sol", "locale": "es", "timezone": "Europe/Madrid"}}))
    async with hub.running():
        async with hub.db.sessions.begin() as session:
            key = await issue_api_key(session, (await hub.tenants.get("clinic")).id)
        start = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            response = await client.put("/api/v1/appointments/c-9", headers={"Authorization": f"Bearer {key}"}, json={
                "contact": {"name": "Ana", "email": "ana@example.com"}, "start": start.isoformat(), "service": "Limpieza dental",
            })
            assert response.status == 201
        await drain(hub)
        async with hub.db.sessions() as session:
            confirmation = await session.scalar(select(Notification).where(Notification.kind == "confirmation"))
    assert confirmation is not None and confirmation.status == "sent"
    assert len(smtp.mailbox.received) == 1
    email = message_from_bytes(smtp.mailbox.received[0].content, policy=policy.default)
    assert email["To"] == "ana@example.com" and "Clínica Sol" in email["Subject"]
    invite = next(part for part in email.walk() if part.get_content_type() == "text/calendar")
    event = icalendar.Calendar.from_ical(invite.get_payload(decode=True)).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == start
    assert str(event["SUMMARY"]) == "Limpieza dental"
