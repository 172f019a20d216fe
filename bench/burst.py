"""Burst benchmark: a 10-second burst of WhatsApp messages, and how long until the last one is answered.

    .venv/bin/python bench/burst.py [--rate 300] [--seconds 10] [--people 300]
        [--targets sqlite,pg1,pg2] [--settings stock,test] [--responder on|off] [--py-spy DIR]

Everything on 127.0.0.1. Per target, `hub serve` takes the webhooks and the
workers process them with the rules responder on (it answers every greeting):

- `sqlite`: `hub serve` with its in-process workers (SQLite is one process);
- `pg1`, `pg2`: `hub serve --no-workers` beside one or two `hub worker`
  processes, on a throwaway PostgreSQL cluster per `--settings` (`stock`:
  PostgreSQL's defaults, fsync on; `test`: the test suite's, fsync off).

`--mode backlog` acknowledges the whole burst first (`hub serve
--no-workers`, also on SQLite) and starts the worker processes once it is
over: events/s is then what the workers can do, not the arrival rate (in
`live` mode, the default, processing keeps up with arrivals and events/s is
the arrival rate). CPU per event is read from the burst's start to the end
(the workers' from their start, in backlog mode; their start-up is in it). `--responder off` measures the inbox's processing alone (messages linked
and recorded, no reply asked for), the figure the aim is about.

The load is open-loop: request i is sent at `i / rate` seconds after the
start whatever the answers do (at most 64 in flight), each a signed Twilio
inbound webhook from one of `--people` WhatsApp users, every person's
messages numbered in their MessageSid (a person's next message leaves only
once the previous one was acknowledged, as a phone sends them). It prints, per target: the rate the
webhooks were acknowledged at; the time from the burst's last
acknowledgement to the last reply queued (`notifications.created_at` of the
last `reply`) and to everything answered; the events processed per second
(from the first to the last `processed_at` of the burst's events) overall
and per worker process; and the CPU each process used per event (from
/proc over the window). The aim (issue 10): at least 1,000 events/s per
worker process. Before it prints a figure it checks the run: every event
processed once and none failed, every person's messages stored in the order
they were sent, and every message answered exactly once (one reply per
inbound message, every conversation's cursor at its last message).

Bounded: the burst is capped at 20,000 requests, each phase has a timeout,
and the processes and clusters this script starts are stopped on exit (by
their own ids).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench.common import stop_process  # noqa: E402
from bench.dispatch import cpu_seconds, postgres_cpu, postmaster_pid  # noqa: E402
from bench.clusters import CLUSTERS  # noqa: E402
from bench.inbound import ACCOUNT, EMPTY_TWIML, PATH, TOKEN, WHATSAPP_FROM, PySpy, clean_env, hub_document, started, wait_ready  # noqa: E402
from tests.conftest import write_toml  # noqa: E402
from tests.pg import PostgresCluster, find_bindir, free_port  # noqa: E402

MAX_REQUESTS = 20_000
IN_FLIGHT = 64
DONE_TIMEOUT = 600.0
POLL_SECONDS = 0.05
AIM_PER_WORKER = 1000.0
BODIES = ("Hola", "Buenos días", "Gracias", "Hola!", "Muchas gracias")
"""Greetings and thanks: the rules responder answers each with one reply and no dialogue state."""


@dataclass(frozen=True)
class Webhook:
    form: list[tuple[str, str]]
    person: int
    seq: int


def burst(rate: int, seconds: float, people: int, prefix: str) -> list[Webhook]:
    """`rate * seconds` inbound WhatsApp messages, round-robin over `people` (each person's numbered 0, 1, ...)."""
    total = min(MAX_REQUESTS, int(rate * seconds))
    hooks: list[Webhook] = []
    for i in range(total):
        person, seq = i % people, i // people
        sid = f"SM{prefix}{person:06d}{seq:06d}".ljust(34, "0")
        phone = f"+346002{person:05d}"
        form = [
            ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid), ("SmsStatus", "received"),
            ("Body", BODIES[(person + seq) % len(BODIES)]), ("To", f"whatsapp:{WHATSAPP_FROM}"), ("NumSegments", "1"),
            ("MessageSid", sid), ("AccountSid", ACCOUNT), ("From", f"whatsapp:{phone}"), ("ApiVersion", "2010-04-01"),
            ("ProfileName", f"Cliente {person}"), ("WaId", phone.removeprefix("+")),
        ]
        hooks.append(Webhook(form, person, seq))
    return hooks


