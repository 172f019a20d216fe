"""The inbox: verified webhooks stored under a dedupe key, processed by a worker.

`accept` is what a plugin's webhook handler calls: it stores the event and
says whether it was new, so a vendor's retry is acknowledged and not
processed again. `Inbox.run` is the worker loop: it claims pending events
with a lease (so a second process never takes the same one, and a dead
process's events are taken over when the lease runs out), runs the
processor for the event's kind inside one transaction, and records a failure
with its error, retrying a bounded number of times with backoff.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.database import Database
from hub.events import INBOX_EVENT_TYPES, InboxEvent
from hub.models import InboxEventRow, utcnow
from hub.tenants import TenantDirectory

AfterCommit = Callable[[], Awaitable[None]]
Processor = Callable[[AsyncSession, InboxEvent], Awaitable[list[AfterCommit]]]
"""Applies one event inside the given transaction; returns work to run once it is committed (hooks)."""

LEASE = dt.timedelta(seconds=60)
EVENT_CLASSES: Mapping[str, type[InboxEvent]] = {cls.kind: cls for cls in INBOX_EVENT_TYPES}


@dataclass(frozen=True)
class Claimed:
    """An event this worker leased; `attempt` counts this try (1 for the first)."""

    id: int
    kind: str
    dedupe_key: str
    payload: dict[str, Any]
    attempt: int


def retry_delay(attempt: int) -> dt.timedelta:
    """Backoff between tries of a failing event: 2 s, 4 s, 8 s ... capped at 5 minutes."""
    return dt.timedelta(seconds=min(300, 2**attempt))


class Inbox:
    """Stores accepted webhooks and runs their processors."""

    def __init__(self, db: Database, tenants: TenantDirectory, *, max_attempts: int, poll_seconds: float) -> None:
        self.db = db
        self.tenants = tenants
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.processors: dict[str, Processor] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._log = structlog.get_logger("hub.inbox")

    def insert_statement(self) -> Any:
        return (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(InboxEventRow)

    async def accept(self, event: InboxEvent, *, source: str, dedupe_key: str) -> bool:
        """Store a verified event; False when the same (source, dedupe_key) was already stored."""
        tenant = await self.tenants.get(event.tenant)
        statement = (
            self.insert_statement()
            .values(
                tenant_id=tenant.id,
                source=source,
                dedupe_key=dedupe_key,
                kind=event.kind,
                payload=event.to_payload(),
                received_at=utcnow(),
                next_attempt_at=utcnow(),
                attempts=0,
            )
            .on_conflict_do_nothing(index_elements=["source", "dedupe_key"])
        )
        async with self.db.sessions.begin() as session:
            result = await session.execute(statement)
        new = bool(result.rowcount)
        if new:
            self._wake.set()
        else:
            self._log.info("inbox_duplicate", source=source, kind=event.kind)
        return new

    async def _claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        pending = and_(
            InboxEventRow.processed_at.is_(None),
            InboxEventRow.failed_at.is_(None),
            InboxEventRow.next_attempt_at <= now,
            or_(InboxEventRow.lease_until.is_(None), InboxEventRow.lease_until < now),
        )
        async with self.db.sessions.begin() as session:
            rows = (
                await session.execute(
                    select(InboxEventRow.id, InboxEventRow.kind, InboxEventRow.dedupe_key, InboxEventRow.payload, InboxEventRow.attempts)
                    .where(pending)
                    .order_by(InboxEventRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await session.execute(
                    update(InboxEventRow)
                    .where(InboxEventRow.id.in_([row.id for row in rows]))
                    .values(lease_until=now + LEASE, attempts=InboxEventRow.attempts + 1)
                )
        return [Claimed(row.id, row.kind, row.dedupe_key, row.payload, row.attempts + 1) for row in rows]

    async def process_pending(self, limit: int = 50) -> int:
        """Process one batch of due events; returns how many were claimed."""
        rows = await self._claim(limit)
        for row in rows:
            await self._process(row)
        return len(rows)

    async def _process(self, row: Claimed) -> None:
        attempt = row.attempt
        try:
            processor = self.processors[row.kind]
            event = EVENT_CLASSES[row.kind].from_payload(row.payload)
            async with self.db.sessions.begin() as session:
                after = await processor(session, event)
                await session.execute(
                    update(InboxEventRow)
                    .where(InboxEventRow.id == row.id)
                    .values(processed_at=utcnow(), lease_until=None, error=None)
                )
        except Exception as exc:
            await self._failed(row, attempt, exc)
            return
        for task in after:
            # The event is committed: a failure here is logged, never retried (hooks run at most once).
            try:
                await task()
            except Exception as exc:
                self._log.error("inbox_after_commit_failed", id=row.id, kind=row.kind, error=f"{type(exc).__name__}: {exc}")

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

    async def run(self, stop: asyncio.Event) -> None:
        """Process events until `stop` is set; wakes at once when `accept` stored one."""
        while not stop.is_set():
            try:
                claimed = await self.process_pending()
            except Exception as exc:  # a database hiccup must not kill the worker
                self._log.error("inbox_worker_error", error=f"{type(exc).__name__}: {exc}")
                claimed = 0
            if claimed:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
