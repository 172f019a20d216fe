"""The outbox: notifications the hub has promised to send, and the one owner of their status.

Nothing else in the hub assigns `notifications.status` (a meta-test checks
it). Each transition is one function here, and each appends its entry to
`status_history`, so the history is written in one place:

| function | from | to |
|---|---|---|
| `enqueue`, `enqueue_many` | (new row) | pending |
| `claim` | pending and due, or sending with its lease run out | sending (a lease: not kept in history) |
| `expire_leases` | sending, held by a dead worker | sending, lease run out (claimed at once) |
| `record` | sending | sent, sandboxed, failed, expired, or pending (retry later) |
| `rearm` | anything but sending | pending (a reminder planned for a new time) |
| `cancel` | pending | canceled |
| `hand_on` | sent, sandboxed, sending, pending | pending, due now (the provider could not deliver it) |
| `report` | by rank, forward only | sent, failed, delivered, read (a provider's status callback) |

The dispatcher's hot path (`claim`, `record`) works on SQLAlchemy Core rows
and one statement per batch (on PostgreSQL, `record` appends each history
entry in SQL rather than rewriting the row's list); the others change ORM rows inside the
caller's transaction and never commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hub.contacts import LinkOutcome, LinkRequest, link, link_many
from hub.models import DeliveryAttempt, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.phones import WHATSAPP_ID, is_whatsapp_id
from hub.tenants import TenantInfo

WAKE_CHANNEL = "hub_outbox"

# Rows per multi-row INSERT of `enqueue_many`: 17 columns each stays well under PostgreSQL's 32,767 parameters.
ENQUEUE_CHUNK = 1000


class NotificationStatus(StrEnum):
    """Where a notification is; the values are what the database and the API hold."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    SANDBOXED = "sandboxed"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


FINAL_STATUSES = frozenset(NotificationStatus) - {NotificationStatus.PENDING, NotificationStatus.SENDING}
# Plain strings, in the order operators read them (click's Choice would show an enum's names).
STATUSES: tuple[str, ...] = (NotificationStatus.PENDING.value, NotificationStatus.SENDING.value, *sorted(s.value for s in FINAL_STATUSES))

# How a provider's message status shows on the notification it delivered.
PROVIDER_STATUS = {
    "sent": NotificationStatus.SENT,
    "delivered": NotificationStatus.DELIVERED,
    "read": NotificationStatus.READ,
    "undelivered": NotificationStatus.FAILED,
    "failed": NotificationStatus.FAILED,
}
# A report only moves a notification forward: a late "delivered" never undoes "read". Statuses not
# ranked (expired, canceled) take any report, as they always have.
_REPORT_RANK = {
    NotificationStatus.PENDING: 0,
    NotificationStatus.SENDING: 1,
    NotificationStatus.SENT: 2,
    NotificationStatus.SANDBOXED: 2,
    NotificationStatus.FAILED: 3,
    NotificationStatus.DELIVERED: 4,
    NotificationStatus.READ: 5,
}


@dataclass(frozen=True)
class Enqueued:
    """The outbox row for a request, and whether this call created it."""

    id: int
    status: str
    created: bool
    link: LinkOutcome | None = None


def address_identity(address: str) -> tuple[str, str]:
    """(identity kind, raw value) for an address as callers write it."""
    raw = address.strip()
    if is_whatsapp_id(raw):  # `whatsapp:US.1349...`: a WhatsApp user who hides their number
        return WHATSAPP_ID, raw
    return ("email", raw) if "@" in raw else ("phone", raw)


def history_entry(status: str, at: dt.datetime, reason: str | None = None) -> dict[str, Any]:
    """One timestamped status change, as stored in `status_history`."""
    entry: dict[str, Any] = {"status": status, "at": at.isoformat()}
    if reason:
        entry["reason"] = reason
    return entry


def _move(row: Notification, status: NotificationStatus, at: dt.datetime, reason: str | None = None) -> None:
    row.status = status
    row.status_history = [*(row.status_history or []), history_entry(status, at, reason)]


# --- enqueue ---------------------------------------------------------------------------------------


