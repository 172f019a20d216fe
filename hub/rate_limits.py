"""Rate limits: fixed one-minute windows per bucket (a tenant's API use, one source's webhooks).

On PostgreSQL the counts live in `rate_limit_windows` and every process adds
to the same row with one upsert, so two `hub serve` processes share a limit.
A process takes its hits from that row in blocks (a lease): one upsert adds
a block and the next requests of the bucket use it up without a statement.
Blocks are an eighth of what is left of the limit (at most `MAX_LEASE`), so
near the limit they shrink to one request and the count is exact; a process
never lets through more than the row granted it, so together they never
pass the limit (another process's unused block can only make a refusal come
a little early). Without leases every request was a transaction of its own
on one hot row, and with fsync on, their commits queued behind each other.
On SQLite (one process, the embedded default) they are counted in memory:
a write per request would cost more than the limit protects.
"""

from __future__ import annotations

import asyncio
import math
import time

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hub.database import Database
from hub.models import RateLimitWindow

WINDOW_SECONDS = 60
MAX_LEASE = 64
LEASE_SHARE = 8
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit TO OFF")


class RateLimiter:
    """Counts requests per bucket and says how long to wait once a bucket is over its limit."""

    def __init__(self, db: Database, *, window_seconds: int = WINDOW_SECONDS) -> None:
        self._db = db
        self._window = window_seconds
        self._counts: dict[str, int] = {}
        self._current: int | None = None
        """The window this process last counted in (a process uses one database, so one of the two paths)."""
        self._leases: dict[str, tuple[int, int]] = {}
        """bucket -> (window start, hits left of the block this process took from the shared row)."""
        self._locks: dict[str, asyncio.Lock] = {}

    async def hit(self, bucket: str, limit: int, *, now: float | None = None) -> float | None:
        """Count one request; None when it is within `limit` per window, else the seconds until the window ends."""
        now = time.time() if now is None else now
        start = int(now // self._window) * self._window
        if self._db.dialect == "postgresql":
            allowed = await self._shared(bucket, start, limit)
        else:
            allowed = await self._local(bucket, start) <= limit
        if allowed:
            return None
        return max(1.0, math.ceil(start + self._window - now))

    async def _local(self, bucket: str, start: int) -> int:
        if start != self._current:
            self._counts.clear()
            self._current = start
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        return self._counts[bucket]

    async def _shared(self, bucket: str, start: int, limit: int) -> bool:
        if self._take(bucket, start):
            return True
        # One block at a time per bucket: requests arriving together wait for it instead of each
        # taking a block of its own (sixteen blocks at once would spend the whole limit).
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        async with lock:
            if self._take(bucket, start):
                return True
            return await self._lease(bucket, start, limit)

    def _take(self, bucket: str, start: int) -> bool:
        window, left = self._leases.get(bucket, (start, 0))
        if window == start and left > 0:
            self._leases[bucket] = (start, left - 1)
            return True
        return False

    async def _lease(self, bucket: str, start: int, limit: int) -> bool:
        window, _ = self._leases.get(bucket, (start, 0))
        # The block is sized from what this process last saw of the row (0 in a new window).
        seen = self._counts.get(bucket, 0) if window == start else 0
        if seen >= limit:
            return False  # counts only grow within a window: no other process can have freed any
        block = max(1, min(MAX_LEASE, (limit - seen) // LEASE_SHARE))
        insert = pg_insert(RateLimitWindow).values(bucket=bucket, window_start=start, count=block)
        statement = insert.on_conflict_do_update(
            index_elements=["bucket", "window_start"], set_={"count": RateLimitWindow.count + block}
        ).returning(RateLimitWindow.count)
        # A Core connection, not an ORM session: the lease is two statements and needs no identity map.
        async with self._db.engine.begin() as connection:
            # A count lost in a crash only lets a few more requests through; waiting for the WAL
            # flush would cost each lease (and the requests queued behind it) its time.
            await connection.execute(_ASYNC_COMMIT)
            count = int((await connection.execute(statement)).scalar_one())
            if start != self._current:
                # Once per window and process: old windows are only history.
                self._current = start
                await connection.execute(delete(RateLimitWindow).where(RateLimitWindow.window_start < start - self._window))
        # Of the block just added, only the hits still under the limit are this process's to use.
        granted = max(0, min(block, limit - (count - block)))
        if len(self._leases) > 10_000:
            # Buckets of past callers (webhook sources by address): their leases and counts are only hints.
            self._leases, self._counts = {}, {}
            self._locks = {bucket: self._locks[bucket]}
        self._counts[bucket] = count
        self._leases[bucket] = (start, max(0, granted - 1))
        return granted > 0


