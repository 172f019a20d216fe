"""Rate limits: fixed one-minute windows per bucket (a tenant's API use, one source's webhooks).

On PostgreSQL the counts live in `rate_limit_windows` and every process adds
to the same row with one upsert, so two `hub serve` processes share a limit.
The requests of one process share those upserts (a group commit): while one
is in flight, the next requests gather, and one upsert per bucket adds them
all, each request getting its own place in the count. A commit per request
made every webhook wait in line for one row's lock and one WAL flush; the
counts are committed without waiting for the flush at all (a count lost in
a crash only lets a few more requests through).
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


class RateLimiter:
    """Counts requests per bucket and says how long to wait once a bucket is over its limit."""

    def __init__(self, db: Database, *, window_seconds: int = WINDOW_SECONDS) -> None:
        self._db = db
        self._window = window_seconds
        self._counts: dict[str, int] = {}
        self._current: int | None = None
        self._gathering: dict[tuple[str, int], list[asyncio.Future[int]]] = {}
        self._writer: asyncio.Task[None] | None = None
        insert = pg_insert(RateLimitWindow)
        self._add = insert.on_conflict_do_update(
            index_elements=["bucket", "window_start"], set_={"count": RateLimitWindow.count + insert.excluded.count}
        ).returning(RateLimitWindow.count)

    async def hit(self, bucket: str, limit: int, *, now: float | None = None) -> float | None:
        """Count one request; None when it is within `limit` per window, else the seconds until the window ends."""
        now = time.time() if now is None else now
        start = int(now // self._window) * self._window
        count = await (self._shared(bucket, start) if self._db.dialect == "postgresql" else self._local(bucket, start))
        if count <= limit:
            return None
        return max(1.0, math.ceil(start + self._window - now))

    async def _local(self, bucket: str, start: int) -> int:
        if start != self._current:
            self._counts.clear()
            self._current = start
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        return self._counts[bucket]

    async def _shared(self, bucket: str, start: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._gathering.setdefault((bucket, start), []).append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_counts(), name="hub-rate-limit-counts")
        return await future

    async def _write_counts(self) -> None:
        while self._gathering:
            batch, self._gathering = self._gathering, {}
            counted: list[tuple[list[asyncio.Future[int]], int]] = []
            try:
                async with self._db.sessions.begin() as session:
                    # A count lost in a crash costs nothing; waiting for the WAL flush costs every request its time.
                    await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                    for (bucket, start), waiters in batch.items():
                        params = {"bucket": bucket, "window_start": start, "count": len(waiters)}
                        counted.append((waiters, int((await session.execute(self._add, params)).scalar_one())))
                    newest = max(start for _, start in batch)
                    if newest != self._current:
                        # Once per window and process: old windows are only history.
                        self._current = newest
                        await session.execute(delete(RateLimitWindow).where(RateLimitWindow.window_start < newest - self._window))
            except Exception as exc:
                for waiters in batch.values():
                    for future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for waiters, total in counted:
                # Each request gets its own place in the count, as if it had added its one alone.
                for place, future in enumerate(waiters, start=total - len(waiters) + 1):
                    if not future.done():
                        future.set_result(place)