def _row(
    tenant: TenantInfo, request: NotificationRequest, contact_id: int, now: dt.datetime, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The outbox row for a request, `pending`, as both enqueue paths insert it."""
    return {
        "tenant_id": tenant.id,
        "contact_id": contact_id,
        "appointment_id": request.appointment_id,
        "address": request.address,
        "kind": request.kind,
        "template": request.template or request.kind,
        "data": request.data,
        "locale": request.locale,
        "channel_order": list(request.channel_order),
        "idempotency_key": request.idempotency_key,
        "status": NotificationStatus.PENDING,
        "status_history": history or [history_entry(NotificationStatus.PENDING, now)],
        "due_at": request.send_at or now,
        "expires_at": request.expires_at,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(Notification)


def _insert_many(session: AsyncSession) -> Any:
    """The Core INSERT ... ON CONFLICT DO NOTHING RETURNING that `enqueue_many` runs with a list of rows."""
    table = Notification.__table__
    dialect = session.get_bind().dialect.name
    return (
        (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
        .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        .returning(table.c.id, table.c.idempotency_key)
    )


async def _wake_workers(session: AsyncSession, dues: Sequence[dt.datetime], now: dt.datetime) -> None:
    """On PostgreSQL, NOTIFY listening workers once for the batch when any of it is due now."""
    if session.get_bind().dialect.name == "postgresql" and any(due <= now + dt.timedelta(seconds=1) for due in dues):
        # Delivered to listening workers when this transaction commits, not before.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})


async def enqueue(session: AsyncSession, tenant: TenantInfo, request: NotificationRequest) -> Enqueued:
    """Write the outbox row, `pending` (or find the one with the same idempotency key); never commits."""
    if request.idempotency_key:
        existing = await _by_key(session, tenant.id, request.idempotency_key)
        if existing is not None:
            return Enqueued(existing.id, existing.status, False)
    outcome = None
    contact_id = request.contact_id
    if contact_id is None:
        if not request.address:
            raise ValueError("a notification needs a contact_id or an address")
        outcome = await link(session, tenant, [address_identity(request.address)], reason="notification")
        contact_id = outcome.contact.id
    now = utcnow()
    values = _row(tenant, request, contact_id, now)
    statement = _insert(session).values(**values).on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
    new_id = await session.scalar(statement.returning(Notification.id))
    if new_id is None:  # a concurrent request with the same key won the insert
        existing = await _by_key(session, tenant.id, request.idempotency_key or "")
        assert existing is not None
        return Enqueued(existing.id, existing.status, False)
    await _wake_workers(session, [values["due_at"]], now)
    return Enqueued(int(new_id), NotificationStatus.PENDING, True, outcome)


async def enqueue_many(session: AsyncSession, tenant: TenantInfo, requests: Sequence[NotificationRequest]) -> list[Enqueued]:
    """`enqueue` for a batch, with the answers enqueueing them one by one in order would give; never commits.

    One SELECT of the idempotency keys, `link_many` for the addresses, and one multi-row
    INSERT ... ON CONFLICT DO NOTHING RETURNING per chunk of rows; a request repeating an earlier
    one's key gets that one's row, and the dispatcher is woken once for the batch.
    """
    for index, request in enumerate(requests):
        if request.contact_id is None and not request.address:
            raise ValueError(f"request {index}: a notification needs a contact_id or an address")
    keys = list(dict.fromkeys(r.idempotency_key for r in requests if r.idempotency_key))
    stored = await _by_keys(session, tenant.id, keys)
    results: list[Enqueued | None] = [None] * len(requests)
    first_of: dict[str, int] = {}
    new: list[int] = []
    for index, request in enumerate(requests):
        key = request.idempotency_key
        if key and key in stored:
            results[index] = Enqueued(*stored[key], False)
        elif key and key in first_of:
            continue  # answered below with the row of the first request naming it
        else:
            if key:
                first_of[key] = index
            new.append(index)
    addressed = [i for i in new if requests[i].contact_id is None]
    linked = dict(zip(addressed, await link_many(session, tenant, [
        LinkRequest([address_identity(requests[i].address or "")], reason="notification") for i in addressed
    ])))
    now = utcnow()
    lost: list[int] = []
    dues: list[dt.datetime] = []
    history = [history_entry(NotificationStatus.PENDING, now)]  # one list for the batch: it is only serialised
    for start in range(0, len(new), ENQUEUE_CHUNK):
        chunk = new[start:start + ENQUEUE_CHUNK]
        rows = [_row(tenant, requests[i], requests[i].contact_id or linked[i].contact.id, now, history) for i in chunk]
        # A one-row statement with many parameter sets: SQLAlchemy sends it as multi-row INSERTs
        # ("insertmanyvalues") without compiling a statement with thousands of bound parameters.
        returned = sorted((await session.execute(_insert_many(session), rows)).all())
        # Rows without a key never conflict, and ids are drawn in the order of the VALUES list (a
        # sequence on PostgreSQL, the next rowid on SQLite): sorted by id they follow the requests.
        by_key = {key: int(row_id) for row_id, key in returned if key is not None}
        unkeyed = iter(int(row_id) for row_id, key in returned if key is None)
        for index in chunk:
            key = requests[index].idempotency_key
            row_id = by_key.get(key) if key else next(unkeyed)
            if row_id is None:  # a concurrent request with the same key won the insert
                lost.append(index)
            else:
                results[index] = Enqueued(row_id, NotificationStatus.PENDING, True, linked.get(index))
                dues.append(requests[index].send_at or now)
    if lost:
        winners = await _by_keys(session, tenant.id, [requests[i].idempotency_key or "" for i in lost])
        for index in lost:
            results[index] = Enqueued(*winners[requests[index].idempotency_key or ""], False)
    for index, request in enumerate(requests):
        if results[index] is None:
            first = results[first_of[request.idempotency_key or ""]]
            assert first is not None
            results[index] = Enqueued(first.id, first.status, False)
    await _wake_workers(session, dues, now)
    return [result for result in results if result is not None]


async def _by_keys(session: AsyncSession, tenant_id: int, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Idempotency key -> (id, status) of the stored rows with these keys."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(keys), ENQUEUE_CHUNK):
        rows = await session.execute(
            select(Notification.idempotency_key, Notification.id, Notification.status)
            .where(Notification.tenant_id == tenant_id, Notification.idempotency_key.in_(keys[start:start + ENQUEUE_CHUNK]))
        )
        found.update({str(key): (int(row_id), status) for key, row_id, status in rows.all()})
    return found


async def _by_key(session: AsyncSession, tenant_id: int, key: str) -> Notification | None:
    return await session.scalar(
        select(Notification).where(Notification.tenant_id == tenant_id, Notification.idempotency_key == key)
    )


# --- claim and record: the dispatcher's batch, on Core rows ---------------------------------------


async def lapsed_leases(connection: AsyncConnection, *, now: dt.datetime) -> dict[int, tuple[str | None, str | None, Any]]:
    """Rows `sending` whose lease ran out: id -> (the owner that died, its channel, its lease end).

    Read in the claim's transaction, before `claim`: a row claimed from this set was being sent
    when its worker stopped, and whether that send went out is unknown.
    """
    rows = await connection.execute(
        select(Notification.id, Notification.lease_owner, Notification.channel, Notification.lease_until)
        .where(Notification.status == NotificationStatus.SENDING, Notification.lease_until < now)
        .with_for_update(skip_locked=True)
    )
    return {row.id: (row.lease_owner, row.channel, row.lease_until) for row in rows}


async def expire_leases(connection: AsyncConnection, owners: Sequence[str], *, now: dt.datetime) -> int:
    """End the leases of workers known to be dead (a restarted process's former self), so they are retaken now."""
    if not owners:
        return 0
    table = Notification.__table__
    result = await connection.execute(
        table.update()
        .where(and_(table.c.status == NotificationStatus.SENDING, table.c.lease_owner.in_(list(owners)), table.c.lease_until >= now))
        .values(lease_until=now - dt.timedelta(microseconds=1))
    )
    return int(result.rowcount or 0)


async def claim(connection: AsyncConnection, *, now: dt.datetime, lease: dt.timedelta, owner: str, limit: int) -> list[Any]:
    """Take up to `limit` due rows (oldest due first) under a lease for `owner`: one UPDATE ... RETURNING.

    Due means `pending` with `due_at` and `next_attempt_at` passed, or `sending` with its lease
    run out (a worker died). On PostgreSQL the selection skips rows other workers hold.
    """
    due = or_(
        and_(
            Notification.status == NotificationStatus.PENDING,
            Notification.due_at <= now,
            or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
        ),
        and_(Notification.status == NotificationStatus.SENDING, Notification.lease_until < now),
    )
    ids = (
        select(Notification.id)
        .where(due)
        .order_by(Notification.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    table = Notification.__table__
    statement = (
        table.update()
        .where(table.c.id.in_(ids))
        .values(status=NotificationStatus.SENDING, lease_until=now + lease, lease_owner=owner)
        .returning(*table.columns)
    )
    return list((await connection.execute(statement)).all())


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a dispatch round decided for one claimed row; made by `sent`, `retry_later`, `failed`, `expired`."""

    row: Any
    """The claimed row (its id, history and channel are read)."""
    status: NotificationStatus
    reason: str | None
    attempts: int
    channel: str | None = None
    next_attempt_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None


def sent(row: Any, channel: str, *, sandboxed: bool, attempts: int, at: dt.datetime) -> Verdict:
    """A channel took it (or, in sandbox mode, recorded it instead)."""
    status = NotificationStatus.SANDBOXED if sandboxed else NotificationStatus.SENT
    return Verdict(row, status, None, attempts, channel, sent_at=at)


def retry_later(row: Any, reason: str, *, attempts: int, at: dt.datetime, channel: str | None = None) -> Verdict:
    """A transient failure: back to `pending`, not claimed again before `at`."""
    return Verdict(row, NotificationStatus.PENDING, reason, attempts, channel, next_attempt_at=at)


def failed(row: Any, reason: str, *, attempts: int) -> Verdict:
    """No channel could take it; `reason` says why for each."""
    return Verdict(row, NotificationStatus.FAILED, reason, attempts)


def expired(row: Any) -> Verdict:
    """Its `expires_at` passed before it went out: nothing is sent."""
    return Verdict(row, NotificationStatus.EXPIRED, f"not sent before it expired at {row.expires_at.isoformat()}", row.attempts)


# PostgreSQL: the batch's verdicts as arrays, one UPDATE joined to them, and each history entry
# appended by the server (the rows' histories are not rewritten and sent back). Timestamps are naive
# UTC, as `UTCDateTime` stores them.
_RECORD_PG = text("""
UPDATE notifications AS n SET
    status = v.status,
    status_history = COALESCE(n.status_history, '[]'::jsonb) || jsonb_build_array(v.entry::jsonb),
    attempts = v.attempts, next_attempt_at = v.next_at, channel = v.channel, last_error = v.error, sent_at = v.sent_at,
    lease_until = NULL, lease_owner = NULL, updated_at = :now
FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:entries AS text[]), CAST(:attempts AS integer[]),
            CAST(:nexts AS timestamp[]), CAST(:channels AS text[]), CAST(:errors AS text[]), CAST(:sents AS timestamp[]))
    AS v(id, status, entry, attempts, next_at, channel, error, sent_at)
WHERE n.id = v.id AND n.lease_owner = :owner
""")


def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(dt.UTC).replace(tzinfo=None)


async def record(connection: AsyncConnection, verdicts: Sequence[Verdict], *, owner: str, now: dt.datetime) -> None:
    """Write a batch of verdicts in one statement, releasing the lease; rows `owner` lost are left alone."""
    if not verdicts:
        return
    if connection.dialect.name == "postgresql":
        await connection.execute(_RECORD_PG, {
            "ids": [v.row.id for v in verdicts],
            "statuses": [str(v.status) for v in verdicts],
            "entries": [json.dumps(history_entry(v.status, now, v.reason)) for v in verdicts],
            "attempts": [v.attempts for v in verdicts],
            "nexts": [_naive(v.next_attempt_at) for v in verdicts],
            "channels": [v.channel or v.row.channel for v in verdicts],
            "errors": [v.reason for v in verdicts],
            "sents": [_naive(v.sent_at) for v in verdicts],
            "now": _naive(now),
            "owner": owner,
        })
        return
    params = [
        {
            "b_id": v.row.id,
            "b_status": v.status,
            "b_history": [*(v.row.status_history or []), history_entry(v.status, now, v.reason)],
            "b_attempts": v.attempts,
            "b_next": v.next_attempt_at,
            "b_channel": v.channel or v.row.channel,
            "b_error": v.reason,
            "b_sent": v.sent_at,
        }
        for v in verdicts
    ]
    table = Notification.__table__
    await connection.execute(
        table.update()
        .where(and_(table.c.id == bindparam("b_id"), table.c.lease_owner == owner))
        .values(
            status=bindparam("b_status"), status_history=bindparam("b_history"), attempts=bindparam("b_attempts"),
            next_attempt_at=bindparam("b_next"), channel=bindparam("b_channel"), last_error=bindparam("b_error"),
            sent_at=bindparam("b_sent"), lease_until=None, lease_owner=None, updated_at=now,
        ),
        params,
    )


# --- changes from appointments and provider reports, on ORM rows -----------------------------------


def rearm(row: Notification, *, due_at: dt.datetime, expires_at: dt.datetime | None, reason: str) -> bool:
    """Make a planned notification a new promise at `due_at` (even if it went out or was canceled).

    Back to `pending` with a fresh retry budget. One in flight (`sending`) is left alone and
    False returned: its expiry check still guards the old time.
    """
    if row.status == NotificationStatus.SENDING:
        return False
    row.due_at = due_at
    row.expires_at = expires_at
    row.attempts = 0
    row.next_attempt_at = None
    row.last_error = None
    _move(row, NotificationStatus.PENDING, utcnow(), reason)
    return True


def cancel(row: Notification, reason: str) -> bool:
    """Cancel a notification that has not gone out (`pending`); False for any other status."""
    if row.status != NotificationStatus.PENDING:
        return False
    row.last_error = reason
    _move(row, NotificationStatus.CANCELED, utcnow(), reason)
    return True


async def cancel_pending(session: AsyncSession, appointment_id: int, reason: str, kinds: tuple[str, ...] = ()) -> int:
    """Cancel an appointment's notifications that have not gone out (all, or only these kinds); returns how many."""
    query = select(Notification).where(
        Notification.appointment_id == appointment_id, Notification.status == NotificationStatus.PENDING
    )
    if kinds:
        query = query.where(Notification.kind.in_(kinds))
    canceled = sum(cancel(row, reason) for row in (await session.scalars(query)).all())
    await session.flush()
    return canceled


def can_hand_on(row: Notification) -> bool:
    """A failed delivery is retried on another channel unless it is too late to matter."""
    return row.expires_at is None or utcnow() < row.expires_at


def hand_on(
    session: AsyncSession, row: Notification, *, channel: str, provider_id: str | None, error: str,
    at: dt.datetime, reason: str | None,
) -> None:
    """The provider took it on `channel` but could not deliver it: record that channel as failed
    for good and put the notification back, due now, so the dispatcher tries the next one."""
    session.add(DeliveryAttempt(
        notification_id=row.id, channel=channel, provider_id=provider_id, outcome="permanent", error=error,
        finished_at=utcnow(),
    ))
    row.due_at = utcnow()
    row.next_attempt_at = None
    _move(row, NotificationStatus.PENDING, at, reason)


def report(
    session: AsyncSession, row: Notification, *, provider_status: str, channel: str, provider_id: str | None,
    at: dt.datetime, reason: str | None,
) -> bool:
    """Apply a provider's report about the message that delivered this notification, forward only.

    An undelivered or failed report while there is still time hands the notification on
    (`hand_on`); True then, so the caller wakes the dispatcher.
    """
    status = PROVIDER_STATUS.get(provider_status)
    if row.status in (NotificationStatus.PENDING, NotificationStatus.SENDING):
        # Not out in its current form (re-armed, or handed to the next channel): a report about
        # an earlier message says nothing about the promise it is now.
        return False
    if status is None or _REPORT_RANK[status] <= _REPORT_RANK.get(NotificationStatus(row.status), -1):
        return False
    handed_on = status == NotificationStatus.FAILED and can_hand_on(row)
    if handed_on:
        hand_on(session, row, channel=channel, provider_id=provider_id, error=f"{provider_status}: {reason or 'no reason given'}",
                at=at, reason=reason)
    else:
        _move(row, status, at, reason)
    if reason:
        row.last_error = f"{channel}: {provider_status}: {reason}"
    return handed_on
