"""The dispatcher: claims due notifications, renders them, sends them, records the outcome.

One batch at a time: a single UPDATE ... RETURNING claims due rows with a
lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers in several
processes never take the same row; SQLite serialises writers by itself),
one query per table loads what the batch needs, the sends run
concurrently, and one transaction records every attempt and outcome. A row
whose worker died stays `sending` until its lease runs out and is then
claimed again: delivery is at-least-once, and only rows that were in flight
at the crash can be sent twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.channels import Channel, OutboundMessage
from hub.errors import PermanentError, TransientError
from hub.input_rules import web_link
from hub.models import (
    Appointment,
    Contact,
    Conversation,
    DeliveryAttempt,
    Identity,
    Message,
    Notification,
    utcnow,
)
from hub import outbox
from hub.messaging import confirms_opt_out
from hub.outbound_webhooks import emit_outcomes
from hub.outbox import WAKE_CHANNEL, NotificationStatus, Verdict, history_entry
from hub.templates import TemplateError
from hub.tenants import TenantInfo

if TYPE_CHECKING:
    from hub.core import Hub

def backoff(attempt: int, retry_after: float | None = None, base: float = 2.0) -> dt.timedelta:
    """Exponential backoff with jitter: about base, 2x base, 4x base ... capped at 10 minutes."""
    ceiling = min(600.0, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(ceiling / 2, ceiling)
    return dt.timedelta(seconds=max(delay, retry_after or 0.0))


@dataclass
class Outcome:
    """What happened to one claimed notification in this round."""

    verdict: Verdict
    """The notification's new status, written by `outbox.record`."""
    tries: list[dict[str, Any]] = field(default_factory=list)
    """delivery_attempts rows to insert."""
    message: dict[str, Any] | None = None
    """The outbound message to record in the contact's conversation, with its medium."""


@dataclass(frozen=True)
class BatchContext:
    """Everything a batch needs, loaded with one query per table."""

    identities: dict[int, list[Any]]
    contacts: dict[int, Any]
    appointments: dict[int, Any]
    last_inbound: dict[tuple[int, str], dt.datetime]
    failed_channels: dict[int, set[str]]
    transient_tries: dict[tuple[int, str], int]
    """(notification id, channel) -> transient failures so far: the per-channel retry budget."""


def _alive(owner: str, host: str) -> bool:
    """Whether the dispatcher named `owner` (host:pid:object) on this host may still be running."""
    parts = owner.split(":")
    if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
        return True  # not ours to judge
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # this process (another dispatcher object of it, in tests)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


APPOINTMENT_DEFAULTS: dict[str, Any] = {
    "id": None, "external_id": None, "end": None, "service": None, "location": None, "timezone": None,
    "status": "scheduled", "cancel_url": None, "reschedule_url": None, "sequence": 0,
}
"""The optional keys of a template's `appointment`, for appointments given as data."""


