"""The inbox: verified webhooks stored under a dedupe key, processed by a worker.

`accept` is what a plugin's webhook handler calls: it stores the event and
says whether it was new, so a vendor's retry is acknowledged and not
processed again. `Inbox.run` is the worker loop: it claims pending events
with a lease (so a second process never takes the same one, and a dead
process's events are taken over when the lease runs out) and processes the
claimed batch in one unit of work (its effects run once it commits), with
one statement marking the whole batch processed. When anything in a batch
fails, the batch is rolled back and each event runs again alone, so one bad
event never fails the others: it alone is recorded with its error and
retried a bounded number of times with backoff.

Order: events with the same order key (one person, one message, one
tenant's bookings) are processed in arrival order, also across processes.
A claim takes no event whose key has an event leased by another process
(claims are serialised on PostgreSQL by a transaction-scoped advisory lock,
so two claims never both see the key free), and inside a batch a key's
events are applied one after the other, in waves: the n-th event of every
key in the batch, then the (n+1)-th. Within a wave no two events share a
key, so a kind with a batch processor (`batch_processors`) applies the
wave's events of that kind set-based, in a few statements.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.database import Database
from hub.events import INBOX_EVENT_TYPES, DeferredEvent, InboxEvent
from hub.models import InboxEventRow, utcnow
from hub.tenants import TenantDirectory
from hub.unit_of_work import UnitOfWork
from hub.waiting import idle

Processor = Callable[[UnitOfWork, InboxEvent], Awaitable[None]]
"""Applies one event inside the given unit of work, registering its after-commit effects (hooks) on it."""
BatchProcessor = Callable[[UnitOfWork, list[InboxEvent]], Awaitable[None]]
"""Applies several events of one kind, no two with the same order key, as `Processor` would one by one."""

LEASE = dt.timedelta(seconds=60)
IDLE_BATCH = 200
BUSY_BATCH = 25
ALONE_KINDS = frozenset({DeferredEvent.kind})
"""Kinds processed in a unit of work of their own: their processor calls a vendor, which must neither hold a
batch's transaction open nor be repeated because an unrelated event in the batch failed."""
CLAIM_LOCK = (0x6869, 0x696E)
"""The advisory lock that serialises claims on PostgreSQL (its own namespace: never a conversation's lock)."""
INTAKE_QUIET = 0.05
"""Seconds without a new webhook that count as a pause in a burst."""
INTAKE_DEFER_MAX = 1.0
"""Longest the in-process worker waits for such a pause before it processes a batch anyway."""
ACCEPT_BATCH = 500
"""Most webhooks one group commit writes (keeps a multi-row INSERT under SQLite's variable limit)."""
_PG_ACCEPT = (
    "INSERT INTO inbox_events (tenant_id, source, dedupe_key, kind, payload, received_at, next_attempt_at, attempts) "
    "SELECT t, s, d, k, p::jsonb, r, r, 0 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::timestamp[]) AS batch(t, s, d, k, p, r) ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING source, dedupe_key"
)
"""The accept INSERT on PostgreSQL: a batch of webhooks as column arrays (received_at in naive UTC, as stored)."""
EVENT_CLASSES: Mapping[str, type[InboxEvent]] = {cls.kind: cls for cls in INBOX_EVENT_TYPES}


@dataclass(frozen=True)
class Claimed:
    """An event this worker leased; `attempt` counts this try (1 for the first)."""

    id: int
    kind: str
    dedupe_key: str
    payload: dict[str, Any]
    attempt: int


def order_key(event_id: int, kind: str, payload: dict[str, Any]) -> str:
    """Events with the same key must be processed in arrival order."""
    tenant = payload.get("tenant", "")
    if kind == "appointment.changed":
        return f"{tenant}:appointments"  # a reschedule's halves name two different bookings
    who = payload.get("sender") or payload.get("address") or payload.get("provider_id")
    if not who:
        return f"event:{event_id}"
    # "whatsapp:+34600..." and "+34 600..." are one person: key phones by their digits.
    digits = "".join(ch for ch in str(who) if ch.isdigit())
    return f"{tenant}:{digits if len(digits) >= 7 and '@' not in str(who) else who}"


def waves(rows: list[Claimed]) -> list[list[Claimed]]:
    """The batch (in id order) as waves: the first event of every key, then the second, ...; keys are unique in a wave."""
    out: list[list[Claimed]] = []
    depth: dict[str, int] = {}
    for row in rows:
        key = order_key(row.id, row.kind, row.payload)
        level = depth.get(key, 0)
        depth[key] = level + 1
        if level == len(out):
            out.append([])
        out[level].append(row)
    return out


def retry_delay(attempt: int) -> dt.timedelta:
    """Backoff between tries of a failing event: 2 s, 4 s, 8 s ... capped at 5 minutes."""
    return dt.timedelta(seconds=min(300, 2**attempt))


