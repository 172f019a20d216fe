"""Inbound webhook benchmark: the hub's Twilio endpoint against a bare aiohttp + asyncpg handler.

    .venv/bin/python bench/inbound.py [--n 4000] [--senders 16] [--backends sqlite,postgresql] [--py-spy DIR]

One run, everything on 127.0.0.1, one load generator for every target (an
aiohttp client with `--senders` concurrent senders, each posting the next
request as soon as its previous one was answered):

1. the baseline: a bare aiohttp handler (this script in another process,
   `--serve-baseline`) that parses the same form and inserts one row with
   asyncpg (`ON CONFLICT DO NOTHING` on the MessageSid) into a throwaway
   PostgreSQL cluster, answering empty TwiML;
2. `python -m hub serve` (workers included, the default) with
   twilio_messaging configured, on SQLite and on PostgreSQL (the same
   cluster, its own database), and on PostgreSQL as `hub serve
   --no-workers` beside one `hub worker` process: every request is a real Twilio inbound
   webhook (SMS or WhatsApp, 15 fields), signed with X-Twilio-Signature
   over the public URL; 10% of the requests are exact retries of an earlier
   one (same MessageSid and signature), as Twilio sends them.

Per target it prints requests/s over the timed requests, p50 / p99 latency
from sending a request to reading its 200, and for the hub the time from
the first timed request until every stored event has `processed_at`
(inbox_events polled every 50 ms), with how long that took after the last
answer, and the CPU milliseconds per timed request of the server process
and of PostgreSQL (all its backends), read from /proc over the timed load.
The aim (issue 10): the hub's rate at least the baseline's, and p99 under
50 ms at 16 senders. `--settings stock` runs PostgreSQL on its default
durability settings (fsync on), `test` (the default) on the test cluster's. `--py-spy DIR` records `hub serve` during each timed
load and prints where its time went.

Bounded: N is capped, each phase has a timeout, and every process and the
PostgreSQL cluster this script starts are stopped on exit, on errors and
on Ctrl-C (by their own process ids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from tests.conftest import config_document, write_toml  # noqa: E402
from bench.common import percentile, stop_process  # noqa: E402
from bench.dispatch import cpu_seconds, postgres_cpu, postmaster_pid  # noqa: E402
from bench.clusters import CLUSTERS  # noqa: E402
from tests.pg import PostgresCluster, find_bindir, free_port  # noqa: E402

MAX_N = 20_000
WARM_UP = 200
DUPLICATES = 0.10
SENDERS = 16
TENANT = "bench"
ACCOUNT = "AC" + "0b" * 16
TOKEN = "bench-twilio-auth-token"
WHATSAPP_FROM = "+14155238886"
SMS_FROM = "+15017122661"
PATH = "/webhooks/twilio_messaging/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
POLL_SECONDS = 0.05
PROCESS_TIMEOUT = 180.0
AIM_FRACTION = 1.0
AIM_P99_MS = 50.0


# --- the load ------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    form: tuple[tuple[str, str], ...]
    sid: str
    duplicate: bool


def twilio_form(rng: random.Random, sid: str, contact: int) -> list[tuple[str, str]]:
    """A real inbound webhook's fields (WIRE.md 1.1): half WhatsApp, half SMS, 500 people writing."""
    phone = f"+346001{contact:05d}"
    whatsapp = rng.random() < 0.5
    form = [
        ("ToCountry", "US"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid), ("SmsStatus", "received"),
        ("Body", rng.choice(["Hola", "¿A qué hora abren mañana?", "Gracias!", "Llego 5 minutos tarde", "ok"])),
        ("To", f"whatsapp:{WHATSAPP_FROM}" if whatsapp else SMS_FROM), ("NumSegments", "1"), ("ReferralNumMedia", "0"),
        ("MessageSid", sid), ("AccountSid", ACCOUNT), ("From", f"whatsapp:{phone}" if whatsapp else phone),
        ("ApiVersion", "2010-04-01"),
    ]
    if whatsapp:
        form += [("ProfileName", f"Cliente {contact}"), ("WaId", phone.removeprefix("+"))]
    else:
        form += [("FromCountry", "ES"), ("FromCity", "")]
    return form


