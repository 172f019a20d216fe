"""Booking ingestion benchmark: `PUT /api/v1/appointments/{id}` for new bookings against `hub serve`.

    .venv/bin/python bench/appointments.py [--n 2000] [--clients 16] [--targets sqlite,pg-test,pg-stock]
                                          [--bulk 5000] [--workers] [--py-spy DIR] [--statements]

One run, everything on 127.0.0.1, one load generator (an aiohttp client with
`--clients` concurrent clients, each sending its next request once the
previous one was answered):

1. the baseline, once per PostgreSQL setting: a bare aiohttp handler (this
   script in another process, `--serve-baseline`) that parses the same JSON
   body and inserts one row with asyncpg (`ON CONFLICT DO NOTHING` on the
   external id, one INSERT and its commit per request), answering 201;
2. `python -m hub serve --no-workers` (the HTTP intake alone; `--workers`
   runs the dispatcher and inbox workers in the same process too) on SQLite,
   on the test cluster's PostgreSQL (fsync, synchronous_commit and
   full_page_writes off) and on a stock PostgreSQL (fsync on): every request
   is a new booking (a new external id) with a contact phone, on the
   shipped config's reminder plan (24h, 2h, 30m: three reminders and a
   confirmation each, every start two to thirty days ahead).

Per target it prints requests/s, p50 / p99 latency, errors (any answer but
201), the CPU seconds per request of the hub process and of the whole
PostgreSQL cluster (from /proc over the timed window), and PostgreSQL's
statements per request (pg_stat_statements, utility statements such as BEGIN
and COMMIT included; `--statements` also prints the most frequent ones).
Afterwards it checks the database: every booking stored once, each with its
three reminders and one confirmation, and nothing else.

`--bulk N` also times N bookings sent through `POST /api/v1/appointments/batch`
(1,000 per request, `--clients` requests in flight) and through
`hub appointments import` (a CSV file), with the same checks, and re-sends
the whole batch set once to check that nothing changes.

Bounded: N is capped, each phase has a timeout, and every process and
PostgreSQL cluster this script starts are stopped on exit, on errors and on
Ctrl-C (by their own process ids).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench.common import percentile, stop_process  # noqa: E402
from bench.inbound import started, wait_ready  # noqa: E402
from tests.conftest import config_document, write_toml  # noqa: E402
from tests.pg import PostgresCluster, find_bindir, free_port  # noqa: E402

MAX_N = 20_000
WARM_UP = 200
CLIENTS = 16
BATCH_SIZE = 1_000
TENANT = "bench"
REMINDERS = 3  # the shipped plan: 24h, 2h, 30m
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOAD_TIMEOUT = 600.0
AIM_RATE = 500.0
AIM_P99_MS = 100.0

SETTINGS = {
    "pg-test": "the test cluster (fsync, synchronous_commit and full_page_writes off)",
    "pg-stock": "PostgreSQL defaults (fsync on, synchronous_commit on)",
}


# --- clusters ----------------------------------------------------------------------


class Cluster(PostgresCluster):
    """The tests' throwaway cluster, on the test settings or PostgreSQL's defaults, with pg_stat_statements."""

    def __init__(self, bindir: Path, setting: str) -> None:
        super().__init__(bindir)
        self.setting = setting

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100 "
                   "-c shared_preload_libraries=pg_stat_statements")
        if self.setting == "pg-test":
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    @property
    def postmaster(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])


async def create_database(cluster: Cluster, name: str) -> str:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(cluster.dsn(name))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    return cluster.url(name)


async def reset_statements(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def statement_counts(cluster: Cluster, database: str) -> list[tuple[int, str]]:
    """(calls, query) for the database's statements since the last reset, most frequent first."""
    conn = await asyncpg.connect(cluster.dsn(database))
    try:
        rows = await conn.fetch(
            "SELECT s.calls, s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = $1 AND s.query NOT ILIKE '%pg_stat_statements%' ORDER BY s.calls DESC", database,
        )
    finally:
        await conn.close()
    return [(int(r["calls"]), " ".join(r["query"].split())) for r in rows]


