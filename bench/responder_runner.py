"""The responder runner alone: how fast one process answers a backlog of inbound messages with the rules responder.

    .venv/bin/python bench/responder_runner.py [--n 1000] [--people 300] [--backends sqlite,stock,test]
        [--responder rules|none] [--profile FILE]

In this process, with no HTTP: a hub (the test plugins loaded, the rules
responder on for the clinic with `--responder rules`) stores `--n` inbound
greetings from `--people` phones and processes them through the inbox
(not timed); then the responder runner's worker loop answers every
conversation until every cursor caught up. It prints messages/s (wall) and
the CPU milliseconds this process used per message (user + system;
PostgreSQL's share is not in it). `--profile FILE` writes a cProfile of the
timed part (process time). Checks: exactly one reply per message with the
rules responder (none with `none`), every cursor at its conversation's last
inbound message.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
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
from hub.models import Conversation, Message, Notification  # noqa: E402
from tests.conftest import DEFAULT_TENANTS, make_config  # noqa: E402
from tests.pg import find_bindir  # noqa: E402

TIMEOUT = 300.0
BODIES = ("Hola", "Buenos días", "Gracias", "Hola!", "Muchas gracias")


async def measure(url: str, n: int, people: int, rules: bool, profile: str | None) -> tuple[float, float, list[str]]:
    """(messages/s, CPU ms per message, problems) for one database."""
    tenants = {**DEFAULT_TENANTS, "clinic": {**DEFAULT_TENANTS["clinic"], "plugins": {"rules_responder": {"enabled": rules}}}}
    hub = Hub.build(make_config(url, hub={"log_level": "warning"}, tenants=tenants))
    async with hub.running(migrate=True):
        events = [
            InboundMessage(tenant="clinic", medium="whatsapp", channel="recorder-whatsapp", sender=f"+346003{i % people:05d}",
                           provider_id=f"SMr{i:07d}", body=BODIES[i % len(BODIES)])
            for i in range(n)
        ]
        for start in range(0, n, 500):
            await asyncio.gather(*(hub.inbox.accept(e, source="bench", dedupe_key=e.provider_id or "") for e in events[start:start + 500]))
        while await hub.inbox.process_pending(200):
            pass
        runner_state = hub.responders
        runner_state._pending.clear()  # the sweep finds them all, as after a restart
        stop = asyncio.Event()
        profiler = cProfile.Profile(time.process_time) if profile else None
        began, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        runner = asyncio.create_task(runner_state.run(stop))
        deadline = began + TIMEOUT
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
            if not (runner_state._pending or runner_state._active) and await _all_answered(hub):
                break
        wall, used = time.perf_counter() - began, time.process_time() - cpu
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        stop.set()
        await runner
        problems: list[str] = []
        async with hub.db.sessions() as session:
            replies = await session.scalar(select(func.count()).where(Notification.kind == "reply"))
            behind = await _behind(session)
        if replies != (n if rules else 0):
            problems.append(f"{replies} replies for {n} messages")
        if behind:
            problems.append(f"{behind} conversations behind")
    return n / wall, 1000 * used / n, problems


async def _behind(session: object) -> int:
    last = (
        select(Message.conversation_id, func.max(Message.id).label("last"))
        .where(Message.direction == "in").group_by(Message.conversation_id).subquery()
    )
    query = select(func.count()).select_from(last).join(Conversation, Conversation.id == last.c.conversation_id).where(
        func.coalesce(Conversation.answered_through, 0) < last.c.last
    )
    return int(await session.scalar(query) or 0)  # type: ignore[attr-defined]


async def _all_answered(hub: Hub) -> bool:
    async with hub.db.sessions() as session:
        return await _behind(session) == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--backends", default="sqlite,stock,test")
    parser.add_argument("--responder", default="rules", choices=("rules", "none"))
    parser.add_argument("--profile", default=None, help="write a cProfile of the timed part here (one backend)")
    args = parser.parse_args()
    rules = args.responder == "rules"
    print("| backend | messages | responder | messages/s | CPU ms/message (this process) | checks |\n|---|---:|---|---:|---:|---|")
    status = 0
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rate, cpu, problems = asyncio.run(measure(f"sqlite+aiosqlite:///{tmp}/hub.db", args.n, args.people, rules, args.profile))
        else:
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR)")
            cluster = CLUSTERS[backend][0](bindir)
            cluster.start()
            try:
                rate, cpu, problems = asyncio.run(measure(cluster.url(), args.n, args.people, rules, args.profile))
            finally:
                cluster.stop()
        status |= bool(problems)
        label = backend if backend == "sqlite" else f"PostgreSQL {backend}"
        print(f"| {label} | {args.n} | {args.responder} | {rate:,.0f} | {cpu:.2f} | {'; '.join(problems) or 'ok: one reply each, cursors caught up'} |",
              flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