class Inbox:
    """Stores accepted webhooks and runs their processors."""

    def __init__(
        self, db: Database, tenants: TenantDirectory, *, max_attempts: int, poll_seconds: float,
        unit_of_work: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    ) -> None:
        self.db = db
        self.unit_of_work = unit_of_work
        self.tenants = tenants
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.processors: dict[str, Processor] = {}
        self.batch_processors: dict[str, BatchProcessor] = {}
        """Optional set-based versions of `processors`; the single-event one still runs an event retried alone."""
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._gathering: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        table = InboxEventRow.__table__
        self._insert_statement = (
            (pg_insert if db.dialect == "postgresql" else sqlite_insert)(table)
            .on_conflict_do_nothing(index_elements=["source", "dedupe_key"])
            .returning(table.c.source, table.c.dedupe_key)
        )
        self._mark_processed = (
            update(table).where(table.c.id.in_(bindparam("ids", expanding=True)))
            .values(processed_at=bindparam("now"), lease_until=None, error=None)
        )
        # On PostgreSQL one INSERT statement is its own transaction: run alone it commits as it returns,
        # which saves the BEGIN and COMMIT round trips a group commit would otherwise pay per batch.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT") if db.dialect == "postgresql" else None
        self._writer: asyncio.Task[None] | None = None
        self._last_accept = float("-inf")
        self._log = structlog.get_logger("hub.inbox")

    async def accept(self, event: InboxEvent, *, source: str, dedupe_key: str) -> bool:
        """Store a verified event; False when the same (source, dedupe_key) was already stored.

        Returns only once the row is committed. Concurrent calls share one
        INSERT and one commit (a group commit): while one batch is being
        written, the next one gathers.
        """
        tenant = await self.tenants.get(event.tenant)
        now = utcnow()
        row = {
            "tenant_id": tenant.id, "source": source, "dedupe_key": dedupe_key, "kind": event.kind,
            "payload": event.to_payload(), "received_at": now, "next_attempt_at": now, "attempts": 0,
        }
        loop = asyncio.get_running_loop()
        self._last_accept = loop.time()
        future: asyncio.Future[bool] = loop.create_future()
        self._gathering.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="hub-inbox-group-commit")
        new = await future
        if not new:
            self._log.info("inbox_duplicate", source=source, kind=event.kind)
        return new

    async def _write_batches(self) -> None:
        while self._gathering:
            # One pass of the event loop first: requests whose bodies arrived in the same pass join this batch
            # instead of paying for a statement of their own in the next one.
            await asyncio.sleep(0)
            batch, self._gathering = self._gathering[:ACCEPT_BATCH], self._gathering[ACCEPT_BATCH:]
            try:
                inserted = await self._insert(batch)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            seen: set[tuple[str, str]] = set()
            for row, future in batch:
                key = (row["source"], row["dedupe_key"])
                # A retry that arrived in the same batch as its original is a duplicate too.
                if not future.done():
                    future.set_result(key in inserted and key not in seen)
                seen.add(key)
            if inserted:
                self._wake.set()

    async def _insert(self, batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> set[tuple[str, str]]:
        rows = [row for row, _ in batch]
        if self._autocommit is not None:
            # The whole batch is one statement, so one commit, whatever its size; the answers wait for it like
            # before. Columns go as arrays (one prepared statement for every batch size) and values as the
            # driver takes them: no per-row bind processing.
            columns = (
                [row["tenant_id"] for row in rows], [row["source"] for row in rows], [row["dedupe_key"] for row in rows],
                [row["kind"] for row in rows], [json.dumps(row["payload"]) for row in rows],
                [row["received_at"].astimezone(dt.UTC).replace(tzinfo=None) for row in rows],
            )
            async with self._autocommit.connect() as connection:
                inserted: Any = await connection.exec_driver_sql(_PG_ACCEPT, columns)  # rows of (source, dedupe_key)
                return {(source, key) for source, key in inserted}
        async with self.db.engine.begin() as connection:
            # One cached statement run with many parameter sets: SQLAlchemy sends it as multi-row
            # INSERTs ("insertmanyvalues") without compiling a new statement per batch size.
            result = await connection.execute(self._insert_statement, rows)
            return {(source, key) for source, key in result}

    async def _claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        pending = and_(
            InboxEventRow.processed_at.is_(None),
            InboxEventRow.failed_at.is_(None),
            InboxEventRow.next_attempt_at <= now,
            or_(InboxEventRow.lease_until.is_(None), InboxEventRow.lease_until < now),
        )
        async with self.db.sessions.begin() as session:
            if not self.db.is_sqlite:
                # Held to the end of this short transaction: the leases below are committed before the next
                # claim looks, so two processes never take events of one key side by side.
                await session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": CLAIM_LOCK[0], "key": CLAIM_LOCK[1]})
            rows = (
                await session.execute(
                    select(InboxEventRow.id, InboxEventRow.kind, InboxEventRow.dedupe_key, InboxEventRow.payload, InboxEventRow.attempts)
                    .where(pending)
                    .order_by(InboxEventRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            # Keys another process is working on now: their later events wait for its batch to commit.
            leased = await session.execute(
                select(InboxEventRow.id, InboxEventRow.kind, InboxEventRow.payload).where(
                    InboxEventRow.processed_at.is_(None), InboxEventRow.failed_at.is_(None), InboxEventRow.lease_until >= now
                )
            )
            busy = {order_key(row.id, row.kind, row.payload) for row in leased}
            claimed = [
                Claimed(row.id, row.kind, row.dedupe_key, row.payload, row.attempts + 1)
                for row in rows
                if not busy or order_key(row.id, row.kind, row.payload) not in busy
            ]
            if claimed:
                await session.execute(
                    update(InboxEventRow)
                    .where(InboxEventRow.id.in_([row.id for row in claimed]))
                    .values(lease_until=now + LEASE, attempts=InboxEventRow.attempts + 1)
                )
        return claimed

    async def process_pending(self, limit: int = 50) -> int:
        """Process one batch of due events; returns how many were claimed.

        The batch is one unit of work (see the module docstring); when it
        fails, each event runs again in a unit of work of its own.
        """
        rows = await self._claim(limit)
        segment: list[Claimed] = []
        for row in rows:
            # An event that runs alone splits the batch where it stands, so arrival order still holds around it.
            if row.kind in ALONE_KINDS:
                await self._process_segment(segment)
                segment = []
                await self._process(row)
            else:
                segment.append(row)
        await self._process_segment(segment)
        return len(rows)

    async def _process_segment(self, rows: list[Claimed]) -> None:
        if len(rows) == 1:
            await self._process(rows[0])
        elif rows:
            try:
                await self._process_together(rows)
            except Exception as exc:
                self._log.info("inbox_batch_retried_alone", events=len(rows), error=f"{type(exc).__name__}: {exc}")
                for row in rows:
                    await self._process(row)

    async def _process_together(self, rows: list[Claimed]) -> None:
        async with self.unit_of_work() as uow:
            for wave in waves(rows):
                by_kind: dict[str, list[InboxEvent]] = {}
                for row in wave:
                    by_kind.setdefault(row.kind, []).append(EVENT_CLASSES[row.kind].from_payload(row.payload))
                for kind, events in by_kind.items():
                    many = self.batch_processors.get(kind)
                    if many is not None and len(events) > 1:
                        await many(uow, events)
                    else:
                        processor = self.processors[kind]
                        for event in events:
                            await processor(uow, event)
            await uow.session.execute(self._mark_processed, {"ids": [row.id for row in rows], "now": utcnow()})

    async def _process(self, row: Claimed) -> None:
        attempt = row.attempt
        try:
            processor = self.processors[row.kind]
            event = EVENT_CLASSES[row.kind].from_payload(row.payload)
            async with self.unit_of_work() as uow:
                await processor(uow, event)
                await uow.session.execute(self._mark_processed, {"ids": [row.id], "now": utcnow()})
        except Exception as exc:
            await self._failed(row, attempt, exc)

    async def _failed(self, row: Claimed, attempt: int, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        gave_up = attempt >= self.max_attempts
        values: dict[str, Any] = {"error": error[:2000], "lease_until": None}
        if gave_up:
            values["failed_at"] = utcnow()
        else:
            values["next_attempt_at"] = utcnow() + retry_delay(attempt)
        async with self.db.sessions.begin() as session:
            await session.execute(update(InboxEventRow).where(InboxEventRow.id == row.id).values(**values))
        self._log.warning(
            "inbox_event_failed", id=row.id, kind=row.kind, attempt=attempt, gave_up=gave_up, error=error
        )

    async def _let_intake_go_first(self, stop: asyncio.Event) -> None:
        # In `hub serve` the worker shares the process (and a small machine's cores) with the
        # webhook handlers: while a burst is arriving, acknowledging it comes first. Processing
        # waits for a pause, but never longer than INTAKE_DEFER_MAX at a time, so it cannot starve.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INTAKE_DEFER_MAX
        while not stop.is_set() and loop.time() - self._last_accept < INTAKE_QUIET and loop.time() < deadline:
            await asyncio.sleep(INTAKE_QUIET / 2)

    async def run(self, stop: asyncio.Event) -> None:
        """Process events until `stop` is set; wakes at once when `accept` stored one."""
        while not stop.is_set():
            await self._let_intake_go_first(stop)
            busy = asyncio.get_running_loop().time() - self._last_accept < INTAKE_QUIET
            try:
                # Small batches while webhooks keep coming, so the handlers are never held up for long.
                claimed = await self.process_pending(BUSY_BATCH if busy else IDLE_BATCH)
            except Exception as exc:  # a database hiccup must not kill the worker
                self._log.error("inbox_worker_error", error=f"{type(exc).__name__}: {exc}")
                claimed = 0
            if claimed:
                continue
            await idle(self._wake, stop, self.poll_seconds)
