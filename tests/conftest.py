"""Shared fixtures: databases on SQLite and PostgreSQL, configs, hubs, the CLI."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hub.config import Config, parse_config
from hub.core import Hub
from hub.database import Database
from tests.pg import PostgresCluster, find_bindir
from tests.smtp_server import start_server  # noqa: F401 - a fixture for every module that sends email

ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found (set HUB_PG_BINDIR); PostgreSQL tests must run")
    cluster = PostgresCluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


_db_counter = itertools.count()


async def _create_pg_database(cluster: PostgresCluster, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        suffix = f" TEMPLATE {template}" if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


def _migrate(url: str) -> None:
    async def upgrade() -> None:
        db = Database(url)
        try:
            await db.upgrade()
        finally:
            await db.close()

    asyncio.run(upgrade())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file to copy from."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A migrated PostgreSQL database to create test databases from."""
    asyncio.run(_create_pg_database(pg_cluster, "hub_template"))
    _migrate(pg_cluster.url("hub_template"))
    return "hub_template"


def _fresh_sqlite(tmp_path: Path, template: str | None) -> str:
    path = tmp_path / f"hub-{next(_db_counter)}.db"
    if template:
        shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def _fresh_pg(cluster: PostgresCluster, template: str | None) -> str:
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    asyncio.run(_create_pg_database(cluster, name, template))
    return cluster.url(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, unmigrated database on each backend."""
    if backend == "sqlite":
        return _fresh_sqlite(tmp_path, None)
    return _fresh_pg(request.getfixturevalue("pg_cluster"), None)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, migrated database on each backend."""
    if backend == "sqlite":
        return _fresh_sqlite(tmp_path, request.getfixturevalue("sqlite_template"))
    return _fresh_pg(request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"))


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: str) -> str:
    """A new, migrated SQLite database (for tests about the CLI rather than storage)."""
    return _fresh_sqlite(tmp_path, sqlite_template)


DEFAULT_TENANTS: dict[str, dict[str, Any]] = {
    "clinic": {"name": "Clinic", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es"},
    "salon": {"name": "Salon", "default_region": "MX", "timezone": "America/Mexico_City", "locale": "es"},
}


def config_document(
    database_url: str,
    *,
    record_file: Path | None = None,
    hub: dict[str, Any] | None = None,
    tenants: dict[str, dict[str, Any]] | None = None,
    plugins: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A config as parsed TOML: the test plugins folder loaded, the recorder writing to `record_file`."""
    plugin_tables: dict[str, dict[str, Any]] = {}
    if record_file is not None:
        plugin_tables["recorder"] = {"record_file": str(record_file)}
    plugin_tables.update(plugins or {})
    return {
        "hub": {"database_url": database_url, "plugin_dirs": [str(TEST_PLUGINS)], "inbox_poll_seconds": 0.05, **(hub or {})},
        "tenants": DEFAULT_TENANTS if tenants is None else tenants,
        "plugins": plugin_tables,
    }


def make_config(database_url: str, environ: dict[str, str] | None = None, **kwargs: Any) -> Config:
    return parse_config(config_document(database_url, **kwargs), "test-config.toml", environ or {})


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    return tmp_path / "records.jsonl"


@pytest.fixture
async def hub(database_url: str, record_file: Path) -> AsyncIterator[Hub]:
    """An opened hub on each backend with the test plugins loaded."""
    instance = Hub.build(make_config(database_url, record_file=record_file))
    async with instance.running():
        yield instance


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_toml(path: Path, document: dict[str, Any]) -> Path:
    """Write a nested dict of tables as TOML (enough for configs)."""
    lines: list[str] = []

    def table(prefix: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not (isinstance(v, dict) and not (set(v) == {"env"}))}
        tables = {k: v for k, v in body.items() if k not in scalars}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for key, sub in tables.items():
            table(f"{prefix}.{key}" if prefix else key, sub)

    table("", document)
    path.write_text("\n".join(lines) + "\n")
    return path


CliResult = subprocess.CompletedProcess[str]


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run `python -m hub ...` in a subprocess, as an operator would."""

    def run(*args: str, config: Path | None = None, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        environ.update(env or {})
        if config is not None:
            environ["HUB_CONFIG"] = str(config)
        return subprocess.run(
            [sys.executable, "-m", "hub", *args],
            input=input,
            capture_output=True,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run


def read_records(path: Path) -> list[dict[str, Any]]:
    """What the recorder test plugin wrote, one dict per hook call."""
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[Any]:
    """An aiohttp test client for the hub's app, workers running, on each backend."""
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app

    async with TestClient(TestServer(create_app(hub, manage_hub=False))) as test_client:
        yield test_client


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll an async or sync predicate until it returns something truthy (the workers are asynchronous)."""
    import inspect

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
