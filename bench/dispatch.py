"""Outbound dispatch benchmark: raw sink baseline vs the hub's outbox pipeline.

    .venv/bin/python bench/dispatch.py [--n 5000] [--quick]

One run measures, all on 127.0.0.1:

1. raw sink baseline: an aiohttp client POSTing N JSON messages, 64 in
   flight, to a sink in its own process (bench/sink.py);
2. the pipeline: `python -m hub worker` processes (SQLite x1, PostgreSQL x1,
   PostgreSQL x4) started and idle, N notifications filled into the outbox in
   one transaction through `Hub.queue_notifications` (the bulk path; fill
   time reported, not counted),
   then the time from the fill's commit until all N rows are `sent`
   (the database is polled every 50 ms), and the lateness (sent_at - due_at)
   of each row, where due_at is set to the moment just before the commit;
3. a table with the aim beside the figures, and the CPU each part used per
   message (sender, PostgreSQL, sink; read from /proc over the timed
   window), which stays meaningful when other work shares the machine.

Before the pipelines, the fill itself is compared on each database (fresh
ones, no workers): N `Hub.queue_notification` calls against one
`Hub.queue_notifications` call, in one transaction each, with this process's
and PostgreSQL's CPU per notification; --fill runs only that comparison, and
--fill-profile TOP prints each fill's cProfile. --settings stock runs every
mode on a PostgreSQL cluster with its default settings (fsync on).

Other modes (see --help): --py-spy samples the worker processes and prints
where their CPU went; --sweep tries a grid of dispatch_batch_size x
dispatch_concurrency per path; --profile {sqlite,postgresql} runs the
dispatcher in this process under cProfile.

Everything is bounded: N is capped, each phase has a timeout, and every
process and PostgreSQL cluster this script starts is stopped on exit, on
errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import io
import itertools
import os
import pstats
import select
import signal
import statistics
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
from sqlalchemy import func, select as sql_select, update  # noqa: E402

from hub.config import parse_config  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.database import Database  # noqa: E402
from hub.models import Notification, utcnow  # noqa: E402
from hub.outbox import FINAL_STATUSES, NotificationRequest  # noqa: E402
from tests.conftest import config_document, write_toml  # noqa: E402
from tests.pg import PostgresCluster, find_bindir  # noqa: E402
from bench.common import percentile, stop_process  # noqa: E402

MAX_N = 50_000
IN_FLIGHT = 64
TENANT = "bench"
TENANTS = {TENANT: {"name": "Bench", "default_region": "ES", "timezone": "UTC", "locale": "en"}}
# The best of the values tried with --sweep on the 2-core machine (see docs/performance.md).
DEFAULT_BATCH = 200
DEFAULT_CONCURRENCY = 64
POLL_SECONDS = 0.05
SQLITE_POLL = 0.1
PATHS = {"sqlite": ("SQLite", 1), "pg1": ("PostgreSQL", 1), "pg4": ("PostgreSQL", 4)}
SWEEP_GRID = [(b, c) for b in (50, 100, 200, 500) for c in (32, 64, 128, 256) if c <= b]
AIM_FRACTION = 0.5
AIM_RATE = 1000.0
READY = "Notification Hub worker "  # what `hub worker` prints once it runs
LOCKED = "database is locked"  # a SQLite worker's claim waiting out busy_timeout while the fill holds the write lock
DESIGN_RAW_RATE = 4200.0  # DESIGN.md performance table: raw aiohttp POSTs to a local sink, 64 in flight


# --- processes ----------------------------------------------------------------


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(*_args: object) -> None:
    raise KeyboardInterrupt


def run(coro: Any) -> Any:
    """asyncio.run, with SIGINT/SIGTERM cancelling the coroutine rather than raising at an arbitrary point.

    An exception raised from a signal handler inside asyncpg's protocol callbacks can crash the
    interpreter (seen here: a segfault, and no cleanup); cancelling the task lets every `finally`
    stop the workers and close the connections. The interruption then surfaces as KeyboardInterrupt.
    """
    interrupted = False

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def cancel() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, cancel)
        try:
            return await coro
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


class Sink:
    """bench/sink.py in its own process; `url` once it listens."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Sink:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "sink.py"), "--max-seconds", "3600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.__exit__()
            raise RuntimeError(f"the sink did not start (got {line!r})")
        self.url = line
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            stop_process(self.process)

    @property
    def base(self) -> str:
        return self.url.rsplit("/", 1)[0]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process from /proc (with its reaped children's if asked); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + (cutime + cstime if children else 0)) / CLOCK_TICKS


def postgres_cpu(postmaster: int) -> float:
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


def postmaster_pid(cluster: PostgresCluster | None) -> int | None:
    if cluster is None:
        return None
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """CPU seconds used by the workers, the sink and PostgreSQL between `start()` and `stop()`."""

    def __init__(self, workers: list[int], sink: int, postmaster: int | None) -> None:
        self.workers, self.sink, self.postmaster = workers, sink, postmaster
        self.begin: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        values = {"workers": sum(cpu_seconds(pid) for pid in self.workers), "sink": cpu_seconds(self.sink)}
        if self.postmaster is not None:
            values["postgresql"] = postgres_cpu(self.postmaster)
        return values

    def start(self) -> None:
        self.begin = self.read()

    def stop(self) -> dict[str, float]:
        end = self.read()
        self.used = {key: end[key] - self.begin[key] for key in end}
        return self.used


class PySpy:
    """Optional: `py-spy record` on each worker during the timed window, summarised afterwards.

    py-spy counts a thread as busy when it is runnable, so on an oversubscribed machine the shares
    include time spent waiting for a core; read them as proportions, and the CPU table for amounts.
    """

    def __init__(self, outdir: Path | None, label: str) -> None:
        self.outdir, self.label = outdir, label
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, pids: list[int]) -> None:
        if self.outdir is None:
            return
        exe = Path(sys.executable).with_name("py-spy")
        if not exe.exists():
            raise SystemExit("--py-spy needs py-spy in the venv: .venv/bin/pip install py-spy")
        self.outdir.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            out = self.outdir / f"{self.label}-{pid}.txt"
            process = subprocess.Popen(
                [str(exe), "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.processes.append((process, out))

    def stop(self) -> list[Path]:
        outputs = []
        for process, out in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if out.exists():
                outputs.append(out)
        self.processes = []
        return outputs


def summarise_stacks(files: list[Path], top: int) -> str:
    """Where the workers' CPU went, from py-spy's collapsed stacks: by area, by hub function, by leaf."""
    areas: Counter[str] = Counter()
    hub_inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            leaves[frames[-1]] += count
            seen = set()
            for frame in frames:
                name = frame.split(" (", 1)[0]
                where = frame.split(" (", 1)[1] if " (" in frame else ""
                if ("hub/" in where or "plugins/" in where) and (name, where.split(":")[0]) not in seen:
                    key = f"{name} ({where.split(':')[0].rsplit('/', 2)[-2]}/{where.split(':')[0].rsplit('/', 1)[-1]})"
                    seen.add((name, where.split(":")[0]))
                    hub_inclusive[key] += count
            areas[area_of(frames)] += count
    if not total:
        return "py-spy: no samples"
    out = [f"py-spy: {total} samples of busy worker threads (200 Hz) in {len(files)} worker(s)", "", "by area (innermost library on the stack):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in areas.most_common()]
    out += ["", f"hub/plugin functions, inclusive (top {top}):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in hub_inclusive.most_common(top)]
    out += ["", f"innermost frames, self (top {top}):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(out)


AREAS = [
    ("sqlalchemy", "SQLAlchemy (compile, ORM, result rows)"),
    ("asyncpg", "asyncpg driver"),
    ("aiosqlite", "sqlite3/aiosqlite driver"),
    ("sqlite3", "sqlite3/aiosqlite driver"),
    ("aiohttp", "aiohttp client"),
    ("jinja2", "Jinja2 templates"),
    ("babel", "Babel locale data"),
    ("pathlib", "pathlib/os (template lookup)"),
    ("genericpath", "pathlib/os (template lookup)"),
    ("posixpath", "pathlib/os (template lookup)"),
    ("structlog", "structlog"),
    ("json", "json encode/decode"),
    ("greenlet", "greenlet (SQLAlchemy async bridge)"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
]


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        where = frame.split(" (", 1)[1] if " (" in frame else frame
        for needle, label in AREAS:
            if f"/{needle}/" in where or f"{needle}.py" in where or f"{needle}/" in where.split(":")[0][:len(needle) + 1]:
                return label
        if "hub/" in where or "plugins/" in where:
            return "hub code itself"
    return "other"


def start_workers(config: Path, count: int, logdir: Path) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    workers, logs = [], []
    for i in range(count):
        log = logdir / f"worker-{i}.log"
        log.write_bytes(b"")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "hub", "--config", str(config), "worker"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
        ))
        logs.append(log)
    return workers, logs


async def wait_ready(workers: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is not None:
                raise RuntimeError(f"a worker exited with {worker.returncode}:\n{log.read_text()[-2000:]}")
        if all(READY in log.read_text() for log in logs):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not start in time")
        await asyncio.sleep(0.1)


def check_alive(workers: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for worker, log in zip(workers, logs, strict=True):
        if worker.poll() is not None:
            raise RuntimeError(f"a worker exited with {worker.returncode}:\n{log.read_text()[-2000:]}")


def worker_errors(logs: list[Path]) -> list[str]:
    """Lines of the worker logs that report an error."""
    return [line for log in logs for line in log.read_text().splitlines() if "error" in line.lower()]


# --- measurements -------------------------------------------------------------


@dataclass
class Result:
    path: str
    workers: int
    n: int
    batch: int
    concurrency: int
    fill_seconds: float = 0.0
    seconds: float = 0.0
    done: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    statuses: Counter[str] = field(default_factory=Counter)
    sink_received: int = 0
    sink_distinct: int = 0
    error_lines: list[str] = field(default_factory=list)
    timed_out: bool = False
    cpu: dict[str, float] = field(default_factory=dict)
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def cpu_ms(self, key: str) -> float:
        return 1000 * self.cpu.get(key, 0.0) / self.done if self.done else float("nan")



@dataclass
class Raw:
    rates: list[float]
    client_ms: float
    """CPU of the client (this process) per message, over the timed repeats."""
    sink_ms: float

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


async def raw_baseline(sink: Sink, n: int, in_flight: int = IN_FLIGHT, repeats: int = 3) -> Raw:
    """messages/s for N JSON POSTs with `in_flight` in flight, once per repeat (after a warm-up)."""
    url = sink.url
    assert sink.process is not None
    payload = {"to": "+34600100000", "body": "raw baseline", "kind": "message", "pid": os.getpid()}
    rates = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def post(i: int) -> None:
            async with session.post(url, json={**payload, "notification_id": i}) as response:
                response.raise_for_status()
                await response.json()

        async def timed(count: int) -> float:
            next_i = iter(range(count))

            async def lane() -> None:
                for i in next_i:
                    await post(i)

            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(in_flight))), timeout=max(60, count / 50))
            return count / (time.perf_counter() - started)

        await timed(min(n, 500))
        client, server = time.process_time(), cpu_seconds(sink.process.pid)
        for _ in range(repeats):
            rates.append(await timed(n))
        client, server = time.process_time() - client, cpu_seconds(sink.process.pid) - server
    count = n * repeats
    return Raw(rates, 1000 * client / count, 1000 * server / count)


async def sink_call(sink: Sink, method: str, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, f"{sink.base}/{path}") as response:
        return await response.json()


def bench_document(database_url: str, sink_url: str, batch: int, concurrency: int) -> dict[str, Any]:
    return config_document(
        database_url,
        hub={
            "disabled": ["recorder", "flaky"],
            "inbox_poll_seconds": 1.0,
            "dispatch_batch_size": batch,
            "dispatch_concurrency": concurrency,
            # A SQLite worker in another process cannot be woken by the filler: it polls. PostgreSQL
            # workers are woken by LISTEN/NOTIFY and keep the default poll.
            "dispatch_poll_seconds": SQLITE_POLL if database_url.startswith("sqlite") else 1.0,
        },
        tenants=TENANTS,
        plugins={"http_sink": {"url": sink_url}},
    )


def run_queue_wait() -> float:
    """Seconds this process's threads have spent runnable but waiting for a core (/proc schedstat).

    On a machine shared with other benchmarks this is the part of the wall-clock time that is the
    machine's, not the code's.
    """
    total = 0
    for stat in Path("/proc/self/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def fill_requests(n: int) -> list[NotificationRequest]:
    """N notifications to N new people (one address each), as a bulk send to a mailing list is."""
    return [NotificationRequest(kind="message", address=f"+346001{i:05d}", data={"text": f"bench message {i}"},
                                channel_order=("whatsapp",)) for i in range(n)]


async def fill(document: dict[str, Any], n: int, *, bulk: bool = True, profiler: cProfile.Profile | None = None,
               postmaster: int | None = None, stamp_due: bool = True) -> tuple[float, float, dict[str, float]]:
    """Queue N notifications in one transaction; (fill seconds, perf_counter at the commit, CPU seconds used).

    `bulk` queues them with one `Hub.queue_notifications` call (set-based), otherwise with N calls of
    `Hub.queue_notification`. The CPU is this process's and, given its postmaster, PostgreSQL's, over
    the same window as the seconds (the hub's start and stop are left out). With `stamp_due`, due_at
    is set to one moment just before the commit (an UPDATE of every row, in the timed window), so
    lateness is measured from when the rows became visible to the workers rather than from when each
    was written; the fill comparison leaves it out, as it measures queueing alone.
    """
    hub = Hub.build(parse_config(document, "bench-config.toml", {}))
    async with hub.running(migrate=False):
        requests = fill_requests(n)
        # As `hub serve` and `hub worker` do once started (hub/commands/serve.py): what start-up
        # built lives as long as the process and is kept out of the collector's generations.
        gc.collect()
        gc.freeze()
        if profiler is not None:
            profiler.enable()
        pg_before = postgres_cpu(postmaster) if postmaster else 0.0
        waited_before = run_queue_wait()
        cpu_before = time.process_time()
        started = time.perf_counter()
        async with hub.unit_of_work() as uow:
            session = uow.session
            if bulk:
                await hub.queue_notifications(uow, tenant=TENANT, requests=requests)
            else:
                for request in requests:
                    await hub.queue_notification(uow, tenant=TENANT, request=request)
            if stamp_due:
                await session.execute(update(Notification).values(due_at=utcnow()))
        committed = time.perf_counter()
        cpu = {"bench": time.process_time() - cpu_before, "waited": run_queue_wait() - waited_before}
        if postmaster:
            cpu["postgresql"] = postgres_cpu(postmaster) - pg_before
        if profiler is not None:
            profiler.disable()
    return committed - started, committed, cpu


@dataclass
class Fill:
    """One fill of N into an empty outbox: how long, what CPU, and whether every row is there."""

    database: str
    way: str
    n: int
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    contacts: int = 0
    profile: str = ""
    before: int = 0
    """Rows already queued (the "again" fill goes to the people of the bulk fill before it)."""

    def cpu_ms(self, key: str) -> float:
        return 1000 * self.cpu[key] / self.n if key in self.cpu else float("nan")


async def fill_once(result: Fill, database_url: str, postmaster: int | None, top: int) -> Fill:
    """Fill N one way into a fresh database, metering this process and PostgreSQL, then count what landed."""
    document = bench_document(database_url, "http://127.0.0.1:9/unused", DEFAULT_BATCH, DEFAULT_CONCURRENCY)
    profiler = cProfile.Profile() if top else None
    result.seconds, _, result.cpu = await fill(document, result.n, bulk=result.way != "one by one", profiler=profiler,
                                               postmaster=postmaster, stamp_due=False)
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            result.rows = int(await session.scalar(
                sql_select(func.count()).select_from(Notification).where(Notification.status == "pending")) or 0) - result.before
            result.contacts = int(await session.scalar(sql_select(func.count(func.distinct(Notification.contact_id)))) or 0)
    finally:
        await db.close()
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumtime").print_stats(top)
        result.profile = out.getvalue()
    return result


AGAIN = "bulk again (known people)"


def fill_comparison(kinds: list[str], n: int, workdir: Path, cluster: PostgresCluster | None, top: int) -> list[Fill]:
    """One by one, then bulk, into fresh databases of each kind; then bulk again to the same (now known) people."""
    results = []
    for kind in kinds:
        postmaster = postmaster_pid(cluster) if kind == "PostgreSQL" else None
        for way in ("one by one", "bulk", AGAIN):
            print(f"fill {kind} {way} ...", flush=True)
            url = url if way == AGAIN else fresh_database(kind, workdir, cluster)
            results.append(run(fill_once(Fill(kind, way, n, before=n if way == AGAIN else 0), url, postmaster, top)))
    return results


def fill_report(fills: list[Fill], settings: str) -> str:
    rows = [["fill (one transaction)", "N", "seconds", "notifications/s", "x one by one", "waited for a core s",
             "bench CPU ms/notif", "PostgreSQL CPU ms/notif", "notes"]]
    baseline: dict[str, Fill] = {}
    for f in fills:
        base = baseline.setdefault(f.database, f)
        problems = []
        if f.rows != f.n:
            problems.append(f"{f.rows} pending rows, not {f.n}")
        if f.contacts != f.n:
            problems.append(f"{f.contacts} contacts, not {f.n}")
        rows.append([f"{f.database} {f.way}", str(f.n), f"{f.seconds:.2f}", f"{f.n / f.seconds:,.0f}",
                     f"{base.seconds / f.seconds:.1f}", f"{f.cpu.get('waited', 0.0):.2f}", f"{f.cpu_ms('bench'):.3f}",
                     f"{f.cpu_ms('postgresql'):.3f}" if f.database == "PostgreSQL" else "-", "; ".join(problems) or "ok"])
    lines = [table(rows), f"aim: {fills[0].n if fills else 5000} in one transaction < 1 s (issue 10); PostgreSQL settings: {settings}",
             "(seconds: the fill's wall clock, commit and after-commit effects included; waited for a core: of those, the time this",
             " process was runnable but every core was busy, from /proc schedstat; CPU over the same window)"]
    for f in fills:
        if f.profile:
            lines += ["", f"=== cProfile of the {f.database} {f.way} fill (top by cumulative time) ===", f.profile]
    return "\n".join(lines)


async def wait_sent(db: Database, n: int, committed: float, timeout: float) -> tuple[float, Counter[str], bool]:
    """Poll every 50 ms until no row is pending or sending; (seconds since the commit, statuses, timed out).

    The poll counts the unfinished rows through the (status, due_at) index, so it costs the database
    little; the statuses are counted once at the end.
    """
    unfinished = sql_select(func.count()).select_from(Notification).where(Notification.status.in_(("pending", "sending")))
    while True:
        async with db.sessions() as session:
            left = await session.scalar(unfinished)
        elapsed = time.perf_counter() - committed
        if not left or elapsed > timeout:
            break
        await asyncio.sleep(POLL_SECONDS)
    async with db.sessions() as session:
        rows = await session.execute(sql_select(Notification.status, func.count()).group_by(Notification.status))
        counts = Counter({status: count for status, count in rows})
    return elapsed, counts, bool(left) or sum(counts[s] for s in FINAL_STATUSES) < n


async def lateness(db: Database) -> list[float]:
    async with db.sessions() as session:
        rows = await session.execute(
            sql_select(Notification.due_at, Notification.sent_at).where(Notification.status == "sent")
        )
        return [(sent - due).total_seconds() for due, sent in rows]


async def pipeline(result: Result, database_url: str, sink: Sink, workdir: Path, timeout: float,
                   postmaster: int | None, spy: PySpy) -> Result:
    document = bench_document(database_url, sink.url, result.batch, result.concurrency)
    config = write_toml(workdir / "bench-config.toml", document)
    # Create the config's tenant before the workers start: several workers opening a fresh database at
    # once race on it (hub/tenants.py upsert_tenant is select-then-insert; see docs/performance.md).
    async with Hub.build(parse_config(document, "bench-config.toml", {})).running(migrate=False):
        pass
    workers, logs = start_workers(config, result.workers, workdir)
    db = Database(database_url)
    assert sink.process is not None
    meter = CpuMeter([w.pid for w in workers], sink.process.pid, postmaster)
    try:
        await wait_ready(workers, logs)
        await asyncio.sleep(1.0)  # idle: every worker has looked at the empty outbox and gone to sleep
        check_alive(workers, logs)
        await sink_call(sink, "POST", "reset")
        result.fill_seconds, committed, _ = await asyncio.wait_for(fill(document, result.n), timeout=max(120.0, result.n * 0.05))
        meter.start()
        spy.start([w.pid for w in workers])  # attaches within milliseconds: samples cover the timed window only
        result.seconds, result.statuses, result.timed_out = await wait_sent(db, result.n, committed, timeout)
        result.cpu = meter.stop()
        check_alive(workers, logs)
        stacks = spy.stop()
        if stacks:
            result.profile = summarise_stacks(stacks, 25)
        result.done = result.statuses["sent"]
        late = await lateness(db)
        result.p50, result.p99 = percentile(late, 50), percentile(late, 99)
        stats = await sink_call(sink, "GET", "stats")
        result.sink_received, result.sink_distinct = stats["received"], stats["distinct"]
    finally:
        await db.close()
        spy.stop()
        for worker in workers:
            stop_process(worker)
    result.error_lines = worker_errors(logs)
    return result


async def migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.close()


async def create_pg_database(cluster: PostgresCluster, name: str) -> str:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = cluster.url(name)
    await migrate(url)
    return url


_databases = itertools.count()


def fresh_database(kind: str, workdir: Path, cluster: PostgresCluster | None) -> str:
    number = next(_databases)
    if kind == "SQLite":
        url = f"sqlite+aiosqlite:///{workdir / f'bench-{number}.db'}"
        run(migrate(url))
        return url
    assert cluster is not None
    return run(create_pg_database(cluster, f"bench_{number}"))


SETTINGS = {
    "test": "the test cluster (fsync off, synchronous_commit off, full_page_writes off)",
    "stock": "PostgreSQL defaults (fsync on, synchronous_commit on)",
}


@contextmanager
def postgres(needed: bool, settings: str = "test") -> Iterator[PostgresCluster | None]:
    if not needed:
        yield None
        return
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (set HUB_PG_BINDIR)")
    from bench.identity import StockCluster  # here: bench.identity imports this module's CPU helpers

    cluster = (StockCluster if settings == "stock" else PostgresCluster)(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def run_path(key: str, n: int, batch: int, concurrency: int, sink: Sink, workdir: Path,
             cluster: PostgresCluster | None, timeout: float, spy_dir: Path | None = None) -> Result:
    kind, workers = PATHS[key]
    url = fresh_database(kind, workdir, cluster)
    rundir = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=workdir))
    result = Result(kind, workers, n, batch, concurrency)
    postmaster = postmaster_pid(cluster) if kind == "PostgreSQL" else None
    return run(pipeline(result, url, sink, rundir, timeout, postmaster, PySpy(spy_dir, key)))


# --- profiling ----------------------------------------------------------------


async def profile_in_process(database_url: str, sink: Sink, n: int, batch: int, concurrency: int, top: int) -> str:
    """Fill N, then run Dispatcher.dispatch_due in this process under cProfile until the outbox is empty."""
    document = bench_document(database_url, sink.url, batch, concurrency)
    await fill(document, n)
    hub = Hub.build(parse_config(document, "bench-config.toml", {}))
    profiler = cProfile.Profile()
    async with hub.running(migrate=False):
        started = time.perf_counter()
        cpu_started = time.process_time()
        profiler.enable()
        done = 0
        while claimed := await hub.dispatcher.dispatch_due():
            done += claimed
        profiler.disable()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    out = io.StringIO()
    out.write(f"in-process dispatcher, {done} notifications in {wall:.2f} s = {done / wall:.0f}/s; "
              f"CPU {cpu:.2f} s = {cpu / done * 1000:.3f} ms per notification in this process\n")
    for key in ("tottime", "cumtime"):
        out.write(f"\n--- top {top} by {key} ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(top)
    return out.getvalue()


# --- output -------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.0f} ms"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        last = len(row) - 1
        lines.append("  ".join(
            cell.rjust(width) if index and 0 < j < last else cell.ljust(width)
            for j, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def notes(result: Result) -> str:
    problems = []
    if result.timed_out:
        problems.append("TIMED OUT")
    other = {s: c for s, c in result.statuses.items() if s != "sent"}
    if other:
        problems.append("not sent: " + ", ".join(f"{c} {s}" for s, c in sorted(other.items())))
    duplicates = result.sink_received - result.sink_distinct
    if duplicates:
        problems.append(f"{duplicates} duplicate POSTs")
    locked = [line for line in result.error_lines if LOCKED in line]
    if locked:
        problems.append(f"{len(locked)} claims hit 'database is locked' during the fill (expected, retried)")
    if len(result.error_lines) > len(locked):
        problems.append(f"{len(result.error_lines) - len(locked)} error lines in worker logs")
    return "; ".join(problems) or "ok"


def report(raw: Raw, results: list[Result]) -> str:
    header = ["path", "workers", "N", "fill s", "seconds", "notifications/s", "p50 lateness", "p99 lateness", "x raw sink", "notes"]
    rows = [header, ["raw aiohttp -> sink", "-", str(results[0].n if results else "-"), "-", "-", f"{raw.rate:,.0f}", "-", "-", "1.00",
                     f"{IN_FLIGHT} in flight, median of {len(raw.rates)}: " + ", ".join(f"{r:,.0f}" for r in raw.rates)]]
    for r in results:
        rows.append([r.path, str(r.workers), str(r.n), f"{r.fill_seconds:.1f}", f"{r.seconds:.2f}", f"{r.rate:,.0f}",
                     ms(r.p50), ms(r.p99), f"{r.rate / raw.rate:.2f}", notes(r)])
    lines = [table(rows), ""]
    if results:
        r0 = results[0]
        lines.append(f"settings: dispatch_batch_size={r0.batch}, dispatch_concurrency={r0.concurrency}, dispatch_poll_seconds="
                     f"{SQLITE_POLL} on SQLite, 1.0 on PostgreSQL (LISTEN/NOTIFY); seconds = fill commit -> all N `sent` (50 ms polls)")
    lines.append(f"aim: PostgreSQL x4 >= {AIM_FRACTION} x raw sink and >= {AIM_RATE:.0f}/s "
                 f"(here: >= {max(AIM_FRACTION * raw.rate, AIM_RATE):,.0f}/s)")
    pg4 = [r for r in results if r.path == "PostgreSQL" and r.workers == 4]
    if pg4:
        r = pg4[-1]
        met = r.rate >= AIM_FRACTION * raw.rate and r.rate >= AIM_RATE and not r.timed_out
        lines.append(f"PostgreSQL x4: {r.rate:,.0f}/s = {r.rate / raw.rate:.2f} x raw sink -> aim {'MET' if met else 'NOT MET'} "
                     f"({r.rate / DESIGN_RAW_RATE:.2f} x the {DESIGN_RAW_RATE:,.0f}/s raw baseline in DESIGN.md)")
    cores = os.cpu_count() or 1
    cpu_rows = [["CPU per message (ms)", "sender", "PostgreSQL", "sink", "total", f"ceiling on {cores} cores"]]
    total = raw.client_ms + raw.sink_ms
    cpu_rows.append(["raw aiohttp -> sink", f"{raw.client_ms:.3f}", "-", f"{raw.sink_ms:.3f}", f"{total:.3f}", f"{cores * 1000 / total:,.0f}/s"])
    for r in results:
        sender, pg, sink = r.cpu_ms("workers"), r.cpu_ms("postgresql"), r.cpu_ms("sink")
        total = sender + (pg if pg == pg else 0) + sink
        cpu_rows.append([f"{r.path} x{r.workers}", f"{sender:.3f}", f"{pg:.3f}" if r.path == "PostgreSQL" else "-", f"{sink:.3f}",
                         f"{total:.3f}", f"{cores * 1000 / total:,.0f}/s" if total else "-"])
    lines += ["", table(cpu_rows),
              "(sender = the client or the worker processes; CPU from /proc over the timed window; the ceiling is what the",
              " machine could do if those processes had every core to themselves and nothing else ran)"]
    load = os.getloadavg()
    lines.append(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work on the machine skews wall-clock figures)")
    for r in results:
        unexpected = [line for line in r.error_lines if LOCKED not in line]
        if unexpected:
            lines += ["", f"{r.path} x{r.workers} worker log errors (first 3 of {len(unexpected)}):"]
            lines += [f"  {line[:300]}" for line in unexpected[:3]]
    for r in results:
        if r.profile:
            lines += ["", f"=== where the {r.path} x{r.workers} workers' CPU went ===", r.profile]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Outbound dispatch benchmark (see the module docstring).")
    parser.add_argument("--n", type=int, default=5000, help=f"notifications per run (max {MAX_N}; default 5000)")
    parser.add_argument("--quick", action="store_true", help="N=500 unless --n is given: a smoke run of about a minute")
    parser.add_argument("--paths", default="sqlite,pg1,pg4", help="comma list of sqlite, pg1, pg4 (default: all)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"dispatch_batch_size (default {DEFAULT_BATCH})")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help=f"dispatch_concurrency (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds per pipeline run before giving up (default: N/50, at least 60)")
    parser.add_argument("--sweep", action="store_true", help="try a grid of batch size x concurrency on each path instead")
    parser.add_argument("--grid", default="", help="the --sweep grid as BATCHxCONCURRENCY,... (default: 10 pairs from 50x32 to 500x256)")
    parser.add_argument("--profile", choices=["sqlite", "postgresql"], help="run the dispatcher in-process under cProfile instead")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile to print")
    parser.add_argument("--fill", action="store_true", help="only compare the fills (one by one vs bulk) on the --paths' databases")
    parser.add_argument("--skip-fill", dest="skip_fill", action="store_true", help="leave out the fill comparison before the pipelines")
    parser.add_argument("--fill-profile", dest="fill_profile", type=int, default=0, metavar="TOP",
                        help="run each fill under cProfile and print its TOP functions by cumulative time")
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="test",
                        help="PostgreSQL cluster: test (fsync off, the default) or stock (PostgreSQL's defaults)")
    parser.add_argument("--py-spy", dest="py_spy", metavar="DIR", type=Path,
                        help="sample the worker processes with py-spy (pip install py-spy), keep the raw stacks in DIR "
                             "and print where the workers' CPU went")
    args = parser.parse_args()
    if args.quick and "--n" not in sys.argv:
        args.n = 500
    if not 1 <= args.n <= MAX_N:
        parser.error(f"--n must be between 1 and {MAX_N}")
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path {unknown[0]!r} (use {', '.join(PATHS)})")
    args.timeout = args.timeout or max(60.0, args.n / 50)
    try:
        args.grid = [tuple(int(x) for x in pair.split("x")) for pair in args.grid.split(",") if pair.strip()] or SWEEP_GRID
    except ValueError:
        parser.error("--grid is BATCHxCONCURRENCY,... e.g. 100x64,200x128")
    return args


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the workers, the sink and the cluster.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    print(f"bench/dispatch.py  {stamp}  N={args.n}  cores={os.cpu_count()}  python {sys.version.split()[0]}  "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp, Sink() as sink:
            workdir = Path(tmp)
            if args.profile:
                with postgres(args.profile == "postgresql", args.settings) as cluster:
                    url = fresh_database("PostgreSQL" if cluster else "SQLite", workdir, cluster)
                    print(run(profile_in_process(url, sink, args.n, args.batch, args.concurrency, args.top)))
                return
            with postgres(any(p.startswith("pg") for p in args.paths), args.settings) as cluster:
                kinds = list(dict.fromkeys(PATHS[key][0] for key in args.paths))
                if args.fill:
                    fills = fill_comparison(kinds, args.n, workdir, cluster, args.fill_profile)
                    print()
                    print(fill_report(fills, SETTINGS[args.settings]))
                    return
                if args.sweep:
                    rows = [["path", "workers", "batch", "concurrency", "N", "notifications/s", "p50 lateness", "p99 lateness",
                             "worker CPU ms/msg", "total CPU ms/msg", "notes"]]
                    for key in args.paths:
                        for batch, concurrency in args.grid:
                            r = run_path(key, args.n, batch, concurrency, sink, workdir, cluster, args.timeout)
                            print(f"  {key} batch={batch} concurrency={concurrency}: {r.rate:,.0f}/s  {notes(r)}", flush=True)
                            total = sum(r.cpu.values()) * 1000 / r.done if r.done else float("nan")
                            rows.append([r.path, str(r.workers), str(batch), str(concurrency), str(r.n), f"{r.rate:,.0f}",
                                         ms(r.p50), ms(r.p99), f"{r.cpu_ms('workers'):.3f}", f"{total:.3f}", notes(r)])
                            for line in r.error_lines[:2]:
                                print(f"    {line[:300]}", flush=True)
                    print()
                    print(table(rows))
                    return
                fills = [] if args.skip_fill else fill_comparison(kinds, args.n, workdir, cluster, args.fill_profile)
                print("raw sink baseline ...", flush=True)
                raw = run(raw_baseline(sink, args.n))
                results = []
                spy_dir = args.py_spy
                for key in args.paths:
                    kind, workers = PATHS[key]
                    print(f"{kind} x{workers} ...", flush=True)
                    results.append(run_path(key, args.n, args.batch, args.concurrency, sink, workdir, cluster, args.timeout, spy_dir))
                print()
                print(report(raw, results))
                if fills:
                    print()
                    print(fill_report(fills, SETTINGS[args.settings]))
    except KeyboardInterrupt:
        print("interrupted: workers, sink and database stopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
