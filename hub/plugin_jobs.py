"""Plugin jobs: durable plugin work, one row per (tenant, plugin, key), coalesced while pending.

A plugin enqueues work it must not lose (push a contact's attributes to a
CRM, post a note) and registers a handler for its kind; a worker claims due
rows with a lease, runs the handler outside any transaction, and marks the
row done. Enqueueing a key that is already pending replaces its payload and
keeps its due time, so a burst becomes one run; a key that is done is armed
again (unless enqueued `once`, which makes the key a dedupe key). A
`TransientError` (429, 5xx, a timeout) backs off, honouring its
`retry_after`; a `PermanentError` fails the row for an operator to look at.
A crash mid-run leaves the lease to expire and the row to be taken again.
Done rows are kept 30 days (so `once` keys dedupe that long), then pruned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.database import Database
from hub.errors import PermanentError, TransientError
from hub.models import PluginJob, utcnow
from hub.port import Job, JobHandler
from hub.tenants import TenantDirectory

LEASE = dt.timedelta(minutes=2)
MAX_BACKOFF = dt.timedelta(minutes=15)
MAX_ATTEMPTS = 60
"""Transient failures in a row before a job is set aside (about twelve hours at the capped backoff)."""
BATCH = 20
MAX_KEY_LENGTH = 300
KEEP_DONE = dt.timedelta(days=30)
"""How long a done job is kept: its key dedupes redeliveries (`once`) for that long."""
PRUNE_EVERY = 3600.0


def backoff(attempt: int, retry_after: float | None = None) -> dt.timedelta:
    """2 s, 4 s, 8 s ... capped at 15 minutes, with jitter; a vendor's Retry-After is a floor."""
    seconds = min(MAX_BACKOFF.total_seconds(), 2.0**attempt) * random.uniform(0.8, 1.2)
    if retry_after is not None:
        seconds = max(seconds, retry_after)
    return dt.timedelta(seconds=min(seconds, MAX_BACKOFF.total_seconds()))