async def send_burst(base: str, hooks: list[Webhook], rate: int) -> tuple[float, float, Counter[int]]:
    """Open loop: webhook i leaves at i / rate s; returns (start, last answer) perf_counter times and the statuses."""
    url = base + PATH
    validator = RequestValidator(TOKEN)
    prepared = [(h.form, {"X-Twilio-Signature": validator.compute_signature(url, dict(h.form))}) for h in hooks]
    statuses: Counter[int] = Counter()
    slots = asyncio.Semaphore(IN_FLIGHT)
    last = 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:

        async def post(form: list[tuple[str, str]], headers: dict[str, str], after: asyncio.Task[None] | None) -> None:
            nonlocal last
            if after is not None:
                # A person's next message leaves once the previous one was acknowledged: that is the order to keep.
                await asyncio.shield(after)
            async with slots:
                async with session.post(url, data=form, headers=headers) as response:
                    text = await response.text()
                statuses[response.status] += 1
                last = max(last, time.perf_counter())
                if response.status != 200 or text != EMPTY_TWIML:
                    raise RuntimeError(f"{url} answered {response.status}: {text[:200]}")

        start = time.perf_counter()
        tasks = []
        previous: dict[int, asyncio.Task[None]] = {}
        for i, ((form, headers), hook) in enumerate(zip(prepared, hooks)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(post(form, headers, previous.get(hook.person)))
            previous[hook.person] = task
            tasks.append(task)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(120.0, 4 * len(hooks) / rate))
    return start, last, statuses


# --- the database, read directly ---------------------------------------------------------

PROGRESS = (
    "SELECT (SELECT count(*) FROM inbox_events), "
    "(SELECT count(*) FROM inbox_events WHERE processed_at IS NULL AND failed_at IS NULL), "
    "(SELECT count(DISTINCT c.id) FROM conversations c JOIN messages m ON m.conversation_id = c.id "
    " WHERE m.direction = 'in' AND m.id > coalesce(c.answered_through, 0))"
)


