"""Hand-off: a conversation handled by a human gets no bot answers until it is released (by a call or a timeout)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import HubError, InboundMessage
from hub.core import Hub
from hub.models import Conversation, ConversationEvent, Notification, utcnow
from tests.conftest import DEFAULT_TENANTS, make_config
from tests.test_dispatch import drain

ANA = "+34600111222"


def build(database_url: str, record_file: Path, *, takes: bool, clinic: dict[str, Any] | None = None, smtp: bool = False) -> Hub:
    tenants = {slug: dict(table) for slug, table in DEFAULT_TENANTS.items()}
    tenants["clinic"].update(clinic or {})
    plugins: dict[str, Any] = {"recorder": {"record_file": str(record_file), "takes_handoffs": takes}}
    if smtp:
        plugins["smtp_email"] = {"from_address": "asistente@clinic.example", "sandbox": True}
    return Hub.build(make_config(database_url, tenants=tenants, plugins=plugins))


_ids = iter(range(1, 10**6))


async def say(hub: Hub, body: str, sender: str = ANA) -> None:
    """Ana writes; the inbox records it and the responders answer (or stay silent)."""
    sid = f"m{next(_ids)}"
    event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender=sender, body=body, provider_id=sid)
    assert await hub.accept(event, source="test", dedupe_key=sid)
    while await hub.inbox.process_pending():
        pass
    await hub.responders.answer_pending()


async def replies(hub: Hub) -> list[str]:
    async with hub.db.sessions() as session:
        rows = await session.scalars(select(Notification).where(Notification.kind == "reply").order_by(Notification.id))
        return [row.data["text"] for row in rows]


async def conversation(hub: Hub) -> Conversation:
    async with hub.db.sessions() as session:
        row = await session.scalar(select(Conversation))
        assert row is not None
        return row


def hooks(record_file: Path, name: str) -> list[dict[str, Any]]:
    lines = record_file.read_text().splitlines() if record_file.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["hook"] == name]


async def test_hook_on_handoff(database_url: str, record_file: Path) -> None:
    hub = build(database_url, record_file, takes=True, clinic={"handoff_email": "recepcion@clinic.example"})
    async with hub.running():
        await say(hub, "echo hola")
        await say(hub, "person I want to talk to someone about my bill")
        row = await conversation(hub)
        assert (row.handler, row.handler_reason) == ("human", "asked for a person")
        assert await hub.conversation_handler("clinic", row.id) == "human"
        [call] = hooks(record_file, "on_handoff")
        assert call == {"hook": "on_handoff", "conversation_id": row.id, "handler": "human", "reason": "asked for a person",
                        "summary": "I want to talk to someone about my bill"}
        # While a human has it, the bot says nothing, even to what it would answer.
        await say(hub, "echo are you there?")
        assert await replies(hub) == ["hola", "one moment"]
        await hub.release("clinic", row.id, reason="resolved in Chatwoot")
        await say(hub, "echo back again")
        assert await replies(hub) == ["hola", "one moment", "back again"]
        async with hub.db.sessions() as session:
            events = (await session.execute(select(ConversationEvent.kind, ConversationEvent.detail).order_by(ConversationEvent.id))).all()
            emails = await session.scalar(select(Notification).where(Notification.kind == "handoff"))
    assert [(kind, detail["reason"]) for kind, detail in events] == [
        ("handoff", "asked for a person"), ("release", "resolved in Chatwoot"),
    ]
    assert emails is None  # a plugin took the hand-off: no email as well


async def test_without_a_plugin_taking_it_the_tenant_gets_an_email(database_url: str, record_file: Path) -> None:
    hub = build(database_url, record_file, takes=False, clinic={"handoff_email": "Recepcion@Clinic.example"}, smtp=True)
    async with hub.running():
        await say(hub, "echo hola")
        row = await conversation(hub)
        await hub.hand_off("clinic", row.id, reason="angry client", summary="Says the bill is wrong twice")
        await hub.hand_off("clinic", row.id, reason="again", summary="a second hand-off of a handed-off conversation")
        await drain(hub)
        async with hub.db.sessions() as session:
            emails = (await session.scalars(select(Notification).where(Notification.kind == "handoff"))).all()
    assert len(hooks(record_file, "on_handoff")) == 1
    [email] = emails
    assert (email.status, email.channel, email.address) == ("sandboxed", "smtp-email", "recepcion@clinic.example")
    assert email.data["conversation_id"] == row.id
    assert "angry client" in email.data["text"] and "Says the bill is wrong twice" in email.data["text"]


async def test_a_human_hold_past_the_tenants_timeout_is_released(database_url: str, record_file: Path) -> None:
    hub = build(database_url, record_file, takes=True, clinic={"handoff_release_after": "30m"})
    async with hub.running():
        await say(hub, "person please")
        row = await conversation(hub)
        await say(hub, "echo still nobody?")
        assert await replies(hub) == ["one moment"]
        async with hub.db.sessions.begin() as session:
            await session.execute(
                update(Conversation).where(Conversation.id == row.id).values(handler_since=utcnow() - dt.timedelta(minutes=31))
            )
        await say(hub, "echo hello?")
        assert await replies(hub) == ["one moment", "hello?"]
        row = await conversation(hub)
    assert (row.handler, row.handler_reason) == ("bot", "timeout")


async def test_another_tenants_conversation_is_unknown(database_url: str, record_file: Path) -> None:
    hub = build(database_url, record_file, takes=True)
    async with hub.running():
        await say(hub, "echo hola")
        row = await conversation(hub)
        for call in (
            hub.hand_off("salon", row.id, reason="x", summary="y"),
            hub.release("salon", row.id, reason="x"),
            hub.conversation_handler("salon", row.id),
        ):
            with pytest.raises(HubError, match=f"no conversation {row.id} in tenant 'salon'"):
                await call
        assert await hub.conversation_handler("clinic", row.id) == "bot"


@pytest.mark.parametrize("key, value, words", [
    ("handoff_release_after", "soon", "handoff_release_after"),
    ("handoff_email", "not an email", "handoff_email"),
])
def test_bad_handoff_policy_is_refused_naming_the_key(sqlite_url: str, key: str, value: str, words: str) -> None:
    tenants = {"clinic": {**DEFAULT_TENANTS["clinic"], key: value}}
    with pytest.raises(Exception, match=words):
        make_config(sqlite_url, tenants=tenants)
