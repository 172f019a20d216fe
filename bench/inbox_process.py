"""Inbox processing alone: how many stored inbound messages one process works off per second.

    .venv/bin/python bench/inbox_process.py [--n 2000] [--people 300] [--backends sqlite,stock,test] [--responders]

In this process, with no HTTP in the way: a hub (the test plugins loaded)
stores `--n` inbound messages from `--people` phones through the inbox's
`accept`, then calls `Inbox.process_pending` (the worker's own step) until
none is left, and prints events/s (wall) and the CPU milliseconds this
process used per event (user + system: its share of PostgreSQL is not in
it). `--responders` also runs the responder runner beside it (every message
is offered to `respond_to_message`; the test plugins answer none of these)
and stops the clock once every conversation's cursor has caught up: the
worker's whole job per message short of sending a reply.

Backends: `sqlite` (a file in a temporary folder), `stock` (a throwaway
PostgreSQL on its default durability settings, fsync on) and `test` (the
test suite's cluster, fsync off). It checks that every event was processed
once, none failed, and every person's messages were stored in order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.clusters import CLUSTERS  # noqa: E402
from hub import InboundMessage  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.models import InboxEventRow, Message  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.pg import find_bindir  # noqa: E402

BATCH = 200
TIMEOUT = 300.0


async def measure(url: str, n: int, people: int, responders: bool) -> tuple[float, float, list[str]]:
    """(events/s, CPU ms per event, problems) for one database."""
    hub = Hub.build(make_config(url, hub={"log_level": "warning"}))
    async with hub.running(migrate=True):
        events = [
            InboundMessage(tenant="clinic", medium="whatsapp", channel="recorder-whatsapp", sender=f"+346003{i % people:05d}",
                           provider_id=f"SMp{i:07d}", body=f"hola {i // people}")
            for i in range(n)
        ]
        for start in range(0, n, 500):  # the group commit stores them in the order given
            await asyncio.gather(*(hub.inbox.accept(e, source="bench", dedupe_key=e.provider_id or "") for e in events[start:start + 500]))
        stop = asyncio.Event()
        runner = asyncio.create_task(hub.responders.run(stop)) if responders else None
        began, cpu = time.perf_counter(), time.process_time()
        deadline = began + TIMEOUT
        while await hub.inbox.process_pending(BATCH) and time.perf_counter() < deadline:
            pass
        if runner is not None:
            while (hub.responders._pending or hub.responders._active) and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
        wall, used = time.perf_counter() - began, time.process_time() - cpu
        stop.set()
        if runner is not None:
            await runner
        problems: list[str] = []
        async with hub.db.sessions() as session:
            processed = await session.scalar(select(func.count()).where(InboxEventRow.processed_at.is_not(None)))
            failed = await session.scalar(select(func.count()).where(InboxEventRow.error.is_not(None)))
            rows = (await session.execute(select(Message.conversation_id, Message.body).order_by(Message.id))).all()
        if processed != n or failed:
            problems.append(f"{processed} of {n} processed, {failed} with an error")
        seen: dict[int, int] = {}
        for conversation, body in rows:
            k = int(body.split()[1])
            if seen.get(conversation, -1) >= k:
                problems.append(f"conversation {conversation} stored message {k} after {seen[conversation]}")
                break
            seen[conversation] = k
    return n / wall, 1000 * used / n, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--backends", default="sqlite,stock,test")
    parser.add_argument("--responders", action="store_true", help="run the responder runner too")
    args = parser.parse_args()
    print(f"| backend | events | events/s | CPU ms/event (this process) | checks |\n|---|---:|---:|---:|---|")
    status = 0
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rate, cpu, problems = asyncio.run(measure(f"sqlite+aiosqlite:///{tmp}/hub.db", args.n, args.people, args.responders))
        else:
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR)")
            cluster = CLUSTERS[backend][0](bindir)
            cluster.start()
            try:
                rate, cpu, problems = asyncio.run(measure(cluster.url(), args.n, args.people, args.responders))
            finally:
                cluster.stop()
        status |= bool(problems)
        label = backend if backend == "sqlite" else f"PostgreSQL {backend}"
        print(f"| {label}{' + responders' if args.responders else ''} | {args.n} | {rate:,.0f} | {cpu:.2f} | "
              f"{'; '.join(problems) or 'ok: once each, in order'} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