def make_requests(n: int, seed: int, prefix: str) -> list[Request]:
    """N requests of which round(N * 10%) repeat an earlier one exactly."""
    rng = random.Random(seed)
    duplicates = set(rng.sample(range(20, n), round(n * DUPLICATES))) if n > 40 else set()
    requests: list[Request] = []
    for i in range(n):
        if i in duplicates:
            original = rng.choice([r for r in requests[-200:] if not r.duplicate])
            requests.append(Request(original.form, original.sid, True))
            continue
        sid = f"SM{prefix}{i:030x}"[:34]
        requests.append(Request(tuple(twilio_form(rng, sid, rng.randrange(500))), sid, False))
    return requests


@dataclass
class Load:
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]
    started: float
    finished: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0



async def load(base: str, requests: list[Request], senders: int, sign: bool) -> Load:
    """Post every request with `senders` in flight; each sender posts its next one once answered."""
    url = base + PATH
    validator = RequestValidator(TOKEN)
    # Signatures are computed before the clock starts: the client's CPU is not what is measured.
    prepared = [
        (list(r.form), {"X-Twilio-Signature": validator.compute_signature(url, dict(r.form))} if sign else {})
        for r in requests
    ]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(prepared)

        async def sender() -> None:
            for form, headers in queue:
                began = time.perf_counter()
                async with session.post(url, data=form, headers=headers) as response:
                    text = await response.text()
                latencies.append(1000 * (time.perf_counter() - began))
                statuses[response.status] += 1
                if response.status != 200 or text != EMPTY_TWIML:
                    raise RuntimeError(f"{url} answered {response.status}: {text[:200]}")

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(senders))), timeout=max(60.0, len(requests) / 20))
        finished = time.perf_counter()
    return Load(finished - started, latencies, statuses, started, finished)


# --- processes -------------------------------------------------------------------


@contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


async def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                async with session.get(base + "/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.args} did not answer /health in {timeout} s")
            await asyncio.sleep(0.1)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {"TWILIO_AUTH_TOKEN": TOKEN}


