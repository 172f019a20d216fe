"""Test-only plugin, loaded through `plugin_dirs` like any dropped-in file.

It implements every hook and writes one JSON line per call to the file named
by its `record_file` setting, so tests (and CLI subprocesses) can see what
the core called, with what.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from aiohttp import web
from pydantic import SecretStr

from hub import (
    ContextSection,
    Delivery,
    Health,
    InboundMessage,
    DeliveryStatusEvent,
    HubPort,
    OutboundMessage,
    ProviderSettings,
    Reply,
    Tool,
    hookimpl,
    hub_from_context,
)

NAME = "recorder"


class Settings(ProviderSettings):
    record_file: str = ""
    healthy: bool = True
    token: SecretStr | None = None
    greeting: str = "hello"
    takes_handoffs: bool = False
    """True: `on_handoff` says it delivered the hand-off (as Chatwoot does), so the core sends no email."""


def record(hub: HubPort, hook: str, **data: Any) -> None:
    settings = hub.settings_for(NAME)
    if settings is None or not settings.record_file:
        return
    with open(settings.record_file, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"hook": hook, **data}, default=str) + "\n")


class EchoChannel:
    """An SMS-medium channel that records instead of sending."""

    name = "recorder-sms"
    medium = "sms"
    address_kind = "phone"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sandbox = settings.sandbox

    async def send(self, message: OutboundMessage) -> Delivery:
        return Delivery(provider_id=f"echo-{message.notification_id}", status="sandboxed")

    async def check(self) -> Health:
        return Health(self.settings.healthy, "" if self.settings.healthy else "told to be unhealthy")


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_channels(hub: HubPort) -> list[EchoChannel]:
    settings = hub.settings_for(NAME)
    return [EchoChannel(settings)] if settings is not None else []


@hookimpl
def register_routes(hub: HubPort) -> list[web.RouteDef]:
    async def inbound(request: web.Request) -> web.Response:
        data = await request.json()
        if not isinstance(data, dict) or not {"tenant", "from", "id"} <= set(data):
            raise web.HTTPUnprocessableEntity(text="tenant, from and id are required")
        event = InboundMessage(
            tenant=data["tenant"],
            medium=data.get("medium", "sms"),
            channel="recorder-sms",
            sender=data["from"],
            sender_kind=data.get("kind", "phone"),
            body=data.get("body", ""),
            provider_id=data["id"],
            profile_name=data.get("name"),
        )
        new = await hub.accept(event, source=NAME, dedupe_key=data["id"])
        return web.json_response({"accepted": new})

    async def status(request: web.Request) -> web.Response:
        data = await request.json()
        event = DeliveryStatusEvent(
            tenant=data["tenant"], channel=data["channel"], provider_id=data["id"], status=data["status"]
        )
        new = await hub.accept(event, source=NAME, dedupe_key=f"{data['id']}:{data['status']}")
        return web.json_response({"accepted": new})

    return [web.post("/inbound", inbound), web.post("/status", status)]


@hookimpl
def register_tools(hub: HubPort, tenant: str) -> list[Tool]:
    async def echo(text: str) -> str:
        return text

    return [Tool("echo", f"Repeat text back ({tenant})", {"type": "object", "properties": {"text": {"type": "string"}}}, echo)]


@hookimpl
def register_template_dirs() -> list[str]:
    return [str(Path(__file__).parent / "templates")]


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group(name="recorder")
    def group() -> None:
        """Commands of the recorder test plugin."""

    @group.command()
    def ping() -> None:
        """Print pong and the greeting setting."""
        click.echo(f"pong {hub_from_context().settings_for(NAME).greeting}")


@hookimpl
async def on_startup(hub: HubPort) -> None:
    record(hub, "on_startup")


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    record(hub, "on_shutdown")


@hookimpl
async def on_message_received(hub: HubPort, message: Any) -> None:
    record(hub, "on_message_received", tenant=message.tenant, contact_id=message.contact_id, body=message.body, medium=message.medium, address=message.address)


@hookimpl
def on_delivery_status(hub: HubPort, status: Any) -> None:
    record(hub, "on_delivery_status", provider_id=status.provider_id, status=status.status, message_id=status.message_id)


@hookimpl
def on_appointment_changed(hub: HubPort, appointment: Any, change: str) -> None:
    record(hub, "on_appointment_changed", appointment_id=appointment.id, change=change)


@hookimpl
def on_contact_linked(hub: HubPort, contact: Any, identity: Any) -> None:
    record(hub, "on_contact_linked", contact_id=contact.id, kind=identity.kind, value=identity.value)


@hookimpl
async def respond_to_message(hub: HubPort, conversation: Any, message: Any) -> Reply | None:
    if message.body.startswith("echo "):
        return Reply(message.body.removeprefix("echo "), responder=NAME)
    if message.body.startswith("person "):
        return Reply("one moment", handoff=True, responder=NAME,
                     data={"handoff_reason": "asked for a person", "handoff_summary": message.body.removeprefix("person ")})
    return None


@hookimpl
def on_handoff(hub: HubPort, conversation: Any, reason: str, summary: str) -> bool:
    record(hub, "on_handoff", conversation_id=conversation.id, handler=conversation.handler, reason=reason, summary=summary)
    return bool(hub.settings_for(NAME).takes_handoffs)


@hookimpl
def contact_context(hub: HubPort, contact: Any) -> ContextSection:
    return ContextSection("Recorder", [f"contact {contact.id} of {contact.tenant}"])
