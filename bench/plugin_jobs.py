"""Plugin jobs benchmark: what a burst of context updates costs, against one plain INSERT and commit per row.

    .venv/bin/python bench/plugin_jobs.py [--n 2000] [--contacts 200]

One process, a throwaway SQLite file (the embedded default). It prints:

1. the baseline: one `INSERT ... ON CONFLICT DO NOTHING` and commit per row
   through the same engine (what any durable queue pays at least);
2. `enqueue_job` of N updates spread over `--contacts` keys with a 60 s
   window (what the Chatwoot plugin does on every appointment change and
   delivery status): rows per second, and how many rows that left;
3. running the due jobs with a no-op handler: jobs per second.

The aim: enqueueing at least half the baseline's rate (it is one
transaction per call, with a read on a coalesced key), and a burst of N
updates leaving one job per contact.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub import Job  # noqa: E402
from hub.config import parse_config  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.models import PluginJob  # noqa: E402


async def main(n: int, contacts: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        document = {"hub": {"database_url": url}, "tenants": {
            "clinic": {"name": "Clinic", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es"},
        }}
        hub = Hub.build(parse_config(document, "bench.toml", {}))
        async with hub.running(migrate=True):
            async with hub.db.engine.begin() as connection:
                await connection.execute(text("CREATE TABLE bench_baseline (key TEXT PRIMARY KEY, payload TEXT)"))
            started = time.perf_counter()
            for i in range(n):
                async with hub.db.engine.begin() as connection:
                    await connection.execute(
                        text("INSERT INTO bench_baseline (key, payload) VALUES (:k, :p) ON CONFLICT DO NOTHING"),
                        {"k": f"row:{i}", "p": "{}"},
                    )
            baseline = n / (time.perf_counter() - started)
            print(f"baseline: one INSERT + commit per row     {baseline:8.0f} rows/s")

            started = time.perf_counter()
            for i in range(n):
                await hub.enqueue_job("bench", "clinic", "push", f"contact:{i % contacts}", {"n": i}, delay_seconds=60)
            enqueue = n / (time.perf_counter() - started)
            async with hub.db.sessions() as session:
                rows = await session.scalar(select(func.count()).select_from(PluginJob))
            print(f"enqueue_job, {n} updates over {contacts} keys {enqueue:8.0f} updates/s ({enqueue / baseline:.0%} of baseline), {rows} jobs left")

            ran = 0

            async def handler(job: Job) -> None:
                nonlocal ran
                ran += 1

            hub.handle_jobs("bench", "push", handler)
            async with hub.db.sessions.begin() as session:
                await session.execute(update(PluginJob).values(due_at=dt.datetime.now(dt.UTC)))
            started = time.perf_counter()
            while await hub.plugin_jobs.run_due():
                pass
            print(f"run_due with a no-op handler              {ran / (time.perf_counter() - started):8.0f} jobs/s ({ran} run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(min(args.n, 50_000), max(1, args.contacts)))
