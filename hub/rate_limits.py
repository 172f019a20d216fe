"""Rate limits: fixed one-minute windows per bucket (a tenant's API use, one source's webhooks).

On PostgreSQL the counts live in `rate_limit_windows` and every process adds
to the same row with one upsert, so two `hub serve` processes share a limit.
On SQLite (one process, the embedded default) they are counted in memory:
a write per request would cost more than the limit protects.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import delete
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
        insert = pg_insert(RateLimitWindow).values(bucket=bucket, window_start=start, count=1)
        statement = insert.on_conflict_do_update(
            index_elements=["bucket", "window_start"], set_={"count": RateLimitWindow.count + 1}
        ).returning(RateLimitWindow.count)
        async with self._db.sessions.begin() as session:
            count = int((await session.execute(statement)).scalar_one())
            if start != self._current:
                # Once per window and process: old windows are only history.
                self._current = start
                await session.execute(delete(RateLimitWindow).where(RateLimitWindow.window_start < start - self._window))
        return count


