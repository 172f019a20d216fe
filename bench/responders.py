"""Responder benchmark: a client's WhatsApp message in, the reply handed to Twilio, at 50 conversations per second.

    .venv/bin/python bench/responders.py [--rate 50] [--seconds 10] [--responders rules,openai] [--model-delay 1.0]

Everything in one process on 127.0.0.1, as in the tests (tests/responder_world.py):
the real hub with its workers running (`hub.workers()`: inbox, responders,
dispatcher) on SQLite, and the Twilio, Calendly and OpenAI stand-ins. The
load is open: `--rate` new conversations per second (a new client each),
for `--seconds`, each sending one signed Twilio inbound webhook; the
messages cycle through a price question, opening hours, a greeting and a
booking request for Saturday (which asks Calendly for free times).

Per responder it prints, for every message, from sending the webhook to the
reply's `Messages.json` POST reaching the Twilio stand-in: p50, p99 and
max, next to the baselines: the webhook's own answer time (intake only, the
floor of the path), the model's 1 s (`--model-delay`) for the OpenAI
responder, and the 3 s the seeds promise. Then the rules classifier's time
per message over the labelled examples (tests/data/*.tsv), against the
1 ms it must stay well under.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from tests.pg import PostgresCluster, find_bindir  # noqa: E402
from tests.responder_world import ANA, World, next_weekday, world  # noqa: E402
from tests.stand_ins.twilio import TwilioStandIn  # noqa: E402

MESSAGES = ("¿Cuánto cuesta una limpieza?", "¿A qué hora abren?", "Hola!", "Quiero pedir cita para el sábado")
PROMISE = 3.0


def stamp_replies(twilio: TwilioStandIn, arrived: dict[str, float]) -> None:
    """Have the Twilio stand-in note when the first message to each recipient arrives."""
    original = twilio._create

    async def timed(request: web.Request) -> web.Response:
        response = await original(request)
        now = time.monotonic()
        for received in twilio.received:
            to = received.get("To") or ""
            if received.answered == 201 and to not in arrived:
                arrived[to] = now
        return response

    # The route was bound when the stand-in started: swap the handler it calls.
    for route in twilio._runner.app.router.routes():  # type: ignore[union-attr]
        if route.method == "POST":
            route._handler = timed  # type: ignore[attr-defined]


async def load(w: World, rate: int, seconds: float) -> tuple[list[float], list[float], int]:
    """Open-loop load; returns (end-to-end seconds per answered message, webhook answer seconds, unanswered)."""
    arrived: dict[str, float] = {}
    stamp_replies(w.twilio, arrived)
    sent: dict[str, float] = {}
    intake: list[float] = []
    total = int(rate * seconds)
    start = time.monotonic()
    tasks = []

    async def one(n: int) -> None:
        sender = f"+3460{n:07d}"
        began = time.monotonic()
        sent[f"whatsapp:{sender}"] = began
        await w.write(MESSAGES[n % len(MESSAGES)], sender=sender)
        intake.append(time.monotonic() - began)

    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 60
    while not set(sent) <= set(arrived) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    latencies = [arrived[to] - began for to, began in sent.items() if to in arrived]
    if len(latencies) < total:
        print(f"    unanswered: {sorted(set(sent) - set(arrived))[:5]}")
    return latencies, intake, total - len(latencies)


async def run_responder(kind: str, rate: int, seconds: float, model_delay: float, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, database(backend, folder) as url:
        async with world(url, openai=kind == "openai", openai_settings={"daily_token_budget": None, "timeout_seconds": 10},
                         migrate=True) as w:
            w.add_slots(next_weekday(5), 10, 11, 12)
            if w.openai is not None:
                w.openai.delay = model_delay
            await w.turn("Hola", sender=ANA)  # warm up: plugins' clients, caches, the first SQLite pages
            async with w.hub.workers():
                latencies, intake, missing = await load(w, rate, seconds)
            stages = await breakdown(w)
    return {"kind": kind, "latencies": latencies, "intake": intake, "missing": missing, "stages": stages}


async def breakdown(w: World) -> dict[str, list[float]]:
    """Per message, seconds spent in each stage, from the rows' own timestamps."""
    from sqlalchemy import select

    from hub.models import InboxEventRow, Message, Notification

    async with w.hub.db.sessions() as session:
        events = {row.dedupe_key: row for row in (await session.scalars(select(InboxEventRow).where(InboxEventRow.kind == "message.received"))).all()}
        inbound = {row.provider_id: row for row in (await session.scalars(select(Message).where(Message.direction == "in"))).all()}
        replies = {}
        for row in (await session.scalars(select(Notification).where(Notification.kind == "reply"))).all():
            replies.setdefault(row.contact_id, row)
        contacts = {}
        for message in inbound.values():
            from hub.models import Conversation

            conversation = await session.get(Conversation, message.conversation_id)
            if conversation is not None:
                contacts[message.provider_id] = conversation.contact_id
    stages: dict[str, list[float]] = {"inbox (stored -> processed)": [], "responder (processed -> reply queued)": [],
                                      "outbox (reply queued -> sent)": []}
    for key, event in events.items():
        message = inbound.get(key)
        reply = replies.get(contacts.get(key))
        if message is None or reply is None or event.processed_at is None or reply.sent_at is None:
            continue
        stages["inbox (stored -> processed)"].append((event.processed_at - event.received_at).total_seconds())
        stages["responder (processed -> reply queued)"].append((reply.created_at - event.processed_at).total_seconds())
        stages["outbox (reply queued -> sent)"].append((reply.sent_at - reply.created_at).total_seconds())
    return stages