class PySpy:
    """`py-spy record` on one process for the timed load; `summary()` says where its time went."""

    def __init__(self, outdir: Path | None, label: str) -> None:
        self.outdir, self.label = outdir, label
        self.process: subprocess.Popen[bytes] | None = None
        self.output: Path | None = None

    def start(self, pid: int) -> None:
        if self.outdir is None:
            return
        exe = Path(sys.executable).with_name("py-spy")
        if not exe.exists():
            raise SystemExit("--py-spy needs py-spy in the venv: .venv/bin/pip install py-spy")
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.output = self.outdir / f"{self.label}.txt"
        self.process = subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw",
             "--output", str(self.output)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let py-spy attach before the clock starts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def summary(self, top: int = 14) -> str:
        if self.output is None or not self.output.exists():
            return ""
        leaves: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        areas: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            leaves[short(frames[-1])] += count
            areas[area(frames)] += count
            for name in dict.fromkeys(short(f) for f in frames if ours(f)):
                inclusive[name] += count
        if not total:
            return "py-spy: no samples"
        out = [f"py-spy, {self.label}: {total} samples of busy threads"]
        out += ["  by area (innermost library on the stack):"] + [f"    {100 * n / total:5.1f}%  {k}" for k, n in areas.most_common(10)]
        out += ["  hub and plugin functions, inclusive:"] + [f"    {100 * n / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)]
        out += ["  innermost frames, self:"] + [f"    {100 * n / total:5.1f}%  {k}" for k, n in leaves.most_common(top)]
        return "\n".join(out)


def short(frame: str) -> str:
    """`accept (hub/inbox.py)` from py-spy's `accept (/work/main/hub/inbox.py:71)`."""
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if path else name


AREAS = (
    ("sqlalchemy", "SQLAlchemy"), ("asyncpg", "asyncpg"), ("aiosqlite", "sqlite3 / aiosqlite"), ("sqlite3", "sqlite3 / aiosqlite"),
    ("aiohttp", "aiohttp server"), ("multidict", "aiohttp server"), ("yarl", "aiohttp server"), ("twilio", "twilio SDK (signature)"),
    ("hmac", "twilio SDK (signature)"), ("structlog", "structlog"), ("phonenumbers", "phonenumbers"), ("jinja2", "Jinja2"),
    ("greenlet", "greenlet (SQLAlchemy async bridge)"), ("json", "json"), ("asyncio", "asyncio event loop"), ("selectors", "asyncio event loop"),
)


def ours(frame: str) -> bool:
    """Whether a py-spy frame is hub or plugin code (py-spy prints paths relative to sys.path)."""
    parts = frame.partition(" (")[2].split(":")[0].split("/")
    return parts[0] in ("hub", "plugins") or "hub" in parts[-3:-1] or "plugins" in parts[-3:-1]


def area(frames: list[str]) -> str:
    for frame in reversed(frames):
        parts = frame.partition(" (")[2].split(":")[0].split("/")
        for needle, label in AREAS:
            if needle in parts[:-1] or parts[-1] == f"{needle}.py":
                return label
        if ours(frame):
            return "hub and plugin code"
    return "other"


# --- the targets -------------------------------------------------------------------


@dataclass
class Result:
    label: str
    load: Load
    processed_after: float | None = None
    """Seconds from the first timed request until every stored event was processed."""
    lag_after_last_answer: float | None = None
    stored: int = 0
    failed: int = 0
    profile: str = ""
    notes: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per timed request, per process (the server; PostgreSQL, all its backends), from /proc."""


class CpuWindow:
    """CPU used by the server process and the PostgreSQL cluster over a timed load."""

    def __init__(self, pid: int, cluster: PostgresCluster | None) -> None:
        self.pid, self.postmaster = pid, postmaster_pid(cluster)
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        values = {"server": cpu_seconds(self.pid)}
        if self.postmaster is not None:
            values["postgresql"] = postgres_cpu(self.postmaster)
        return values

    def per_request(self, requests: int) -> dict[str, float]:
        end = self._read()
        return {name: 1000 * (end[name] - self.start[name]) / max(1, requests) for name in end}


async def run_baseline(cluster: PostgresCluster, requests: list[Request], warm: list[Request], senders: int, workdir: Path) -> Result:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        await conn.execute("DROP DATABASE IF EXISTS bench_baseline")
        await conn.execute("CREATE DATABASE bench_baseline")
    finally:
        await conn.close()
    dsn = cluster.dsn("bench_baseline")
    port = free_port()
    log = workdir / "baseline.log"
    args = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", dsn, "--port", str(port)]
    with started(args, clean_env(), log) as process:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, process, log)
        await load(base, warm, senders, sign=False)
        cpu = CpuWindow(process.pid, cluster)
        measured = await load(base, requests, senders, sign=False)
        cpu_ms = cpu.per_request(len(requests))
    conn = await asyncpg.connect(dsn)
    try:
        stored = int(await conn.fetchval("SELECT count(*) FROM inbound_baseline"))
    finally:
        await conn.close()
    return Result("baseline: aiohttp + asyncpg insert (PostgreSQL)", measured, stored=stored, cpu_ms=cpu_ms)


def hub_document(database_url: str, port: int) -> dict[str, Any]:
    return config_document(
        database_url,
        hub={
            "plugin_dirs": [],
            "public_url": f"http://127.0.0.1:{port}",
            # Every request would otherwise log (duplicates at info); production runs at info, which
            # costs one JSON line per duplicate.
            "log_level": "warning",
            "inbox_poll_seconds": 1.0,
            # One load generator is one source address: the per-source limit would refuse it (the
            # limiter still counts every request, so its cost is measured).
            "webhook_requests_per_minute": 100_000_000,
        },
        tenants={TENANT: {"name": "Bench", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es"}},
        plugins={"twilio_messaging": {
            "account_sid": ACCOUNT, "auth_token": {"env": "TWILIO_AUTH_TOKEN"},
            "whatsapp_from": WHATSAPP_FROM, "sms_from": SMS_FROM, "sandbox": True,
        }},
    )


async def inbox_counts(database_url: str) -> tuple[int, int, int]:
    """(events stored, still pending, failed) in inbox_events."""
    query = (
        "SELECT count(*), "
        "coalesce(sum(CASE WHEN processed_at IS NULL AND failed_at IS NULL THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) FROM inbox_events"
    )
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            stored, pending, failed = db.execute(query).fetchone()
        return int(stored), int(pending), int(failed)
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        row = await conn.fetchrow(query)
    finally:
        await conn.close()
    return int(row[0]), int(row[1]), int(row[2])


async def run_hub(label: str, database_url: str, requests: list[Request], warm: list[Request], senders: int,
                  workdir: Path, spy_dir: Path | None, *, split: bool = False, intake: bool = False,
                  cluster: PostgresCluster | None = None) -> Result:
    """`hub serve` (with its workers, or with `--no-workers` beside one `hub worker` when `split`) under the load.

    `intake`: `hub serve --no-workers` alone during the load (acknowledgement only), and one
    `hub worker` started when the load is over to process what was stored.
    """
    port = free_port()
    config = write_toml(workdir / f"{label}.toml", hub_document(database_url, port))
    env = clean_env()
    upgrade = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), "db", "upgrade"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if upgrade.returncode != 0:
        raise RuntimeError(f"hub db upgrade failed: {upgrade.stdout}{upgrade.stderr}")
    log = workdir / f"{label}-serve.log"
    spy = PySpy(spy_dir, label)
    args = [sys.executable, "-m", "hub", "--config", str(config), "serve", "--port", str(port)]
    worker_args = [sys.executable, "-m", "hub", "--config", str(config), "worker"]
    worker = started(worker_args, env, workdir / f"{label}-worker.log") if split or intake else nullcontext()
    later = nullcontext()
    with started(args + (["--no-workers"] if split or intake else []), env, log) as process, worker:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, process, log)
        await load(base, warm, senders, sign=True)
        await wait_processed(database_url, len({r.sid for r in warm}), None)
        if intake:
            worker.__exit__(None, None, None)  # stop the warm-up's worker: the timed load is intake only
        spy.start(process.pid)
        cpu = CpuWindow(process.pid, cluster)
        try:
            measured = await load(base, requests, senders, sign=True)
        finally:
            spy.stop()
        cpu_ms = cpu.per_request(len(requests))
        if intake:
            later = started(worker_args, env, workdir / f"{label}-worker-after.log")
        expected = len({r.sid for r in warm}) + len({r.sid for r in requests})
        with later:
            done_at = await wait_processed(database_url, expected, measured.started)
        stored, _pending, failed = await inbox_counts(database_url)
        errors = [line for line in log.read_text(errors="replace").splitlines() if "error" in line.lower()]
    if intake:
        name = f"hub serve --no-workers (intake only; a worker afterwards), {label.removesuffix('-intake')}"
    elif split:
        name = f"hub serve --no-workers + hub worker, {label.removesuffix('-split')}"
    else:
        name = f"hub serve, {label}"
    result = Result(name, measured, stored=stored, failed=failed, profile=spy.summary(), cpu_ms=cpu_ms)
    if done_at is not None:
        result.processed_after = done_at - measured.started
        result.lag_after_last_answer = done_at - measured.finished
    if errors:
        result.notes.append(f"{len(errors)} error lines in {log}, e.g. {errors[0][:200]}")
    return result


async def wait_processed(database_url: str, expected: int, started_at: float | None) -> float | None:
    """Poll until `expected` events are stored and none is pending; the perf_counter when that was seen."""
    deadline = time.perf_counter() + PROCESS_TIMEOUT
    while True:
        stored, pending, _failed = await inbox_counts(database_url)
        now = time.perf_counter()
        if stored >= expected and pending == 0:
            return now
        if now > deadline:
            print(f"  ! not all processed after {PROCESS_TIMEOUT:.0f} s: {stored} stored, {pending} pending", file=sys.stderr)
            return None
        await asyncio.sleep(POLL_SECONDS)


# --- the baseline server (run by this script in its own process) ---------------------------


async def serve_baseline(dsn: str, port: int) -> None:
    from aiohttp import web

    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS inbound_baseline (id bigserial PRIMARY KEY, sid text UNIQUE NOT NULL, "
        "payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
    )

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        payload = json.dumps({k: str(v) for k, v in form.items()})
        await pool.execute(
            "INSERT INTO inbound_baseline (sid, payload) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING", form["MessageSid"], payload
        )
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post(PATH, inbound)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=3600)  # bounded even if nobody stops it
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()
        await pool.close()


# --- the report ---------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace, duplicates: int, distinct: int) -> str:
    baseline = next((r for r in results if r.label.startswith("baseline")), None)
    lines = [
        "## Inbound webhooks (bench/inbound.py)",
        "",
        f"`{os.cpu_count()}`-core machine, everything on 127.0.0.1: {args.n} timed requests per target "
        f"({duplicates} of them Twilio retries of an earlier MessageSid) after {WARM_UP} warm-up ones, "
        f"{args.senders} concurrent senders (one aiohttp client), signed Twilio inbound webhooks for the hub. "
        f"`hub serve` runs its workers, so the inbox is processed while the acknowledgements are measured. "
        f"PostgreSQL: {CLUSTERS[args.settings][1]}.",
        "",
        "| target | req/s | p50 ms | p99 ms | all processed after | after last 200 | aim | CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        p50, p99 = percentile(r.load.latencies_ms, 50), percentile(r.load.latencies_ms, 99)
        processed = f"{r.processed_after:.2f} s" if r.processed_after is not None else "-"
        lag = f"{r.lag_after_last_answer:.2f} s" if r.lag_after_last_answer is not None else "-"
        if baseline is None or r is baseline:
            aim = "-"
        else:
            share = r.load.rate / baseline.load.rate
            aim = f"{100 * share:.0f}% of baseline {'ok' if share >= AIM_FRACTION else 'MISSED'}; p99 {'ok' if p99 < AIM_P99_MS else 'MISSED'}"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms.items())
        lines.append(f"| {r.label} | {r.load.rate:,.0f} | {p50:.1f} | {p99:.1f} | {processed} | {lag} | {aim} | {cpu} |")
    lines.append("")
    for r in results:
        unique = distinct
        if r.label.startswith("baseline"):
            lines.append(f"- {r.label}: {r.stored} rows for {unique} distinct MessageSids.")
        else:
            lines.append(f"- {r.label}: {r.stored} inbox events for {unique} distinct MessageSids, {r.failed} failed; "
                         f"mean latency {statistics.fmean(r.load.latencies_ms):.1f} ms.")
        lines.extend(f"  - {note}" for note in r.notes)
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    n = min(args.n, MAX_N)
    args.n = n
    requests = make_requests(n, seed=7, prefix="ab")
    warm = make_requests(WARM_UP, seed=8, prefix="cd")
    duplicates = sum(r.duplicate for r in requests)
    spy_dir = Path(args.py_spy).resolve() if args.py_spy else None
    results: list[Result] = []
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR): the baseline needs them")
    cluster = CLUSTERS[args.settings][0](bindir)
    cluster.start()
    print(f"PostgreSQL: {CLUSTERS[args.settings][1]}", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-inbound-") as tmp:
            workdir = Path(tmp)
            print(f"baseline (aiohttp + asyncpg), {n} requests ...", file=sys.stderr)
            results.append(await run_baseline(cluster, requests, warm, args.senders, workdir))
            for backend in args.backends.split(","):
                if backend == "sqlite":
                    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
                elif backend in ("postgresql", "postgresql-split", "postgresql-intake"):
                    name = backend.replace("-", "_")
                    conn = await asyncpg.connect(cluster.dsn())
                    try:
                        await conn.execute(f"CREATE DATABASE bench_{name}")
                    finally:
                        await conn.close()
                    url = cluster.url(f"bench_{name}")
                else:
                    raise SystemExit(f"unknown backend {backend!r} (sqlite, postgresql, postgresql-split, postgresql-intake)")
                print(f"hub on {backend}, {n} requests ...", file=sys.stderr)
                results.append(await run_hub(backend, url, requests, warm, args.senders, workdir, spy_dir,
                                             split=backend.endswith("-split"), intake=backend.endswith("-intake"),
                                             cluster=None if backend == "sqlite" else cluster))
    finally:
        cluster.stop()
    distinct = len({r.sid for r in requests}) + len({r.sid for r in warm})
    print(report(results, args, duplicates, distinct))
    for r in results:
        if r.profile:
            print()
            print(r.profile)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000, help=f"timed requests per target (at most {MAX_N})")
    parser.add_argument("--senders", type=int, default=SENDERS, help="concurrent senders")
    parser.add_argument("--backends", default="sqlite,postgresql,postgresql-split,postgresql-intake",
                        help="hub set-ups, comma-separated: sqlite, postgresql, postgresql-split (serve --no-workers + worker), "
                             "postgresql-intake (serve --no-workers alone during the load)")
    parser.add_argument("--settings", default="test", choices=sorted(CLUSTERS),
                        help="PostgreSQL durability: stock (defaults, fsync on) or test (the test cluster's, fsync off)")
    parser.add_argument("--py-spy", metavar="DIR", help="record `hub serve` with py-spy during each timed load")
    parser.add_argument("--serve-baseline", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_baseline:
        asyncio.run(serve_baseline(arguments.serve_baseline, arguments.port))
    else:
        asyncio.run(main(arguments))