# --- CPU --------------------------------------------------------------------------


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process from /proc (with its reaped children's if asked); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + (cutime + cstime if children else 0)) / CLOCK_TICKS


def cluster_cpu(postmaster: int) -> float:
    """CPU of the whole cluster: the postmaster, its reaped backends, and the live ones."""
    total = cpu_seconds(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == postmaster:
            total += cpu_seconds(int(stat.parent.name))
    return total


@dataclass
class Cpu:
    hub: float = 0.0
    postgresql: float = 0.0


class CpuMeter:
    def __init__(self, hub_pid: int, postmaster: int | None) -> None:
        self.hub_pid, self.postmaster = hub_pid, postmaster
        self.begin = Cpu()

    def read(self) -> Cpu:
        return Cpu(cpu_seconds(self.hub_pid), cluster_cpu(self.postmaster) if self.postmaster else 0.0)

    def start(self) -> None:
        self.begin = self.read()

    def stop(self) -> Cpu:
        end = self.read()
        return Cpu(end.hub - self.begin.hub, end.postgresql - self.begin.postgresql)


# --- the load ----------------------------------------------------------------------


def booking(rng: random.Random, external_id: str, phone: int, now: dt.datetime) -> dict[str, Any]:
    """A new booking's body: a contact with a phone, two to thirty days ahead, so all three reminders are planned."""
    start = (now + dt.timedelta(days=rng.randint(2, 30))).replace(hour=rng.randint(9, 18), minute=rng.choice((0, 15, 30, 45)),
                                                                   second=0, microsecond=0)
    return {
        "external_id": external_id,
        "contact": {"name": f"Cliente {phone}", "phone": f"+34 600 {phone // 1000:03d} {phone % 1000:03d}"},
        "start": start.isoformat(),
        "end": (start + dt.timedelta(minutes=30)).isoformat(),
        "timezone": "Europe/Madrid",
        "service": rng.choice(["Limpieza dental", "Revisión", "Ortodoncia"]),
    }


def make_bookings(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """N new bookings; about one in five is by someone who booked before in the run (a known contact)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=1)))
    people = max(1, int(n * 0.8))
    first = rng.randrange(100_000, 800_000)
    return [booking(rng, f"{prefix}-{i:06d}", first + rng.randrange(people), now) for i in range(n)]


@dataclass
class Load:
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]
    items: int
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in (200, 201))


async def put_load(base: str, key: str, bookings: list[dict[str, Any]], clients: int) -> Load:
    """PUT every booking with `clients` in flight; each client sends its next one once answered."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    prepared = [(f"{base}/api/v1/appointments/{b['external_id']}",
                 json.dumps({k: v for k, v in b.items() if k != "external_id"}).encode()) for b in bookings]
    return await _run(prepared, headers, clients, "PUT", lambda _body: 1)


async def batch_load(base: str, key: str, bookings: list[dict[str, Any]], clients: int) -> Load:
    """POST the bookings to /appointments/batch, BATCH_SIZE per request, `clients` requests in flight."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = f"{base}/api/v1/appointments/batch"
    prepared = [(url, json.dumps({"appointments": bookings[i:i + BATCH_SIZE]}).encode())
                for i in range(0, len(bookings), BATCH_SIZE)]

    def failed_items(body: dict[str, Any]) -> int:
        return sum(1 for result in body.get("results", []) if "error" in result)

    load = await _run(prepared, headers, clients, "POST", failed_items, json_body=True)
    load.items = len(bookings)
    return load


async def _run(prepared: list[tuple[str, bytes]], headers: dict[str, str], clients: int, method: str,
               count: Any, json_body: bool = False) -> Load:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    first_error: list[str] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(prepared)

        async def client() -> None:
            for url, data in queue:
                began = time.perf_counter()
                async with session.request(method, url, data=data, headers=headers) as response:
                    text = await response.text()
                latencies.append(1000 * (time.perf_counter() - began))
                statuses[response.status] += 1
                if response.status not in (200, 201) and not first_error:
                    first_error.append(f"{response.status}: {text[:200]}")
                elif json_body and (bad := count(json.loads(text))):
                    statuses[-1] += bad  # items refused inside a 200 batch answer
                    if not first_error:
                        first_error.append(text[:300])

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout=LOAD_TIMEOUT)
        finished = time.perf_counter()
    return Load(finished - started, latencies, statuses, len(prepared), first_error[0] if first_error else "")


# --- processes ---------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {"BENCH_TWILIO_TOKEN": "bench-token"}


def hub_cli(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], env=clean_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"hub {' '.join(args)} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def hub_document(database_url: str, port: int) -> dict[str, Any]:
    """The shipped config's tenant policy and plugins (SMS in sandbox instead of e-mail: the bookings carry phones)."""
    return config_document(
        database_url,
        hub={"plugin_dirs": [], "public_url": f"http://127.0.0.1:{port}", "log_level": "warning", "inbox_poll_seconds": 1.0},
        # The default API budget (600 a minute) would refuse most of a run.
        tenants={TENANT: {"name": "Bench Clinic", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es",
                          "api_requests_per_minute": 1_000_000}},
        plugins={
            "rules_responder": {"enabled": True},
            "twilio_messaging": {"account_sid": "AC" + "0b" * 16, "auth_token": {"env": "BENCH_TWILIO_TOKEN"},
                                 "sms_from": "+15017122661", "sandbox": True},
        },
    )


class PySpy:
    """`py-spy record --format raw` on one process for the timed load; the stacks stay in DIR."""

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
            [str(exe), "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(self.output)],
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

    def summary(self, top: int = 25) -> str:
        if self.output is None or not self.output.exists():
            return ""
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            for name in dict.fromkeys(short(f) for f in stack.split(";")):
                inclusive[name] += count
        if not total:
            return "py-spy: no samples"
        return "\n".join([f"py-spy, {self.label}: {total} samples; inclusive share of the busiest frames:"]
                         + [f"  {100 * n / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)])


def short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if path else name


# --- checks ------------------------------------------------------------------------


CHECK = (
    "SELECT a.external_id, "
    "  (SELECT count(*) FROM notifications n WHERE n.appointment_id = a.id AND n.kind = 'reminder'), "
    "  (SELECT count(*) FROM notifications n WHERE n.appointment_id = a.id AND n.kind = 'confirmation') "
    "FROM appointments a"
)


async def check_bookings(database_url: str, expected: set[str]) -> list[str]:
    """Problems found: bookings missing or stored twice, a reminder or confirmation too many or missing."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            rows = db.execute(CHECK).fetchall()
            notifications = db.execute("SELECT count(*) FROM notifications").fetchone()[0]
    else:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = [tuple(r) for r in await conn.fetch(CHECK)]
            notifications = await conn.fetchval("SELECT count(*) FROM notifications")
        finally:
            await conn.close()
    problems: list[str] = []
    ids = Counter(row[0] for row in rows)
    if twice := [i for i, n in ids.items() if n > 1]:
        problems.append(f"{len(twice)} external ids stored more than once, e.g. {twice[0]}")
    if missing := expected - set(ids):
        problems.append(f"{len(missing)} bookings missing, e.g. {sorted(missing)[0]}")
    if extra := set(ids) - expected:
        problems.append(f"{len(extra)} unexpected bookings, e.g. {sorted(extra)[0]}")
    if wrong := [row for row in rows if (row[1], row[2]) != (REMINDERS, 1)]:
        problems.append(f"{len(wrong)} bookings without exactly {REMINDERS} reminders and 1 confirmation, e.g. {wrong[0]}")
    if notifications != len(rows) * (REMINDERS + 1):
        problems.append(f"{notifications} notifications for {len(rows)} bookings (expected {len(rows) * (REMINDERS + 1)})")
    return problems


async def notification_count(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM notifications").fetchone()[0])
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifications"))
    finally:
        await conn.close()


# --- targets -----------------------------------------------------------------------


@dataclass
class Result:
    label: str
    load: Load
    cpu: Cpu
    statements: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    profile: str = ""
    baseline: Result | None = None

    @property
    def statements_per_item(self) -> float:
        return sum(calls for calls, _ in self.statements) / self.load.items if self.load.items else 0.0


async def run_baseline(cluster: Cluster, bookings: list[dict[str, Any]], warm: list[dict[str, Any]], clients: int,
                       workdir: Path) -> Result:
    await create_database(cluster, "bench_baseline")
    dsn = cluster.dsn("bench_baseline")
    port = free_port()
    log = workdir / f"baseline-{cluster.setting}.log"
    args = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", dsn, "--port", str(port)]
    with started(args, clean_env(), log) as process:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, process, log)
        await put_load(base, "-", warm, clients)
        await reset_statements(cluster.dsn("bench_baseline"))
        meter = CpuMeter(process.pid, cluster.postmaster)
        meter.start()
        measured = await put_load(base, "-", bookings, clients)
        cpu = meter.stop()
    statements = await statement_counts(cluster, "bench_baseline")
    conn = await asyncpg.connect(dsn)
    try:
        stored = int(await conn.fetchval("SELECT count(*) FROM appointments_baseline"))
    finally:
        await conn.close()
    result = Result(f"baseline: aiohttp + asyncpg INSERT per request, {cluster.setting}", measured, cpu, statements)
    if stored != len(bookings) + len(warm):
        result.problems.append(f"{stored} rows for {len(bookings) + len(warm)} bookings")
    return result


@dataclass
class Target:
    label: str
    url: str
    cluster: Cluster | None
    database: str = ""


async def run_hub(target: Target, bookings: list[dict[str, Any]], warm: list[dict[str, Any]], args: argparse.Namespace,
                  workdir: Path, bulk: list[dict[str, Any]]) -> list[Result]:
    port = free_port()
    config = write_toml(workdir / f"{target.label}.toml", hub_document(target.url, port))
    hub_cli(config, "db", "upgrade")
    key = hub_cli(config, "tenants", "key", TENANT, "--name", "bench").stdout.strip()
    log = workdir / f"{target.label}-serve.log"
    env = clean_env()
    serve = [sys.executable, "-m", "hub", "--config", str(config), "serve", "--port", str(port)]
    if not args.workers:
        serve.append("--no-workers")
    results: list[Result] = []
    postmaster = target.cluster.postmaster if target.cluster else None
    with started(serve, env, log) as process:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, process, log)
        await put_load(base, key, warm, args.clients)
        if target.cluster:
            await reset_statements(target.cluster.dsn(target.database))
        spy = PySpy(args.spy_dir, target.label)
        spy.start(process.pid)
        meter = CpuMeter(process.pid, postmaster)
        meter.start()
        try:
            measured = await put_load(base, key, bookings, args.clients)
        finally:
            cpu = meter.stop()
            spy.stop()
        statements = await statement_counts(target.cluster, target.database) if target.cluster else []
        result = Result(f"hub PUT, {target.label}", measured, cpu, statements, profile=spy.summary())
        expected = {b["external_id"] for b in bookings + warm}
        result.problems = await check_bookings(target.url, expected)
        if measured.first_error:
            result.problems.append(f"first error: {measured.first_error}")
        results.append(result)
        if bulk:
            results.append(await run_batch(target, base, key, bulk, args, process.pid, expected))
    if bulk:
        results.append(await run_import(target, config, bulk, workdir, expected | {b["external_id"] for b in bulk}))
    errors = [line for line in log.read_text(errors="replace").splitlines() if "error" in line.lower()]
    if errors:
        results[0].problems.append(f"{len(errors)} error lines in the hub's log, e.g. {errors[0][:300]}")
    return results


async def run_batch(target: Target, base: str, key: str, bulk: list[dict[str, Any]], args: argparse.Namespace, pid: int,
                    before: set[str]) -> Result:
    """The bulk endpoint: N new bookings in batches, then the same batches again (nothing may change)."""
    half = bulk[: len(bulk) // 2]
    if target.cluster:
        await reset_statements(target.cluster.dsn(target.database))
    meter = CpuMeter(pid, target.cluster.postmaster if target.cluster else None)
    meter.start()
    measured = await batch_load(base, key, half, args.clients)
    cpu = meter.stop()
    statements = await statement_counts(target.cluster, target.database) if target.cluster else []
    result = Result(f"hub POST /appointments/batch ({BATCH_SIZE} a request), {target.label}", measured, cpu, statements)
    expected = before | {b["external_id"] for b in half}
    result.problems = await check_bookings(target.url, expected)
    count = await notification_count(target.url)
    again = await batch_load(base, key, half, args.clients)
    if await notification_count(target.url) != count or again.errors:
        result.problems.append(f"re-sending the batches changed the notifications or failed ({again.first_error})")
    if measured.first_error:
        result.problems.append(f"first error: {measured.first_error}")
    return result


async def run_import(target: Target, config: Path, bulk: list[dict[str, Any]], workdir: Path, before: set[str]) -> Result:
    """`hub appointments import` of a CSV file (the hub serve process is stopped by then)."""
    rest = bulk[len(bulk) // 2:]
    path = workdir / f"{target.label}-import.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["external_id", "start", "end", "timezone", "service", "contact_name", "contact_phone"])
        for b in rest:
            writer.writerow([b["external_id"], b["start"], b["end"], b["timezone"], b["service"], b["contact"]["name"],
                             b["contact"]["phone"]])
    if target.cluster:
        await reset_statements(target.cluster.dsn(target.database))
    postmaster_before = cluster_cpu(target.cluster.postmaster) if target.cluster else 0.0
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "hub", "--config", str(config), "appointments", "import", str(path), "--tenant", TENANT],
        env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=LOAD_TIMEOUT,
    )
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command's own CPU: the only child reaped since
    cpu = Cpu(usage.ru_utime + usage.ru_stime - children_before.ru_utime - children_before.ru_stime,
              cluster_cpu(target.cluster.postmaster) - postmaster_before if target.cluster else 0.0)
    statements = await statement_counts(target.cluster, target.database) if target.cluster else []
    load = Load(seconds, [], Counter({0 if process.returncode else 201: 1}), len(rest),
                "" if process.returncode == 0 else process.stderr[-500:])
    result = Result(f"hub appointments import (CSV), {target.label}", load, cpu, statements)
    result.problems = await check_bookings(target.url, before)
    if load.first_error:
        result.problems.append(f"import failed: {load.first_error}")
    return result


# --- the baseline server (run by this script in its own process) --------------------------


async def serve_baseline(dsn: str, port: int) -> None:
    from aiohttp import web

    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS appointments_baseline (id bigserial PRIMARY KEY, external_id text UNIQUE NOT NULL, "
        "payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
    )

    async def put(request: web.Request) -> web.Response:
        body = await request.json()
        row = await pool.fetchval(
            "INSERT INTO appointments_baseline (external_id, payload) VALUES ($1, $2) ON CONFLICT (external_id) DO NOTHING "
            "RETURNING id", request.match_info["external_id"], json.dumps(body),
        )
        return web.json_response({"id": row, "external_id": request.match_info["external_id"]}, status=201)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_put("/api/v1/appointments/{external_id}", put)
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


# --- the report --------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "## Booking ingestion (bench/appointments.py)",
        "",
        f"{os.cpu_count()}-core machine, everything on 127.0.0.1; {args.n} timed new bookings per target after {WARM_UP} "
        f"warm-up ones, {args.clients} concurrent clients; `hub serve{'' if args.workers else ' --no-workers'}`. "
        "CPU is per booking: the hub process (or the import command) and the whole PostgreSQL cluster.",
        "",
        "| target | bookings/s | vs baseline | p50 ms | p99 ms | errors | hub CPU ms | PostgreSQL CPU ms | statements | aim |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lat = r.load.latencies_ms
        p50 = f"{percentile(lat, 50):.1f}" if lat else "-"
        p99 = f"{percentile(lat, 99):.1f}" if lat else "-"
        ratio = f"{r.load.rate / r.baseline.load.rate:.2f}x" if r.baseline and r.baseline.load.rate else "-"
        items = r.load.items or 1
        statements = f"{r.statements_per_item:.1f}" if r.statements else "-"
        aim = "-"
        if r.label.startswith("hub PUT"):
            if "pg-" in r.label:
                ok = r.load.rate >= AIM_RATE and lat and percentile(lat, 99) < AIM_P99_MS
                aim = f">= {AIM_RATE:.0f}/s, p99 < {AIM_P99_MS:.0f} ms: {'ok' if ok else 'MISSED'}"
            else:
                aim = f"no errors: {'ok' if not r.load.errors else 'MISSED'}"
        lines.append(f"| {r.label} | {r.load.rate:,.0f} | {ratio} | {p50} | {p99} | {r.load.errors} | "
                     f"{1000 * r.cpu.hub / items:.2f} | {1000 * r.cpu.postgresql / items:.2f} | {statements} | {aim} |")
    lines.append("")
    for r in results:
        lines.append(f"- {r.label}: " + ("checked: every booking stored once with its reminders and confirmation"
                                          if not r.problems else "PROBLEMS: " + "; ".join(r.problems)))
    if args.statements:
        for r in results:
            if r.statements:
                lines += ["", f"{r.label}: statements per booking"]
                lines += [f"  {calls / (r.load.items or 1):6.2f}  {query[:160]}" for calls, query in r.statements[:30]]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    args.n = min(args.n, MAX_N)
    bookings = make_bookings(args.n, seed=7, prefix="bk")
    warm = make_bookings(WARM_UP, seed=8, prefix="warm")
    bulk = make_bookings(min(args.bulk, MAX_N * 5), seed=9, prefix="bulk") if args.bulk else []
    args.spy_dir = Path(args.py_spy).resolve() if args.py_spy else None
    targets = args.targets.split(",")
    if unknown := [t for t in targets if t not in ("sqlite", *SETTINGS)]:
        raise SystemExit(f"unknown target(s) {', '.join(unknown)}: use sqlite, pg-test, pg-stock")
    bindir = find_bindir()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-appointments-") as tmp:
        workdir = Path(tmp)
        for name in targets:
            if name == "sqlite":
                print(f"hub on SQLite, {args.n} bookings ...", file=sys.stderr)
                results += await run_hub(Target("sqlite", f"sqlite+aiosqlite:///{workdir / 'hub.db'}", None), bookings, warm, args,
                                         workdir, bulk)
                continue
            if bindir is None:
                raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR)")
            cluster = Cluster(bindir, name)
            cluster.start()
            try:
                print(f"baseline on {name}, {args.n} bookings ...", file=sys.stderr)
                baseline = await run_baseline(cluster, bookings, warm, args.clients, workdir)
                results.append(baseline)
                database = "bench_hub"
                url = await create_database(cluster, database)
                print(f"hub on {name}, {args.n} bookings ...", file=sys.stderr)
                for result in await run_hub(Target(name, url, cluster, database), bookings, warm, args, workdir, bulk):
                    if result.label.startswith("hub PUT"):
                        result.baseline = baseline
                    results.append(result)
            finally:
                cluster.stop()
    print(report(results, args))
    for r in results:
        if r.profile:
            print()
            print(r.profile)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help=f"timed bookings per target (at most {MAX_N})")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients")
    parser.add_argument("--targets", default="sqlite,pg-test,pg-stock", help="comma-separated: sqlite, pg-test, pg-stock")
    parser.add_argument("--bulk", type=int, default=0, help="also time this many bookings through the batch endpoint and the import")
    parser.add_argument("--workers", action="store_true", help="run hub serve with its workers (default: --no-workers)")
    parser.add_argument("--py-spy", metavar="DIR", help="record `hub serve` with py-spy during each timed PUT load")
    parser.add_argument("--statements", action="store_true", help="print PostgreSQL's most frequent statements per booking")
    parser.add_argument("--serve-baseline", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_baseline:
        asyncio.run(serve_baseline(arguments.serve_baseline, arguments.port))
    else:
        asyncio.run(main(arguments))