class Reader:
    """Runs the benchmark's own queries on SQLite (read-only) or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[1]
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
                return [tuple(r) for r in db.execute(query).fetchall()]
        conn = await asyncpg.connect(self.url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()

    async def wait_answered(self, expected: int, timeout: float, replies: bool = True) -> float | None:
        """Poll until `expected` events are stored, none is pending and (with `replies`) no conversation is unanswered."""
        deadline = time.perf_counter() + timeout
        while True:
            stored, pending, unanswered = (await self.rows(PROGRESS))[0]
            unanswered = unanswered if replies else 0
            now = time.perf_counter()
            if stored >= expected and pending == 0 and unanswered == 0:
                return now
            if now > deadline:
                print(f"  ! not done after {timeout:.0f} s: {stored} stored, {pending} pending, {unanswered} unanswered",
                      file=sys.stderr)
                return None
            await asyncio.sleep(POLL_SECONDS)


def when(value: Any) -> dt.datetime:
    """A timestamp column as an aware UTC datetime (SQLite hands back text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def check(
    reader: Reader, hooks: list[Webhook], sid_prefix: str, replies: bool
) -> tuple[list[str], dt.datetime, dt.datetime, dt.datetime | None]:
    """Problems found (empty when the run was right), and the first/last processed_at and last reply's created_at."""
    problems: list[str] = []
    events = await reader.rows(
        f"SELECT count(*), count(processed_at), count(failed_at), min(processed_at), max(processed_at) FROM inbox_events "
        f"WHERE dedupe_key LIKE 'SM{sid_prefix}%'"
    )
    count, processed, failed, first, last = events[0]
    if count != len(hooks) or processed != len(hooks) or failed:
        problems.append(f"{count} events stored, {processed} processed, {failed} failed for {len(hooks)} webhooks")
    messages = await reader.rows(
        f"SELECT conversation_id, provider_id FROM messages WHERE direction = 'in' AND provider_id LIKE 'SM{sid_prefix}%' "
        f"ORDER BY conversation_id, id"
    )
    if len(messages) != len(hooks):
        problems.append(f"{len(messages)} inbound messages stored for {len(hooks)} webhooks")
    sequences: dict[int, list[int]] = {}
    people: dict[int, set[int]] = {}
    for conversation, sid in messages:
        person, seq = int(sid[2 + len(sid_prefix):8 + len(sid_prefix)]), int(sid[8 + len(sid_prefix):14 + len(sid_prefix)])
        sequences.setdefault(conversation, []).append(seq)
        people.setdefault(conversation, set()).add(person)
    out_of_order = [c for c, seqs in sequences.items() if seqs != sorted(seqs)]
    if out_of_order:
        problems.append(f"{len(out_of_order)} conversations stored their messages out of order")
    if any(len(p) != 1 for p in people.values()):
        problems.append("a conversation holds two people's messages")
    replies_expected = replies
    replies = await reader.rows(
        "SELECT n.contact_id, count(*) FROM notifications n WHERE n.kind = 'reply' GROUP BY n.contact_id"
    )
    inbound = await reader.rows(
        "SELECT c.contact_id, count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.direction = 'in' GROUP BY c.contact_id"
    )
    if replies_expected and dict(replies) != dict(inbound):
        wrong = sum(1 for k, v in dict(inbound).items() if dict(replies).get(k) != v)
        problems.append(f"{wrong} contacts did not get exactly one reply per message")
    if not replies_expected and replies:
        problems.append("replies were queued with the responder off")
    last_reply = (await reader.rows("SELECT max(created_at) FROM notifications WHERE kind = 'reply'"))[0][0]
    return problems, when(first), when(last), when(last_reply) if last_reply is not None else None


# --- one target ------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    requests: int
    workers: int
    ack_rate: float
    reply_after: float | None
    answered_after: float | None
    events_per_second: float
    cpu_ms_per_event: dict[str, float]
    problems: list[str] = field(default_factory=list)
    profile: str = ""


def burst_config(url: str, port: int, responder: bool) -> dict[str, Any]:
    document = hub_document(url, port)
    document["tenants"]["bench"]["plugins"] = {"rules_responder": {"enabled": responder}}
    return document


async def run_target(label: str, url: str, workers: int, args: argparse.Namespace, workdir: Path,
                     postmaster: int | None, index: int) -> Result:
    port = free_port()
    responder = args.responder == "on"
    config = write_toml(workdir / f"{label}.toml", burst_config(url, port, responder))
    env = clean_env()
    upgrade = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), "db", "upgrade"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if upgrade.returncode != 0:
        raise RuntimeError(f"hub db upgrade failed: {upgrade.stdout}{upgrade.stderr}")
    hub = [sys.executable, "-m", "hub", "--config", str(config)]
    base = f"http://127.0.0.1:{port}"
    reader = Reader(url)
    warm = burst(50, 1, 50, prefix=f"w{index}")
    hooks = burst(args.rate, args.seconds, args.people, prefix=f"b{index}")
    spies: list[PySpy] = []
    with ExitStack() as stack:
        serve_log = workdir / f"{label}-serve.log"
        # Backlog: the burst is only acknowledged (serve --no-workers); the workers start once it is over.
        backlog = args.mode == "backlog"
        serve = stack.enter_context(started(hub + ["serve", "--port", str(port)] + (["--no-workers"] if workers or backlog else []),
                                            env, serve_log))

        def start_workers(phase: str) -> list[subprocess.Popen[bytes]]:
            return [stack.enter_context(started(hub + ["worker"], env, workdir / f"{label}-{phase}-worker{i}.log"))
                    for i in range(max(workers, 1 if backlog else 0))]

        worker_processes = start_workers("warm")
        await wait_ready(base, serve, serve_log)
        await send_burst(base, warm, 50)
        if await reader.wait_answered(len(warm), 120) is None:
            raise RuntimeError(f"{label}: the warm-up was not answered; see {workdir}")
        if backlog:
            for process in worker_processes:
                stop_process(process)
        pids = {"serve": serve.pid, **{f"worker{i}": p.pid for i, p in enumerate(worker_processes)}}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if postmaster is not None:
            cpu_before["postgresql"] = postgres_cpu(postmaster)
        wall_start = dt.datetime.now(dt.UTC)
        try:
            start, last_ack, statuses = await send_burst(base, hooks, args.rate)
        except RuntimeError:
            print(serve_log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        burst_end = wall_start + dt.timedelta(seconds=last_ack - start)
        if backlog:
            worker_processes = start_workers("backlog")
            await asyncio.sleep(0)
        processors = worker_processes or [serve]
        for i, process in enumerate(processors):
            spy = PySpy(Path(args.py_spy) if args.py_spy else None, f"{label}-worker{i}")
            spy.start(process.pid)
            spies.append(spy)
        if backlog:
            # The workers started after the burst: their window starts now (the serve process's with the burst).
            pids = {"serve": serve.pid, **{f"worker{i}": p.pid for i, p in enumerate(worker_processes)}}
            cpu_before |= {f"worker{i}": cpu_seconds(p.pid) for i, p in enumerate(worker_processes)}
        done = await reader.wait_answered(len(warm) + len(hooks), DONE_TIMEOUT, responder)
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if postmaster is not None:
            cpu_after["postgresql"] = postgres_cpu(postmaster)
        for spy in spies:
            spy.stop()
    problems, first, last, last_reply = await check(reader, hooks, f"b{index}", responder)
    if statuses != Counter({200: len(hooks)}):
        problems.append(f"statuses {dict(statuses)}")
    window = max((last - first).total_seconds(), 1e-3)
    return Result(
        label=label + (", backlog" if args.mode == "backlog" else ""), requests=len(hooks), workers=max(1, workers), ack_rate=len(hooks) / (last_ack - start),
        reply_after=(last_reply - burst_end).total_seconds() if last_reply is not None else None,
        answered_after=None if done is None else done - last_ack,
        events_per_second=len(hooks) / window,
        cpu_ms_per_event={k: 1000 * (cpu_after[k] - cpu_before[k]) / len(hooks) for k in cpu_before},
        problems=problems, profile="\n\n".join(s.summary() for s in spies if s.summary()),
    )


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "## Burst (bench/burst.py)",
        "",
        f"{args.rate} webhooks/s for {args.seconds:g} s from {args.people} WhatsApp users, rules responder {args.responder}, "
        f"{os.cpu_count()} cores. Reply after: from the burst's last acknowledgement to the last reply queued.",
        "",
        "| target | webhooks | acked/s | last reply after | all answered after | events/s | per worker | aim | CPU ms/event |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        per_worker = r.events_per_second / r.workers
        answered = f"{r.answered_after:.2f} s" if r.answered_after is not None else "timeout"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms_per_event.items())
        aim = "ok" if per_worker >= AIM_PER_WORKER else "MISSED"
        reply = f"{r.reply_after:.2f} s" if r.reply_after is not None else "-"
        lines.append(f"| {r.label} | {r.requests} | {r.ack_rate:,.0f} | {reply} | {answered} | "
                     f"{r.events_per_second:,.0f} | {per_worker:,.0f} | {aim} | {cpu} |")
    lines.append("")
    for r in results:
        lines.append(f"- {r.label}: " + ("checked: every event processed once, every person's messages in order, "
                                          "one reply per message" if not r.problems else "PROBLEMS: " + "; ".join(r.problems)))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    targets = args.targets.split(",")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-burst-") as tmp:
        workdir = Path(tmp)
        index = 0
        if "sqlite" in targets:
            print("sqlite ...", file=sys.stderr)
            results.append(await run_target("sqlite", f"sqlite+aiosqlite:///{workdir / 'hub.db'}", 0, args, workdir, None, index))
        pg_targets = [t for t in targets if t.startswith("pg")]
        for setting in args.settings.split(",") if pg_targets else []:
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR)")
            cluster: PostgresCluster = CLUSTERS[setting][0](bindir)
            cluster.start()
            try:
                for target in pg_targets:
                    index += 1
                    workers = int(target.removeprefix("pg"))
                    database = f"burst_{target}"
                    conn = await asyncpg.connect(cluster.dsn())
                    try:
                        await conn.execute(f"CREATE DATABASE {database}")
                    finally:
                        await conn.close()
                    label = f"PostgreSQL {setting}, {workers} worker{'s' if workers > 1 else ''}"
                    print(f"{label} ...", file=sys.stderr)
                    results.append(await run_target(label, cluster.url(database), workers, args, workdir,
                                                    postmaster_pid(cluster), index))
            finally:
                cluster.stop()
    print(report(results, args))
    for r in results:
        if r.profile:
            print()
            print(r.profile)
    return 1 if any(r.problems for r in results) else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=300, help="webhooks per second during the burst")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--people", type=int, default=300, help="distinct WhatsApp users writing")
    parser.add_argument("--targets", default="sqlite,pg1,pg2", help="comma-separated: sqlite, pg1, pg2 (pgN: N worker processes)")
    parser.add_argument("--settings", default="stock,test", help="PostgreSQL settings, comma-separated: stock, test")
    parser.add_argument("--mode", default="live", choices=("live", "backlog"),
                        help="live: workers run during the burst; backlog: the burst is only acknowledged, then the workers "
                             "start and work it off (events/s is then what a worker process can do)")
    parser.add_argument("--responder", default="on", choices=("on", "off"),
                        help="the rules responder answers every message (on), or processing alone is measured (off)")
    parser.add_argument("--py-spy", metavar="DIR", help="record each processing process with py-spy during the burst")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
