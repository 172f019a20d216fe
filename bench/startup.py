"""Start-up benchmark: how soon `hub` commands answer and `hub serve` is healthy, and what it holds in memory.

    .venv/bin/python bench/startup.py [--runs 7] [--requests 100] [--only cli|serve] [--compare PATH]

Everything in one run, each figure the median of `--runs` runs with its
spread (min-max), beside its baselines from the same run:

1. baselines: `python -c pass` (the interpreter), `python -c "import
   aiohttp.web, sqlalchemy.ext.asyncio"` (the floor of what serving needs),
   and a bare aiohttp app whose `/health` runs `SELECT 1` through an async
   SQLAlchemy engine on SQLite (the floor of "start to healthy");
2. CLI commands through the installed `hub` script, in a temp folder holding
   the shipped config.toml: `hub --help`, `hub phones normalize` (a command
   that needs neither the hub nor the database), `hub plugins`, `hub tenants
   list` (opens the hub and the database);
3. `hub serve` the README's way (`make run`: `hub serve --host 127.0.0.1
   --port P --demo-user demo@demo-clinic.example`) on the shipped
   config.toml (SQLite, sandbox on), from process start until `/health`
   answers 200, polled every 5 ms: first in an empty folder (creates and
   migrates hub.db, makes the demo user) and again in the same folder
   (restart). Then the serving process's RSS after one idle second, and
   again after `--requests` requests (`/health`, `/api/v1/openapi.json`,
   the console's `/signin`, in turn; each must answer 200).

Bytecode is cached as in a deployment (PYTHONDONTWRITEBYTECODE is dropped),
in this run's temp folder (PYTHONPYCACHEPREFIX), filled by one warm-up run
of every case that is not counted.

`--compare PATH` runs every hub case a second time, interleaved, with
another checkout of the project first on PYTHONPATH (`git archive <commit>
| tar -x -C PATH`): two versions measured under the same load.

For each process: wall time, CPU (user + system, from wait4 for commands,
/proc/<pid>/stat for servers, up to healthy) and peak or current RSS.
Correctness is checked too: every command exits 0 with the output it
should have, every request answers 200.

Every process this script starts is stopped on exit, on errors and on
Ctrl-C, by its own process id; temp folders are removed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import stop_process  # noqa: E402

PYTHON = sys.executable
HUB = str(Path(sys.executable).with_name("hub"))
DEMO_USER = "demo@demo-clinic.example"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
HEALTH_TIMEOUT = 60.0

BARE_SERVER = """
import sys
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def health(request):
    async with request.app["engine"].connect() as conn:
        await conn.execute(text("SELECT 1"))
    return web.json_response({"ok": True})

async def engine(app):
    app["engine"] = create_async_engine("sqlite+aiosqlite:///bare.db")
    yield
    await app["engine"].dispose()

app = web.Application()
app.cleanup_ctx.append(engine)
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@dataclass
class Sample:
    """One process's figures."""

    wall: float
    cpu: float
    rss_kb: int
    after_kb: int = 0
    """RSS after the request load (servers only)."""


@dataclass
class Figures:
    """Every run of one case."""

    name: str
    samples: list[Sample] = field(default_factory=list)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    argv: Sequence[str], cwd: Path, stdin: str = "", check: Callable[[str], bool] = lambda _: True, pythonpath: str | None = None
) -> Sample:
    """Run a command to its end: wall time, CPU and peak RSS of that process alone (from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=_environ(pythonpath))
        try:
            assert process.stdin is not None
            process.stdin.write(stdin.encode())
            process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            stop_process(process)
            raise
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read().decode(), err.read().decode()
    if process.returncode != 0 or not check(output):
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}):\n{output[-2000:]}\n{errors[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


PYCACHE: list[str] = []
"""The bytecode cache folder of this run (set once the temp folder exists)."""


def _environ(pythonpath: str | None = None) -> dict[str, str]:
    # The shipped config, as an operator runs it: no HUB_* overrides from the caller's shell. Bytecode
    # is cached as in a deployment, but in this run's temp folder (no __pycache__ left in the project).
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "PYTHONDONTWRITEBYTECODE"}
    if PYCACHE:
        environ["PYTHONPYCACHEPREFIX"] = PYCACHE[0]
    if pythonpath:
        # Another checkout of the project first on the path: its `hub` and `plugins` win over the installed ones.
        environ["PYTHONPATH"] = pythonpath
    return environ


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_kb(pid: int) -> int:
    """Resident set size of a live process, KB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE // 1024