@contextmanager
def database(backend: str, folder: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a throwaway PostgreSQL cluster (stopped on exit)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder}/bench.db"
        return
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found (set HUB_PG_BINDIR)")
    cluster = PostgresCluster(bindir)
    cluster.start()
    try:
        yield cluster.url("postgres")
    finally:
        cluster.stop()


def classification_micros() -> tuple[float, float, int]:
    """(mean µs, p99 µs, messages) of the rules classifier over the labelled examples, 20 rounds."""
    from plugins.rules_responder.classifier import Context, classify

    messages = []
    for name in ("intents.tsv", "intents_heldout.tsv"):
        for line in (ROOT / "tests" / "data" / name).read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                context, _, _, _, message = line.split("\t")
                messages.append((message, Context(last_outbound_kind=None if context == "-" else context)))
    for message, context in messages:  # compile the patterns
        classify(message, context)
    times = []
    for _ in range(20):
        for message, context in messages:
            began = time.perf_counter()
            classify(message, context)
            times.append((time.perf_counter() - began) * 1e6)
    return sum(times) / len(times), percentile(times, 99), len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=50, help="new conversations per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--responders", default="rules,openai")
    parser.add_argument("--model-delay", type=float, default=1.0, help="seconds the OpenAI stand-in takes per answer")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    if not 1 <= args.rate <= 500 or not 0 < args.seconds <= 120:
        parser.error("--rate must be 1..500 and --seconds 0..120")
    print(f"responders: {args.rate} conversations/s for {args.seconds:g} s, one WhatsApp message each, workers in-process")
    runs = [(b.strip(), k.strip()) for b in args.backends.split(",") if b.strip() for k in args.responders.split(",") if k.strip()]
    for backend, kind in runs:
        print(f"  [{backend}]")
        result = asyncio.run(run_responder(kind, args.rate, args.seconds, args.model_delay, backend))
        lat, intake = result["latencies"], result["intake"]
        floor = f"; model floor {args.model_delay:.1f} s" if kind == "openai" else ""
        print(
            f"  {kind:6}  webhook -> reply at Twilio: p50 {percentile(lat, 50):.3f} s  p99 {percentile(lat, 99):.3f} s  "
            f"max {max(lat, default=float('nan')):.3f} s  ({len(lat)} answered, {result['missing']} unanswered)"
        )
        print(
            f"          baseline: webhook answered (intake only) p50 {percentile(intake, 50) * 1000:.1f} ms  "
            f"p99 {percentile(intake, 99) * 1000:.1f} ms{floor}; promise {PROMISE:.0f} s"
        )
        for stage, values in result["stages"].items():
            print(f"          {stage}: p50 {percentile(values, 50):.3f} s  p99 {percentile(values, 99):.3f} s")
    mean, p99, count = classification_micros()
    print(f"  rules classifier: {mean:.0f} µs per message (p99 {p99:.0f} µs) over {count} labelled messages; baseline: well under 1000 µs")


if __name__ == "__main__":
    main()
