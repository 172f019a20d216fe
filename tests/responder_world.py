"""A clinic on WhatsApp for the responders' end-to-end tests and benchmark.

Twilio, Calendly and OpenAI are stand-ins on 127.0.0.1 (tests/stand_ins/);
the hub is real, with its HTTP app behind an aiohttp test server. A client
"writes" by the stand-in posting Twilio's signed webhook; `turn` then runs
the inbox, the responders and the outbox the way the workers would, and
returns what reached the client's WhatsApp.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import or_, select

from hub.app import create_app
from hub.config import parse_config
from hub.core import Hub
from hub.models import Appointment, Conversation, Notification, utcnow
from tests.conftest import config_document
from tests.stand_ins.calendly import CalendlyStandIn
from tests.stand_ins.openai import OpenAIStandIn
from tests.stand_ins.twilio import TwilioStandIn

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "s3cret-twilio-token-4e1d"
PUBLIC_URL = "https://hub.example.com"
INBOUND_URL = f"{PUBLIC_URL}/webhooks/twilio_messaging/inbound"
WHATSAPP_FROM = "+14155238886"
ANA = "+34600123456"
ZONE = ZoneInfo("Europe/Madrid")
BUSINESS = {
    "address": "Calle Mayor 1, Madrid",
    "hours": {"mon-fri": "9:00-19:00", "sat": "10:00-14:00"},
    "event_type": "Limpieza dental",
    "services": [
        {"name": "Limpieza dental", "price": "45 €", "duration_minutes": 30, "aliases": ["limpieza", "cleaning"]},
        {"name": "Blanqueamiento", "price": "180 €", "duration_minutes": 60, "event_type": "Limpieza dental"},
    ],
}


@dataclass
class World:
    """The hub and its stand-ins, and what each client has received so far."""

    hub: Hub
    twilio: TwilioStandIn
    calendly: CalendlyStandIn
    openai: OpenAIStandIn | None
    client: TestClient
    event_type: dict[str, Any]
    seen: dict[str, int] = field(default_factory=dict)
    _sids: Any = field(default_factory=lambda: iter(range(1, 10**7)))

    @property
    def base(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def write(self, body: str, sender: str = ANA) -> None:
        """The client sends a WhatsApp message: Twilio posts the signed webhook to the hub."""
        sid = f"SM{next(self._sids):032x}"
        form = [
            ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", "Ana"), ("MessageType", "text"), ("SmsSid", sid),
            ("WaId", sender.removeprefix("+")), ("SmsStatus", "received"), ("Body", body), ("To", f"whatsapp:{WHATSAPP_FROM}"),
            ("MessageSid", sid), ("AccountSid", ACCOUNT), ("From", f"whatsapp:{sender}"), ("ApiVersion", "2010-04-01"),
        ]
        status, _ = await self.twilio.post_webhook(INBOUND_URL, form, token=TOKEN, deliver_to=self.base)
        assert status == 200

    async def settle(self) -> None:
        """Run the inbox, the responders and the outbox until nothing is left to do now (later reminders wait)."""
        for _ in range(200):
            worked = await self.hub.inbox.process_pending()
            await self.hub.responders.answer_pending()
            worked += await self.hub.dispatcher.dispatch_due()
            if worked:
                continue
            soon = utcnow() + dt.timedelta(seconds=1)
            async with self.hub.db.sessions() as session:
                due = await session.scalar(select(Notification.id).where(
                    Notification.status.in_(("pending", "sending")), Notification.due_at <= soon,
                    or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= soon),
                ))
            if due is None:
                return
            await asyncio.sleep(0.02)

    async def turn(self, body: str, sender: str = ANA) -> list[str]:
        """The client writes; returns the WhatsApp messages they received since their last turn."""
        await self.write(body, sender)
        await self.settle()
        return self.received(sender)

    def received(self, sender: str = ANA) -> list[str]:
        """Bodies (or template SIDs) of WhatsApp messages to `sender` since the last call."""
        sent = [r for r in self.twilio.accepted() if r.get("To") == f"whatsapp:{sender}"]
        new = sent[self.seen.get(sender, 0):]
        self.seen[sender] = len(sent)
        return [r.get("Body") or f"<template {r.get('ContentSid')}>" for r in new]

    async def appointments(self) -> list[Appointment]:
        async with self.hub.db.sessions() as session:
            return list((await session.scalars(select(Appointment).order_by(Appointment.id))).all())

    async def notifications(self, kind: str) -> list[Notification]:
        async with self.hub.db.sessions() as session:
            rows = await session.scalars(select(Notification).where(Notification.kind == kind).order_by(Notification.id))
            return list(rows.all())

    async def conversation(self) -> Conversation:
        async with self.hub.db.sessions() as session:
            row = await session.scalar(select(Conversation).where(Conversation.medium == "whatsapp"))
            assert row is not None
            return row

    def add_slots(self, day: dt.date, *hours: int) -> list[dt.datetime]:
        """Free start times on a day (Madrid time) in Calendly."""
        starts = [dt.datetime.combine(day, dt.time(hour), tzinfo=ZONE) for hour in hours]
        self.calendly.add_slots(self.event_type, starts)
        return starts


def next_weekday(weekday: int, *, after: dt.date | None = None) -> dt.date:
    """The next date with this weekday (0 Monday) strictly after `after` (default today in Madrid)."""
    today = after or dt.datetime.now(ZONE).date()
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7 or 7)


@asynccontextmanager
async def world(
    database_url: str, *, rules: bool = True, openai: bool = False, clinic: dict[str, Any] | None = None,
    openai_settings: dict[str, Any] | None = None, smtp: bool = False, calendly_api: bool = True, migrate: bool | None = None,
) -> AsyncIterator[World]:
    """The clinic with Twilio WhatsApp, Calendly and (optionally) OpenAI stand-ins and the responders on."""
    async with AsyncExitStack() as stack:
        twilio = await stack.enter_async_context(TwilioStandIn({ACCOUNT: TOKEN}))
        calendly = CalendlyStandIn(scheduling_api=calendly_api)
        await calendly.start()
        stack.push_async_callback(calendly.stop)
        event_type = calendly.add_event_type("Limpieza dental", slug="limpieza", duration=30)
        model = await stack.enter_async_context(OpenAIStandIn()) if openai else None
        plugins: dict[str, Any] = {
            "twilio_messaging": {"account_sid": ACCOUNT, "auth_token": TOKEN, "api_base_url": twilio.base_url,
                                 "whatsapp_from": WHATSAPP_FROM, "sandbox": False},
        }
        if smtp:
            plugins["smtp_email"] = {"from_address": "citas@clinic.example", "sandbox": True}
        tenant_plugins: dict[str, Any] = {
            "calendly": {"token": calendly.token, "api_base_url": calendly.base_url},
            "rules_responder": {"enabled": rules},
        }
        if model is not None:
            tenant_plugins["openai_responder"] = {"api_key": model.api_key, "base_url": model.base_url, "max_retries": 1,
                                                  "timeout_seconds": 3, **(openai_settings or {})}
        tenant = {"name": "Clínica Sol", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es",
                  "business": BUSINESS, "plugins": tenant_plugins, **(clinic or {})}
        raw = config_document(
            database_url, hub={"plugin_dirs": [], "public_url": PUBLIC_URL, "retry_base_seconds": 0.01,
                               "dispatch_poll_seconds": 0.05, "inbox_poll_seconds": 0.05},
            tenants={"clinic": tenant}, plugins=plugins,
        )
        hub = Hub.build(parse_config(raw, "test-config.toml", {}))
        await stack.enter_async_context(hub.running(migrate=migrate))
        client = await stack.enter_async_context(TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))))
        yield World(hub, twilio, calendly, model, client, event_type)