class Dispatcher:
    """Sends what the outbox holds; `run` is the worker loop."""

    def __init__(self, hub: Hub) -> None:
        settings = hub.config.hub
        self.hub = hub
        self.batch_size = settings.dispatch_batch_size
        self.concurrency = settings.dispatch_concurrency
        self.poll_seconds = settings.dispatch_poll_seconds
        self.lease = dt.timedelta(seconds=settings.dispatch_lease_seconds)
        self.retry_base = settings.retry_base_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._log = structlog.get_logger("hub.dispatcher")

    def wake(self) -> None:
        """Look for due work now rather than at the next poll."""
        self._wake.set()

    # --- claiming ------------------------------------------------------------

    async def _claim(self, now: dt.datetime) -> list[Any]:
        # Core statements on a plain connection: this is the hot path, no ORM objects needed.
        async with self.hub.db.engine.begin() as connection:
            lapsed = await outbox.lapsed_leases(connection, now=now)
            rows = await outbox.claim(connection, now=now, lease=self.lease, owner=self.worker_id, limit=self.batch_size)
            # A retaken row was being sent when its worker died: the record says so, since it may have gone out.
            interrupted = [
                {"notification_id": row.id, "channel": (lapsed[row.id][1] or "-")[:64], "provider_id": None, "outcome": "interrupted",
                 "error": f"worker {lapsed[row.id][0] or '?'} stopped before recording the outcome: it may have been sent",
                 "started_at": (lapsed[row.id][2] or now) - self.lease, "finished_at": now}
                for row in rows if row.id in lapsed
            ]
            if interrupted:
                await connection.execute(DeliveryAttempt.__table__.insert(), interrupted)
            return rows

    async def reclaim_dead_leases(self) -> int:
        """End at once the leases held by this host's dead dispatchers (a process restarted after kill -9)."""
        now = utcnow()
        host = socket.gethostname()
        async with self.hub.db.engine.begin() as connection:
            owners = (await connection.execute(
                select(Notification.lease_owner).where(Notification.status == NotificationStatus.SENDING, Notification.lease_owner.like(f"{host}:%")).distinct()
            )).scalars().all()
            dead = [owner for owner in owners if owner and owner != self.worker_id and not _alive(owner, host)]
            count = await outbox.expire_leases(connection, dead, now=now)
        if count:
            self._log.info("dead_leases_reclaimed", notifications=count, workers=len(dead))
        return count

    async def _context(self, rows: Sequence[Any]) -> BatchContext:
        contact_ids = {row.contact_id for row in rows if row.contact_id}
        appointment_ids = {row.appointment_id for row in rows if row.appointment_id}
        retried = [row.id for row in rows if row.attempts]
        identity, contact, appointment, conversation = (
            Identity.__table__, Contact.__table__, Appointment.__table__, Conversation.__table__,
        )
        async with self.hub.db.engine.connect() as session:
            identities: dict[int, list[Any]] = {}
            for ident in await session.execute(
                select(identity.c.id, identity.c.contact_id, identity.c.kind, identity.c.value, identity.c.opted_out)
                .where(identity.c.contact_id.in_(contact_ids))
                .order_by(identity.c.last_seen_at.desc(), identity.c.id)
            ):
                identities.setdefault(ident.contact_id, []).append(ident)
            contacts = {
                c.id: c
                for c in await session.execute(
                    select(contact.c.id, contact.c.name, contact.c.locale, contact.c.timezone).where(contact.c.id.in_(contact_ids))
                )
            }
            appointments = (
                {a.id: a for a in await session.execute(select(appointment).where(appointment.c.id.in_(appointment_ids)))}
                if appointment_ids
                else {}
            )
            last_inbound = {
                (c.contact_id, c.medium): c.last_inbound_at
                for c in await session.execute(
                    select(conversation.c.contact_id, conversation.c.medium, conversation.c.last_inbound_at).where(
                        conversation.c.contact_id.in_(contact_ids), conversation.c.last_inbound_at.is_not(None)
                    )
                )
            }
            failed: dict[int, set[str]] = {}
            transient: dict[tuple[int, str], int] = {}
            if retried:
                tries = await session.execute(
                    select(DeliveryAttempt.notification_id, DeliveryAttempt.channel, DeliveryAttempt.outcome).where(
                        DeliveryAttempt.notification_id.in_(retried)
                    )
                )
                for notification_id, channel, outcome in tries:
                    if outcome in ("permanent", "exhausted"):
                        failed.setdefault(notification_id, set()).add(channel)
                    elif outcome == "transient":
                        transient[(notification_id, channel)] = transient.get((notification_id, channel), 0) + 1
        return BatchContext(identities, contacts, appointments, last_inbound, failed, transient)

    # --- one notification ----------------------------------------------------

    def candidates(self, tenant: TenantInfo, order: Sequence[str]) -> list[Channel]:
        """The channels a notification may use, in order: names as given, mediums expanded."""
        chosen: list[Channel] = []
        for entry in order or tenant.channel_order:
            matches = [self.hub.channels[entry]] if entry in self.hub.channels else [
                c for c in self.hub.channels.values() if c.medium == entry
            ]
            chosen.extend(c for c in matches if c not in chosen)
        return chosen

    def render_context(self, row: Any, tenant: TenantInfo, ctx: BatchContext) -> dict[str, Any]:
        """What templates see: the notification's data plus contact, tenant and appointment."""
        contact = ctx.contacts.get(row.contact_id)
        appointment = ctx.appointments.get(row.appointment_id) if row.appointment_id else None
        context: dict[str, Any] = {"reason": None, **(row.data or {})}
        context["contact"] = {"name": contact.name if contact else None, "id": row.contact_id}
        context["tenant"] = {"name": tenant.name, "slug": tenant.slug}
        if appointment is not None:
            context["appointment"] = {
                "id": appointment.id,
                "external_id": appointment.external_id,
                "start": appointment.start_at.isoformat(),
                "end": appointment.end_at.isoformat() if appointment.end_at else None,
                "service": appointment.service,
                "location": appointment.location,
                "timezone": appointment.timezone,
                "status": appointment.status,
                # Only http(s) links reach a template's href, whatever the source stored.
                "cancel_url": web_link(appointment.cancel_url),
                "reschedule_url": web_link(appointment.reschedule_url),
                "sequence": int((appointment.data or {}).get("sequence", 0)),
            }
        elif isinstance(context.get("appointment"), dict):
            # An appointment given as data (`hub send --data`, the API): its optional keys are there, as None,
            # so templates test them under StrictUndefined; only http(s) links survive.
            given = context["appointment"]
            context["appointment"] = {
                **APPOINTMENT_DEFAULTS, **given,
                "cancel_url": web_link(given.get("cancel_url") if isinstance(given.get("cancel_url"), str) else None),
                "reschedule_url": web_link(given.get("reschedule_url") if isinstance(given.get("reschedule_url"), str) else None),
            }
        else:
            context.setdefault("appointment", None)
        return context

    async def _deliver(self, row: Any, ctx: BatchContext, now: dt.datetime) -> Outcome:
        hub = self.hub
        tenant = await hub.tenants.by_id(row.tenant_id)
        if row.expires_at is not None and now >= row.expires_at:
            return Outcome(outbox.expired(row))
        contact = ctx.contacts.get(row.contact_id)
        locale = row.locale or (contact.locale if contact else None) or tenant.locale
        appointment = ctx.appointments.get(row.appointment_id) if row.appointment_id else None
        timezone = (contact.timezone if contact else None) or (appointment.timezone if appointment else None) or tenant.timezone
        context = self.render_context(row, tenant, ctx)
        failed = ctx.failed_channels.get(row.id, set())
        skipped: list[str] = []
        unconfigured: list[str] = []
        tries: list[dict[str, Any]] = []
        for channel in self.candidates(tenant, row.channel_order):
            if channel.name in failed:
                continue
            plugin = hub.channel_plugins.get(channel.name, "")
            if plugin and hub.settings_for(plugin, tenant.slug) is None:
                # Channels a tenant never set up are named only when nothing else was tried.
                unconfigured.append(f"{channel.name}: not configured")
                continue
            # A channel may reach one account by several kinds of address (WhatsApp: a phone or a
            # business-scoped id): the most recently seen is used (the older address on a tie, the
            # one that has been working), and an opt-out on any of them counts.
            kinds = getattr(channel, "address_kinds", None) or (channel.address_kind,)
            aliases = [i for i in ctx.identities.get(row.contact_id, []) if i.kind in kinds]
            identity = aliases[0] if aliases else None
            if identity is None:
                skipped.append(f"{channel.name}: no {channel.address_kind} for this contact")
                continue
            checked = aliases if len(kinds) > 1 else [identity]
            if any(
                channel.medium in (i.opted_out or {})
                and not confirms_opt_out(row.kind, (i.opted_out or {})[channel.medium], now)
                for i in checked
            ):
                skipped.append(f"{channel.name}: opted out of {channel.medium}")
                continue
            try:
                rendered = hub.templates.render(
                    kind=row.template, medium=channel.medium, locale=locale, timezone=timezone,
                    context=context, tenant_dir=hub.tenant_template_dir(tenant),
                )
            except TemplateError as exc:
                tries.append(self._try(row, channel, "permanent", str(exc), now))
                skipped.append(f"{channel.name}: {exc}")
                continue
            message = OutboundMessage(
                tenant=tenant.slug, to=identity.value, body=rendered.text, kind=row.kind, subject=rendered.subject,
                html=rendered.html, notification_id=row.id, locale=locale, timezone=timezone, data=context,
                last_inbound_at=ctx.last_inbound.get((row.contact_id, channel.medium)),
            )
            started = utcnow()
            retry_after: float | None = None
            try:
                delivery = await channel.send(message)
            except PermanentError as exc:
                tries.append(self._try(row, channel, "permanent", exc.reason, started))
                skipped.append(f"{channel.name}: {exc.reason}")
                if exc.opted_out:
                    # Through the durable inbox: applied exactly once even if this worker dies now.
                    await hub.request_opt_out(
                        tenant.slug, address_kind=identity.kind, address=identity.value, medium=channel.medium,
                        opted_out=True, source="dispatcher", dedupe_key=f"opt-out:{row.id}:{channel.name}",
                    )
                continue
            except Exception as exc:
                if isinstance(exc, TransientError):
                    reason, retry_after = exc.reason, exc.retry_after
                else:  # a channel bug must not lose the notification: retried like a transient failure
                    reason = f"{type(exc).__name__}: {exc}"
                    self._log.error("channel_crashed", channel=channel.name, error=reason)
                channel_tries = ctx.transient_tries.get((row.id, channel.name), 0) + 1
                if channel_tries < tenant.max_attempts:
                    tries.append(self._try(row, channel, "transient", reason, started))
                    return Outcome(
                        outbox.retry_later(row, f"{channel.name}: {reason}", channel=channel.name, attempts=row.attempts + 1,
                                           at=now + backoff(channel_tries, retry_after, self.retry_base)),
                        tries,
                    )
                tries.append(self._try(row, channel, "exhausted", reason, started))
                skipped.append(f"{channel.name}: gave up after {channel_tries} tries: {reason}")
                continue
            verdict = outbox.sent(row, channel.name, sandboxed=delivery.status == "sandboxed", attempts=row.attempts + 1, at=utcnow())
            tries.append(self._try(row, channel, verdict.status, None, started, delivery.provider_id))
            return Outcome(
                verdict, tries,
                message={"medium": channel.medium, "channel": channel.name, "body": rendered.text, "provider_id": delivery.provider_id},
            )
        reason = "; ".join(skipped or unconfigured) or "no channel available"
        return Outcome(outbox.failed(row, reason, attempts=row.attempts + len(tries)), tries)

    def _try(self, row: Any, channel: Channel, outcome: str, error: str | None, started: dt.datetime, provider_id: str | None = None) -> dict[str, Any]:
        return {
            "notification_id": row.id, "channel": channel.name, "provider_id": provider_id, "outcome": outcome,
            "error": error, "started_at": started, "finished_at": utcnow(),
        }

    # --- recording -----------------------------------------------------------

    async def _record(self, outcomes: list[Outcome]) -> None:
        now = utcnow()
        async with self.hub.db.engine.begin() as connection:
            tries = [t for o in outcomes for t in o.tries]
            if tries:
                await connection.execute(DeliveryAttempt.__table__.insert(), tries)
            await self._record_messages(connection, [o for o in outcomes if o.message], now)
            await outbox.record(connection, [o.verdict for o in outcomes], owner=self.worker_id, now=now)
            # issue 12: notification.sent / .failed webhooks, committed with the outcomes they report
            async with AsyncSession(bind=connection) as session:
                await emit_outcomes(session, self.hub.tenants, [o.verdict for o in outcomes])
                await session.flush()
        for o in outcomes:
            self.hub.metrics.dispatched.labels(o.verdict.channel or "none", o.verdict.status).inc()

    async def _record_messages(self, connection: Any, sent: list[Outcome], now: dt.datetime) -> None:
        if not sent:
            return
        pairs = {(o.verdict.row.tenant_id, o.verdict.row.contact_id, o.message["medium"], o.message["channel"]) for o in sent if o.message}
        table = Conversation.__table__
        insert = (pg_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)
        # One statement finds or creates each thread and stamps it, returning the ids to file messages under.
        upsert = insert.on_conflict_do_update(
            index_elements=["tenant_id", "contact_id", "medium"], set_={"last_outbound_at": insert.excluded.last_outbound_at}
        ).returning(table.c.id, table.c.contact_id, table.c.medium)
        result = await connection.execute(
            upsert,
            [
                {"tenant_id": t, "contact_id": c, "medium": m, "channel": ch, "created_at": now, "last_outbound_at": now}
                for t, c, m, ch in pairs
            ],
        )
        conversations = {(row.contact_id, row.medium): row.id for row in result}
        await connection.execute(
            Message.__table__.insert(),
            [
                {
                    "tenant_id": o.verdict.row.tenant_id,
                    "conversation_id": conversations[(o.verdict.row.contact_id, o.message["medium"])],
                    "direction": "out",
                    "channel": o.message["channel"],
                    "body": o.message["body"],
                    "media": [],
                    "provider_id": o.message["provider_id"],
                    "status": o.verdict.status,
                    "status_history": [history_entry(o.verdict.status, now)],
                    "notification_id": o.verdict.row.id,
                    "created_at": now,
                    "updated_at": now,
                }
                for o in sent
                if o.message
            ],
        )

    # --- the loop ------------------------------------------------------------

    async def dispatch_due(self) -> int:
        """Claim, send and record one batch of due notifications; returns how many were claimed."""
        now = utcnow()
        rows = await self._claim(now)
        if not rows:
            return 0
        ctx = await self._context(rows)
        limit = asyncio.Semaphore(self.concurrency)

        async def one(row: Any) -> Outcome:
            async with limit:
                try:
                    return await self._deliver(row, ctx, now)
                except Exception as exc:  # recorded as a retry: nothing claimed is ever dropped
                    self._log.error("dispatch_error", notification=row.id, error=f"{type(exc).__name__}: {exc}")
                    return Outcome(outbox.retry_later(row, f"dispatch error: {type(exc).__name__}", attempts=row.attempts + 1,
                                                      at=now + backoff(row.attempts + 1, base=self.retry_base)))

        outcomes = await asyncio.gather(*(one(row) for row in rows))
        await self._record(list(outcomes))
        return len(rows)

    async def _next_due_in(self) -> float:
        async with self.hub.db.sessions() as session:
            due = await session.scalar(
                select(func.min(func.coalesce(Notification.next_attempt_at, Notification.due_at))).where(Notification.status == NotificationStatus.PENDING)
            )
        if due is None:
            return self.poll_seconds
        if isinstance(due, str):  # SQLite returns min() of a datetime column as text
            due = dt.datetime.fromisoformat(due).replace(tzinfo=dt.UTC)
        elif due.tzinfo is None:
            due = due.replace(tzinfo=dt.UTC)
        return max(0.0, min(self.poll_seconds, (due - utcnow()).total_seconds()))

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set; sleeps until the next due time, a wake-up, or the poll interval."""
        listener = await self._listen()
        try:
            try:
                await self.reclaim_dead_leases()
            except Exception as exc:  # the leases run out by themselves anyway
                self._log.warning("dead_lease_reclaim_failed", error=type(exc).__name__)
            while not stop.is_set():
                try:
                    if await self.dispatch_due():
                        continue
                    delay = await self._next_due_in()
                except Exception as exc:  # a database hiccup must not kill the worker
                    self._log.error("dispatcher_error", error=f"{type(exc).__name__}: {exc}")
                    delay = self.poll_seconds
                if delay <= 0:
                    continue
                self._wake.clear()
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if listener is not None:
                await listener.close()

    async def _listen(self) -> Any:
        """On PostgreSQL, LISTEN for new outbox rows committed by any process."""
        if self.hub.db.dialect != "postgresql":
            return None
        import asyncpg

        url = self.hub.db.engine.url.set(drivername="postgresql")
        try:
            connection = await asyncpg.connect(url.render_as_string(hide_password=False))
            await connection.add_listener(WAKE_CHANNEL, lambda *_args: self.wake())
        except Exception as exc:  # polling still works without it
            self._log.warning("listen_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return connection