def get(port: int, path: str) -> int:
    """GET a path on 127.0.0.1: the status (the body is read and dropped)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_server(argv: Sequence[str], cwd: Path, port: int, requests: int, pythonpath: str | None = None) -> Sample:
    """Start a server, time it to a 200 from /health, then read its RSS idle and after `requests` requests."""
    log = (cwd / "server.log").open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_environ(pythonpath))
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{' '.join(argv)} exited {process.returncode}:\n{(cwd / 'server.log').read_text()[-3000:]}")
            try:
                if get(port, "/health") == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - started > HEALTH_TIMEOUT:
                raise SystemExit(f"{' '.join(argv)}: not healthy after {HEALTH_TIMEOUT:.0f} s")
            time.sleep(0.005)
        wall = time.perf_counter() - started
        cpu = proc_cpu(process.pid)
        time.sleep(1.0)
        idle = proc_rss_kb(process.pid)
        paths = ("/health", "/api/v1/openapi.json", "/signin") if requests else ()
        for i in range(requests):
            path = paths[i % len(paths)]
            if (status := get(port, path)) != 200:
                raise SystemExit(f"GET {path} answered {status}")
        after = proc_rss_kb(process.pid)
        return Sample(wall, cpu, idle, after)
    finally:
        stop_process(process)
        log.close()


def copy_config(folder: Path) -> None:
    """The shipped config.toml, unchanged, in a folder of its own."""
    shutil.copy(ROOT / "config.toml", folder / "config.toml")


def hub_cases(tag: str, pythonpath: str | None) -> list[tuple[str, Callable[[Path], Sample]]]:
    """The command cases for one version of the project (this checkout, or `--compare`'s)."""
    return [
        (f"hub --help{tag}", lambda d: run_cli(
            [HUB, "--help"], d, check=lambda out: "serve" in out and "calendly" in out, pythonpath=pythonpath)),
        (f"hub phones normalize{tag}", lambda d: run_cli(
            [HUB, "phones", "normalize", "--region", "ES"], d, stdin="600 12 34 56\n", check=lambda out: "+34600123456" in out,
            pythonpath=pythonpath)),
        (f"hub plugins{tag}", lambda d: run_cli(
            [HUB, "plugins"], d, check=lambda out: "smtp_email" in out and "sandbox" in out, pythonpath=pythonpath)),
        (f"hub tenants list{tag}", lambda d: run_cli([HUB, "tenants", "list"], d, check=lambda out: "demo" in out, pythonpath=pythonpath)),
    ]


def measure(runs: int, requests: int, only: str | None, compare: str | None = None) -> list[Figures]:
    """Every case, `runs` times each, interleaved so that load from elsewhere hits them alike."""
    versions: list[tuple[str, str | None]] = [("", None)] + ([(" [compare]", compare)] if compare else [])
    cases: list[tuple[str, Callable[[Path], Sample]]] = [
        ("python -c pass", lambda d: run_cli([PYTHON, "-c", "pass"], d)),
        ("python -c 'import aiohttp.web, sqlalchemy.ext.asyncio'",
         lambda d: run_cli([PYTHON, "-c", "import aiohttp.web, sqlalchemy.ext.asyncio"], d)),
    ]
    if only in (None, "cli"):
        for tag, pythonpath in versions:
            cases += hub_cases(tag, pythonpath)
    figures = {name: Figures(name) for name, _ in cases}
    floor = "bare aiohttp + SQLAlchemy /health (floor)"
    servers = [(f"hub serve, first start (empty folder){tag}", f"hub serve, restart{tag}", pythonpath) for tag, pythonpath in versions]
    if only in (None, "serve"):
        figures[floor] = Figures(floor)
        for first, again, _ in servers:
            figures[first], figures[again] = Figures(first), Figures(again)
    with tempfile.TemporaryDirectory(prefix="hub-startup-") as tmp:
        base = Path(tmp)
        PYCACHE[:] = [str(base / "pycache")]
        cli_dir = base / "cli"
        cli_dir.mkdir()
        copy_config(cli_dir)
        if only in (None, "cli"):
            run_cli([HUB, "db", "upgrade"], cli_dir)  # so that `tenants list` times the command, not a migration
        for name, case in cases:
            case(cli_dir)  # a warm-up, not counted: it fills the bytecode cache
        if only in (None, "serve"):
            warm = base / "warm-up"
            warm.mkdir()
            for index, (_, _, pythonpath) in enumerate(servers):
                port = free_port()
                (warm / str(index)).mkdir()
                copy_config(warm / str(index))
                start_server([HUB, "serve", "--host", "127.0.0.1", "--port", str(port)], warm / str(index), port, 3, pythonpath)
        for run in range(runs):
            for name, case in cases:
                figures[name].samples.append(case(cli_dir))
            if only in (None, "serve"):
                bare = base / f"bare-{run}"
                bare.mkdir()
                port = free_port()
                figures[floor].samples.append(start_server([PYTHON, "-c", BARE_SERVER, str(port)], bare, port, requests=0))
                for index, (first, again, pythonpath) in enumerate(servers):
                    folder = base / f"serve-{run}-{index}"
                    folder.mkdir()
                    copy_config(folder)
                    for name in (first, again):
                        port = free_port()
                        argv = [HUB, "serve", "--host", "127.0.0.1", "--port", str(port), "--demo-user", DEMO_USER]
                        figures[name].samples.append(start_server(argv, folder, port, requests, pythonpath))
            print(f"  run {run + 1}/{runs} done", file=sys.stderr)
    return list(figures.values())


def spread(values: list[float], scale: float, digits: int = 0) -> str:
    """Median with min-max, scaled."""
    fmt = f"{{:.{digits}f}}"
    median = statistics.median(values) * scale
    return f"{fmt.format(median)} ({fmt.format(min(values) * scale)}-{fmt.format(max(values) * scale)})"


def report(figures: list[Figures], requests: int) -> None:
    """One line per case: wall and CPU in ms, RSS in MB, and the ratio to its baseline."""
    by_name = {f.name: f for f in figures}
    interpreter = statistics.median(s.wall for s in by_name["python -c pass"].samples)
    floor_name = "bare aiohttp + SQLAlchemy /health (floor)"
    floor = statistics.median(s.wall for s in by_name[floor_name].samples) if floor_name in by_name else None
    print(f"\n{'case':58} {'wall ms, median (min-max)':>26} {'CPU ms':>18} {'RSS MB':>16}  ratio")
    for fig in figures:
        walls = [s.wall for s in fig.samples]
        cpus = [s.cpu for s in fig.samples]
        rss = [s.rss_kb for s in fig.samples]
        server = fig.name.startswith(("hub serve", "bare"))
        base = floor if server and floor else interpreter
        ratio = statistics.median(walls) / base if base else float("nan")
        rss_note = spread([float(r) for r in rss], 1 / 1024)
        print(f"{fig.name:58} {spread(walls, 1000):>26} {spread(cpus, 1000):>18} {rss_note:>16}  {ratio:.1f}x")
        if server and any(s.after_kb for s in fig.samples):
            after = [float(s.after_kb) for s in fig.samples]
            print(f"{'    RSS after ' + str(requests) + ' requests':58} {'':>26} {'':>18} {spread(after, 1 / 1024):>16}")
    print("\nratio: commands against `python -c pass`, servers against the bare aiohttp floor;"
          " RSS: peak for commands, idle 1 s after healthy for servers")


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (the median is printed)")
    parser.add_argument("--requests", type=int, default=100, help="requests to each hub serve before the second RSS reading")
    parser.add_argument("--only", choices=("cli", "serve"), help="only the commands, or only the servers")
    parser.add_argument("--compare", metavar="PATH", help="also run every hub case with another checkout of the project first on "
                        "PYTHONPATH (e.g. `git archive <commit> | tar -x -C PATH`), interleaved, marked [compare]")
    args = parser.parse_args()
    if not Path(HUB).exists():
        raise SystemExit(f"no hub script beside {PYTHON}: run this with the project's .venv/bin/python")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, runs {args.runs}",
          file=sys.stderr)
    report(measure(max(1, args.runs), max(0, args.requests), args.only, args.compare), args.requests)


if __name__ == "__main__":
    main()
