"""The inbox processes claimed batches in one unit of work, in order per person, also across processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import InboundMessage
from hub.core import Hub
from hub.models import Conversation, InboxEventRow, Message
from tests.conftest import make_config, read_records

PEOPLE = [f"+3460055{n:04d}" for n in range(5)]
PER_PERSON = 24


def interleaved() -> list[InboundMessage]:
    """Every person's messages numbered 0, 1, ...; people take turns, as a burst from several phones looks."""
    return [
        InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender=phone, provider_id=f"SM{p}-{k:03d}",
                       body=f"{p}:{k:03d}")
        for k in range(PER_PERSON) for p, phone in enumerate(PEOPLE)
    ]


async def stored_order(hub: Hub) -> dict[int, list[str]]:
    """Each conversation's inbound bodies in the order they were stored (message id)."""
    async with hub.db.sessions() as session:
        rows = await session.execute(
            select(Conversation.id, Message.body).join(Message, Message.conversation_id == Conversation.id)
            .where(Message.direction == "in").order_by(Message.id)
        )
        order: dict[int, list[str]] = {}
        for conversation_id, body in rows:
            order.setdefault(conversation_id, []).append(body)
    return order


async def accept_all(hub: Hub, events: list[InboundMessage]) -> None:
    for event in events:  # one at a time: ids follow the order the messages arrived in
        assert await hub.inbox.accept(event, source="recorder", dedupe_key=event.provider_id or "")


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_hubs_process_interleaved_messages_once_and_in_order(database_url: str, tmp_path: Path) -> None:
    records = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    hubs = [Hub.build(make_config(database_url, record_file=path)) for path in records]
    async with hubs[0].running(), hubs[1].running():
        events = interleaved()
        await accept_all(hubs[0], events)
        claimed = Counter[int]()
        # The first hub is slow (a busy machine): without the claim's check, the second would record a
        # person's later messages while the first still holds their earlier ones.
        kind = InboundMessage.kind
        single, many = hubs[0].inbox.processors[kind], hubs[0].inbox.batch_processors[kind]

        async def slow_single(uow: Any, event: Any) -> None:
            await asyncio.sleep(0.05)
            await single(uow, event)

        async def slow_many(uow: Any, batch: Any) -> None:
            await asyncio.sleep(0.05)
            await many(uow, batch)

        hubs[0].inbox.processors[kind], hubs[0].inbox.batch_processors[kind] = slow_single, slow_many

        async def work(index: int) -> None:
            # Small batches, so the two hubs keep taking turns on the same people.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                claimed[index] += await hubs[index].inbox.process_pending(7)
                async with hubs[index].db.sessions() as session:
                    pending = await session.scalar(select(InboxEventRow.id).where(InboxEventRow.processed_at.is_(None)).limit(1))
                if pending is None:
                    return
                await asyncio.sleep(0)

        await asyncio.gather(work(0), work(1))
        order = await stored_order(hubs[0])
        async with hubs[0].db.sessions() as session:
            rows = (await session.execute(select(InboxEventRow.attempts, InboxEventRow.processed_at, InboxEventRow.error))).all()
    assert claimed[0] > 0 and claimed[1] > 0  # both hubs did part of the work
    assert len(rows) == len(events) and all(r.processed_at is not None and r.error is None for r in rows)
    assert {r.attempts for r in rows} == {1}  # no event was claimed twice
    assert sorted(order.values()) == [[f"{p}:{k:03d}" for k in range(PER_PERSON)] for p in range(len(PEOPLE))]
    announced = Counter(r["body"] for path in records for r in read_records(path) if r["hook"] == "on_message_received")
    assert announced == Counter(event.body for event in events)  # each message announced exactly once


async def test_a_batch_keeps_each_persons_order_and_isolates_a_bad_event(hub: Hub, record_file: Path) -> None:
    events = interleaved()
    bad = InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="not a phone", provider_id="SMbad")
    await accept_all(hub, [*events[:40], bad, *events[40:]])
    assert await hub.inbox.process_pending(500) == len(events) + 1  # one claim, one batch
    order = await stored_order(hub)
    assert sorted(order.values()) == [[f"{p}:{k:03d}" for k in range(PER_PERSON)] for p in range(len(PEOPLE))]
    async with hub.db.sessions() as session:
        failed = await session.scalar(select(InboxEventRow).where(InboxEventRow.dedupe_key == "SMbad"))
        unprocessed = await session.scalar(
            select(InboxEventRow.id).where(InboxEventRow.processed_at.is_(None), InboxEventRow.dedupe_key != "SMbad").limit(1)
        )
    assert failed is not None and failed.processed_at is None and failed.error is not None and "not a number" in failed.error
    assert failed.attempts == 1 and failed.failed_at is None  # recorded, to be retried
    assert unprocessed is None
    received = [r["body"] for r in read_records(record_file) if r["hook"] == "on_message_received"]
    assert Counter(received) == Counter(event.body for event in events)
    for p in range(len(PEOPLE)):
        assert [b for b in received if b.startswith(f"{p}:")] == [f"{p}:{k:03d}" for k in range(PER_PERSON)]