class PluginJobs:
    """The job table and its worker; plugins reach it through the port (`enqueue_job`, `handle_jobs`)."""

    def __init__(self, db: Database, tenants: TenantDirectory, *, poll_seconds: float) -> None:
        self.db = db
        self.tenants = tenants
        self.poll_seconds = poll_seconds
        self.handlers: dict[tuple[str, str], JobHandler] = {}
        self._wake = asyncio.Event()
        self._log = structlog.get_logger("hub.plugin_jobs")
        insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
        table = PluginJob.__table__
        keys = ["tenant_id", "plugin", "key"]
        self._insert_once = insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c.id)
        upsert = insert(table)
        # A row that is done or set aside starts over; a pending one keeps its due time (the coalescing window).
        finished = or_(table.c.done_at.is_not(None), table.c.failed_at.is_not(None))
        self._upsert = upsert.on_conflict_do_update(
            index_elements=keys,
            set_={
                "kind": upsert.excluded.kind,
                "payload": upsert.excluded.payload,
                "generation": table.c.generation + 1,
                "due_at": case((finished, upsert.excluded.due_at), else_=table.c.due_at),
                "attempts": case((finished, 0), else_=table.c.attempts),
                "last_error": case((finished, None), else_=table.c.last_error),
                "done_at": None,
                "failed_at": None,
                "updated_at": upsert.excluded.updated_at,
            },
        ).returning(table.c.id)

    def handle(self, plugin: str, kind: str, handler: JobHandler) -> None:
        """Register the handler of one plugin's job kind (in this process)."""
        self.handlers[(plugin, kind)] = handler

    async def enqueue(
        self, plugin: str, tenant: str, kind: str, key: str, payload: Mapping[str, Any], *,
        delay_seconds: float = 0.0, once: bool = False,
    ) -> bool:
        """Store (or coalesce) a job; False when `once` and the key was already there. Commits.

        One statement either way (this runs on every appointment change and
        delivery status): `once` inserts or does nothing; otherwise a pending
        row takes the new payload and keeps its due time, and a done or
        set-aside row is armed again at the new due time.
        """
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"job key must be 1..{MAX_KEY_LENGTH} characters")
        info = await self.tenants.get(tenant)
        now = utcnow()
        due = now + dt.timedelta(seconds=max(0.0, delay_seconds))
        row = {
            "tenant_id": info.id, "plugin": plugin, "kind": kind, "key": key, "payload": dict(payload), "generation": 0,
            "due_at": due, "attempts": 0, "created_at": now, "updated_at": now,
        }
        async with self.db.engine.begin() as connection:
            result = await connection.execute(self._insert_once if once else self._upsert, row)
            stored = result.first() is not None
        if stored:
            self._wake.set()
        return stored

    async def _claim(self, limit: int) -> list[tuple[int, int, int, Job]]:
        now = utcnow()
        due = and_(
            PluginJob.done_at.is_(None), PluginJob.failed_at.is_(None), PluginJob.due_at <= now,
            or_(PluginJob.lease_until.is_(None), PluginJob.lease_until < now),
        )
        async with self.db.sessions.begin() as session:
            rows = (
                await session.scalars(select(PluginJob).where(due).order_by(PluginJob.due_at).limit(limit).with_for_update(skip_locked=True))
            ).all()
            leased = []
            for row in rows:
                row.lease_until = now + LEASE
                row.attempts += 1
                leased.append((row.id, row.generation, row.attempts, row.tenant_id, row.plugin, row.kind, row.key, dict(row.payload)))
        claimed = []
        for job_id, generation, attempts, tenant_id, plugin, kind, key, payload in leased:
            slug = (await self.tenants.by_id(tenant_id)).slug
            claimed.append((job_id, generation, attempts, Job(slug, plugin, kind, key, payload, attempts)))
        return claimed

    async def run_due(self, limit: int = BATCH) -> int:
        """Run one batch of due jobs, one after another; returns how many were claimed."""
        claimed = await self._claim(limit)
        for job_id, generation, attempts, job in claimed:
            await self._run(job_id, generation, attempts, job)
        return len(claimed)

    async def _run(self, job_id: int, generation: int, attempts: int, job: Job) -> None:
        handler = self.handlers.get((job.plugin, job.kind))
        values: dict[str, Any]
        try:
            if handler is None:
                raise TransientError(f"no handler for {job.plugin} job {job.kind!r} in this process")
            await handler(job)
        except PermanentError as exc:
            values = {"failed_at": utcnow(), "last_error": _error(exc)}
            self._log.warning("plugin_job_failed", plugin=job.plugin, kind=job.kind, tenant=job.tenant, error=_error(exc))
        except Exception as exc:
            retry_after = exc.retry_after if isinstance(exc, TransientError) else None
            values = {"due_at": utcnow() + backoff(attempts, retry_after), "last_error": _error(exc)}
            if attempts >= MAX_ATTEMPTS:
                values["failed_at"] = utcnow()
            self._log.warning(
                "plugin_job_retry", plugin=job.plugin, kind=job.kind, tenant=job.tenant, attempt=attempts, error=_error(exc)
            )
        else:
            async with self.db.sessions.begin() as session:
                done = await session.execute(
                    update(PluginJob)
                    .where(PluginJob.id == job_id, PluginJob.generation == generation)
                    .values(done_at=utcnow(), lease_until=None, attempts=0, last_error=None)
                    .returning(PluginJob.id)
                )
                if done.first() is None:
                    # Enqueued again while it ran: leave it pending for one more run.
                    await session.execute(update(PluginJob).where(PluginJob.id == job_id).values(lease_until=None, attempts=0))
            return
        async with self.db.sessions.begin() as session:
            await session.execute(update(PluginJob).where(PluginJob.id == job_id).values(lease_until=None, **values))

    async def pending(self, plugin: str, tenant: str) -> list[PluginJob]:
        """The tenant's jobs of this plugin that are not done (pending or set aside), oldest first."""
        info = await self.tenants.get(tenant)
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(PluginJob)
                .where(PluginJob.tenant_id == info.id, PluginJob.plugin == plugin, PluginJob.done_at.is_(None))
                .order_by(PluginJob.id)
            )
            return list(rows.all())

    async def prune(self, older_than: dt.timedelta = KEEP_DONE) -> int:
        """Delete jobs done longer ago than `older_than`; returns how many."""
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                delete(PluginJob).where(PluginJob.done_at < utcnow() - older_than).returning(PluginJob.id)
            )
            return len(result.all())

    async def run(self, stop: asyncio.Event) -> None:
        """Run due jobs until `stop` is set (pruning old done ones hourly); wakes early when a job is enqueued here."""
        loop = asyncio.get_running_loop()
        pruned_at = float("-inf")
        while not stop.is_set():
            try:
                if loop.time() - pruned_at >= PRUNE_EVERY:
                    pruned_at = loop.time()
                    await self.prune()
                claimed = await self.run_due()
            except Exception as exc:  # a database hiccup must not end the worker
                self._log.error("plugin_jobs_worker_error", error=_error(exc))
                claimed = 0
            if claimed:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
