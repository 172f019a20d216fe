"""Issue 8's acceptance test: a clinic onboarded from the CLI while `hub serve` runs, with no restart.

A real `hub serve` process runs on a deployment that already has one Twilio
tenant in config.toml. An operator creates a tenant and gives it its own
Twilio account with `hub tenants create` and `hub tenants configure`; Twilio's
signed webhooks for the new number are then accepted by the running server,
forged ones are not, and the new auth token is nowhere in clear: not in the
database files (the PostgreSQL data folder and its write-ahead log, after a
checkpoint), not in the server's logs, not in any command's output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select

from hub.database import Database
from hub.models import InboxEventRow, Tenant
from tests.conftest import CliResult, config_document, write_toml
from tests.pg import free_port
from tests.stand_ins.twilio import SIGNATURE_HEADER, sign

PUBLIC_URL = "https://hub.example.com"
INBOUND = "/webhooks/twilio_messaging/inbound"
CLINIC_ACCOUNT = "AC" + "0a" * 16
CLINIC_TOKEN = "clinic-token-aa71"
ACME_ACCOUNT = "AC" + "7e" * 16
ACME_TOKEN = "acme-auth-token-c0ffee-4b9d"
ACME_SMS = "+15005550006"
SECRET_KEY = base64.b64encode(bytes(range(32))).decode()


def post_inbound(base: str, token: str, sid: str) -> int:
    """Twilio posts an SMS to acme's number, signed with `token` over the public URL."""
    form = [("MessageSid", sid), ("SmsMessageSid", sid), ("AccountSid", ACME_ACCOUNT), ("From", "+34600123456"),
            ("To", ACME_SMS), ("Body", "Hola, ¿tenéis cita el martes?"), ("NumMedia", "0")]
    request = urllib.request.Request(
        base + INBOUND, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={SIGNATURE_HEADER: sign(PUBLIC_URL + INBOUND, form, token), "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_healthy(port: int, process: subprocess.Popen[str]) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if json.loads(response.read())["database"]["ok"]:
                    return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(process.stderr.read() if process.stderr else "hub serve exited") from None
        time.sleep(0.1)
    raise AssertionError("hub serve did not answer /health")


async def stored_events(url: str) -> list[tuple[str, str]]:
    """(dedupe key, tenant slug) of every accepted webhook."""
    db = Database(url)
    try:
        async with db.sessions() as session:
            rows = (await session.execute(select(InboxEventRow.dedupe_key, Tenant.slug).join(Tenant, Tenant.id == InboxEventRow.tenant_id))).all()
    finally:
        await db.close()
    return [(key, slug) for key, slug in rows]


async def postgres_files(dsn: str, datadir: Path) -> list[Path]:
    """The database's own data files and the cluster's write-ahead log, after a checkpoint wrote everything out."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
        oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    finally:
        await conn.close()
    return [p for folder in (datadir / "base" / str(oid), datadir / "pg_wal") for p in folder.rglob("*") if p.is_file()]


def test_a_tenant_configured_from_the_cli_while_serving_gets_its_webhooks(
    database_url: str, backend: str, tmp_path: Path, run_cli: Callable[..., CliResult], request: pytest.FixtureRequest
) -> None:
    env = {"CLINIC_TWILIO_TOKEN": CLINIC_TOKEN}
    if backend == "postgresql":
        env["HUB_SECRET_KEY"] = SECRET_KEY
    clinic = {"name": "Clinic", "timezone": "Europe/Madrid", "locale": "es", "plugins": {"twilio_messaging": {
        "account_sid": CLINIC_ACCOUNT, "auth_token": {"env": "CLINIC_TWILIO_TOKEN"}, "sms_from": "+15017122661"}}}
    document = config_document(database_url, hub={"plugin_dirs": [], "public_url": PUBLIC_URL}, tenants={"clinic": clinic})
    config = write_toml(tmp_path / "config.toml", document)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "HUB_CONFIG": str(config), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)],
        cwd=tmp_path, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    outputs: list[str] = []
    try:
        wait_healthy(port, process)
        assert post_inbound(base, ACME_TOKEN, "SM" + "00" * 16) == 404  # nobody owns that number yet
        for args in (
            ("tenants", "create", "acme", "--region", "US", "--timezone", "America/New_York"),
            ("tenants", "configure", "acme", "twilio_messaging", f"account_sid={ACME_ACCOUNT}", f"auth_token={ACME_TOKEN}",
             f"sms_from={ACME_SMS}", "sandbox=false"),
            ("tenants", "show", "acme"),
        ):
            result = run_cli(*args, config=config, env=env)
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout + result.stderr)
        deadline = time.monotonic() + 30
        attempt = 0
        while True:  # the running server learns of the change by NOTIFY (PostgreSQL) or its periodic check
            attempt += 1
            status = post_inbound(base, ACME_TOKEN, f"SM{attempt:032x}")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200, f"still {status} after 30 s"
        assert post_inbound(base, "forged-" + ACME_TOKEN, "SM" + "ff" * 16) == 403
        events = asyncio.run(stored_events(database_url))
        assert (f"SM{attempt:032x}", "acme") in events
        assert all(key != "SM" + "ff" * 16 for key, _ in events)  # the forgery stored nothing
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    outputs.append(out + err)
    assert process.returncode == 0, err
    assert all(ACME_TOKEN not in text for text in outputs)
    if backend == "sqlite":
        database = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        files = [p for p in database.parent.glob(database.name + "*")]
    else:
        cluster = request.getfixturevalue("pg_cluster")
        files = asyncio.run(postgres_files(database_url.replace("postgresql+asyncpg", "postgresql"), cluster.datadir))
        files.append(cluster.root / "log")
        dump = subprocess.run(
            [str(cluster.bindir / "pg_dump"), "--data-only", database_url.replace("postgresql+asyncpg", "postgresql")],
            capture_output=True, check=True,
        ).stdout
        assert ACME_ACCOUNT.encode() in dump and ACME_TOKEN.encode() not in dump
    on_disk = b"".join(p.read_bytes() for p in files)
    assert ACME_ACCOUNT.encode() in on_disk  # the search does see what was stored in clear
    assert ACME_TOKEN.encode() not in on_disk
