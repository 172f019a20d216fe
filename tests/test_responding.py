"""Responders answer outside the inbox lanes: intake never waits, one person is answered in order, slow ones time out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import InboundMessage
from hub.core import Hub
from hub.models import Conversation, Notification
from tests.conftest import DEFAULT_TENANTS, make_config, wait_for

ANA = "+34600111222"
BEA = "+34600333444"


def probe_hub(database_url: str, probe_file: Path, *, label: str = "", timeout: float | None = None) -> Hub:
    tenants = {slug: dict(table) for slug, table in DEFAULT_TENANTS.items()}
    if timeout is not None:
        tenants["clinic"]["responder_timeout"] = timeout
    config = make_config(
        database_url, tenants=tenants,
        plugins={"probe": {"record_file": str(probe_file), "label": label}, "recorder": {}},
    )
    return Hub.build(config)


@asynccontextmanager
async def working(*hubs: Hub) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for hub in hubs:
            await stack.enter_async_context(hub.running())
        for hub in hubs:
            await stack.enter_async_context(hub.workers())
        yield


async def write(hub: Hub, sender: str, body: str, message_id: str) -> None:
    event = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender=sender, body=body, provider_id=message_id)
    assert await hub.accept(event, source="test", dedupe_key=message_id)


async def replies(hub: Hub) -> list[str]:
    async with hub.db.sessions() as session:
        rows = await session.scalars(select(Notification).where(Notification.kind == "reply").order_by(Notification.id))
        return [row.data["text"] for row in rows]


def probe_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_slow_responder_does_not_hold_up_other_people(database_url: str, tmp_path: Path) -> None:
    hub = probe_hub(database_url, tmp_path / "probe.jsonl")
    async with working(hub):
        await write(hub, ANA, "probe 3 what do you have on Friday?", "m1")
        await wait_for(lambda: probe_records(tmp_path / "probe.jsonl"))  # Ana's answer is being thought about
        await write(hub, BEA, "echo hola", "m2")
        # On SQLite the inbox has one lane: Bea is answered while Ana's responder still thinks.
        assert await wait_for(lambda: replies(hub), timeout=2.5) == ["hola"]
        assert [r["event"] for r in probe_records(tmp_path / "probe.jsonl")] == ["start"]
        assert await wait_for(lambda: _two(replies(hub)), timeout=10) == ["hola", "answered probe 3 what do you have on Friday?"]


async def _two(found: Any) -> Any:
    values = await found
    return values if len(values) == 2 else None


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_one_person_is_answered_in_order_never_concurrently_across_processes(database_url: str, tmp_path: Path) -> None:
    records = tmp_path / "probe.jsonl"
    first, second = probe_hub(database_url, records, label="a"), probe_hub(database_url, records, label="b")
    async with first.running(), second.running():
        for n in range(6):
            # Alternate the hub that takes the webhook. They are stored before any worker runs: which
            # process's inbox records which message (and so message order across processes) is the
            # inbox's concern, not the responders'.
            await write((first, second)[n % 2], ANA, f"probe 0.2 question {n}", f"q{n}")
        while await first.inbox.process_pending():
            pass
        async with first.workers(), second.workers():
            # Both runners' first sweep finds the same unanswered conversation: they contend for its lock.
            texts = await wait_for(lambda: _count(replies(first), 6), timeout=30)
    assert texts == [f"answered probe 0.2 question {n}" for n in range(6)]
    events = probe_records(records)
    starts = [e for e in events if e["event"] == "start"]
    ends = {e["message_id"]: e for e in events if e["event"] == "end"}
    assert [e["message_id"] for e in starts] == sorted(e["message_id"] for e in starts)
    for earlier, later in zip(starts, starts[1:]):
        assert later["at"] >= ends[earlier["message_id"]]["at"], "two answers for one person overlapped"


async def _count(found: Any, n: int) -> Any:
    values = await found
    return values if len(values) >= n else None


async def test_a_responder_past_the_tenants_timeout_is_given_up(database_url: str, tmp_path: Path) -> None:
    hub = probe_hub(database_url, tmp_path / "probe.jsonl", timeout=0.3)
    async with working(hub):
        await write(hub, ANA, "probe 5 too slow", "m1")
        await write(hub, ANA, "echo still here", "m2")
        assert await wait_for(lambda: replies(hub), timeout=5) == ["still here"]
    assert [r["event"] for r in probe_records(tmp_path / "probe.jsonl")] == ["start", "end"]  # cancelled at the timeout


async def test_messages_committed_before_a_crash_are_answered_after_restart(database_url: str, tmp_path: Path) -> None:
    hub = probe_hub(database_url, tmp_path / "probe.jsonl")
    async with hub.running():
        await write(hub, ANA, "echo one", "m1")
        await write(hub, ANA, "echo two", "m2")
        await hub.inbox.process_pending()  # recorded and committed; the process "dies" before answering
        assert await replies(hub) == []
    restarted = probe_hub(database_url, tmp_path / "probe.jsonl")
    async with working(restarted):
        assert await wait_for(lambda: _count(replies(restarted), 2), timeout=15) == ["one", "two"]
        async with restarted.db.sessions() as session:
            cursor = await session.scalar(select(Conversation.answered_through))
        assert cursor is not None
    again = probe_hub(database_url, tmp_path / "probe.jsonl")
    async with working(again):
        await asyncio.sleep(0.5)
        assert await replies(again) == ["one", "two"]  # answered once, not again on the next start
