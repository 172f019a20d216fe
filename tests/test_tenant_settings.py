"""Tenants' plugin settings in the database: precedence over config.toml, reload, encryption at rest, rotation.

Settings are written through the store the CLI and the admin API use and read
back through `Hub.settings_for`, the one way plugins see them; two hubs on one
database stand in for two processes.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from hub.core import Hub
from hub.errors import StartupError
from hub.models import TenantPluginSettings
from hub.secret_keys import key_file_for, key_id
from hub.tenant_settings import MASK, SettingsProblem, UnknownPlugin
from tests.conftest import make_config, wait_for

TWILIO = "twilio_messaging"
ACCOUNT = "AC" + "ab" * 16
OTHER_ACCOUNT = "AC" + "cd" * 16
TOKEN = "clinic-token-5ee1d2-secret"
KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"B" * 32).decode()
CONFIG_TWILIO = {"account_sid": ACCOUNT, "auth_token": {"env": "CONFIG_TOKEN"}, "help_text": "from config", "sms_from": "+15017122661"}


def environ(backend: str, **extra: str) -> dict[str, str]:
    """SQLite uses its key file; PostgreSQL needs HUB_SECRET_KEY."""
    base = {"CONFIG_TOKEN": "config-token"}
    if backend == "postgresql":
        base["HUB_SECRET_KEY"] = KEY_A
    return {**base, **extra}


def build(database_url: str, env: dict[str, str], **kwargs: Any) -> Hub:
    hub = Hub.build(make_config(database_url, env, **kwargs))
    hub.tenant_settings.poll_seconds = 0.05
    return hub


@pytest.fixture
async def hub(database_url: str, backend: str) -> AsyncIterator[Hub]:
    """Tenants clinic (in config.toml, with its own Twilio table) and salon (no Twilio in config)."""
    tenants = {
        "clinic": {"name": "Clinic", "timezone": "Europe/Madrid", "locale": "es", "plugins": {TWILIO: CONFIG_TWILIO}},
        "salon": {"name": "Salon", "default_region": "MX", "timezone": "America/Mexico_City"},
    }
    instance = build(database_url, environ(backend), tenants=tenants)
    async with instance.running():
        yield instance


async def raw_rows(hub: Hub) -> list[str]:
    """Every stored settings row as the database returns it, as text."""
    async with hub.db.sessions() as session:
        rows = (await session.execute(text("SELECT * FROM tenant_plugin_settings"))).all()
    return [repr(tuple(row)) for row in rows]


async def test_database_settings_win_over_config_key_by_key(hub: Hub) -> None:
    before = hub.settings_for(TWILIO, "clinic")
    assert (before.help_text, before.auth_token.get_secret_value()) == ("from config", "config-token")
    await hub.tenant_settings.configure("clinic", TWILIO, {"help_text": "from the database", "auth_token": TOKEN})
    after = hub.settings_for(TWILIO, "clinic")
    assert (after.help_text, after.auth_token.get_secret_value()) == ("from the database", TOKEN)
    assert after.sms_from == "+15017122661" and after.account_sid == ACCOUNT  # untouched keys still come from config.toml
    view = {s.key: s for s in (await hub.tenant_settings.view("clinic", TWILIO)).settings}
    assert (view["help_text"].source, view["sms_from"].source, view["timeout_seconds"].source) == (
        "database", "test-config.toml [tenants.clinic.plugins.twilio_messaging]", "default")
    assert view["auth_token"].value == MASK
    await hub.tenant_settings.configure("clinic", TWILIO, {}, unset=["help_text", "auth_token"])
    assert hub.settings_for(TWILIO, "clinic").help_text == "from config"
    assert await raw_rows(hub) == []  # nothing of the tenant's own is left


async def test_a_database_tenant_gets_settings_config_never_gave_it(hub: Hub) -> None:
    assert hub.settings_for(TWILIO, "salon") is None
    assert hub.configured_tenants(TWILIO) == ["clinic"]
    await hub.tenant_settings.configure("salon", TWILIO, {"account_sid": OTHER_ACCOUNT, "auth_token": TOKEN, "sandbox": False})
    salon = hub.settings_for(TWILIO, "salon")
    assert (salon.account_sid, salon.sandbox) == (OTHER_ACCOUNT, False)
    assert hub.settings_for(TWILIO, "salon") is salon  # resolved once, then served from the cache
    assert hub.configured_tenants(TWILIO) == ["clinic", "salon"]


BAD = [
    ({"colour": "red"}, "colour", "unknown key"),
    ({"account_sid": "nope"}, "account_sid", "must be an Account SID"),
    ({"timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
    ({"content_templates": {"es": {"reminder": {"content_sid": "HX1"}}}}, "content_templates", "Content SID"),
    ({"auth_token": TOKEN}, "account_sid", "required key is missing"),
]


@pytest.mark.parametrize(("changes", "key", "reason"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
async def test_bad_settings_name_plugin_and_key_and_store_nothing(hub: Hub, changes: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(SettingsProblem) as refused:
        await hub.tenant_settings.configure("salon", TWILIO, changes)
    assert (refused.value.plugin, refused.value.key) == (TWILIO, key) and reason in refused.value.problem
    assert str(refused.value).startswith(f"{TWILIO}.{key}: ")
    assert await raw_rows(hub) == [] and hub.settings_for(TWILIO, "salon") is None


async def test_unknown_plugin_and_tenant_are_refused(hub: Hub) -> None:
    with pytest.raises(UnknownPlugin, match="no plugin 'nope' is loaded"):
        await hub.tenant_settings.configure("salon", "nope", {"a": 1})
    with pytest.raises(Exception, match="no tenant 'ghost'"):
        await hub.tenant_settings.configure("ghost", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_another_process_picks_a_change_up_without_restart(database_url: str, backend: str) -> None:
    writer = build(database_url, environ(backend))
    reader = build(database_url, environ(backend))
    if backend == "postgresql":
        reader.tenant_settings.poll_seconds = 3600  # so only NOTIFY can bring the change in
    async with writer.running(), reader.running():
        assert reader.settings_for(TWILIO, "salon") is None
        await writer.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})
        settings = await wait_for(lambda: reader.settings_for(TWILIO, "salon"))
        assert settings.auth_token.get_secret_value() == TOKEN
        await writer.tenant_settings.configure("salon", TWILIO, {"help_text": "new"})
        assert (await wait_for(lambda: reader.settings_for(TWILIO, "salon").help_text)) == "new"


async def test_secrets_are_encrypted_at_rest_and_never_shown(hub: Hub, database_url: str, backend: str) -> None:
    view = await hub.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN, "webhook_signing_key": "k-" + TOKEN})
    rows = await raw_rows(hub)
    assert len(rows) == 1 and TOKEN not in rows[0] and ACCOUNT in rows[0]
    async with hub.db.sessions() as session:
        row = (await session.scalars(select(TenantPluginSettings))).one()
    assert set(row.secrets) == {"auth_token", "webhook_signing_key"} and "auth_token" not in row.values
    assert all(token.startswith("aesgcm1:") for token in row.secrets.values())
    assert TOKEN not in repr(view.as_json()) and view.as_json()["settings"]["auth_token"]["value"] == MASK
    if backend == "sqlite":
        database = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        files = list(database.parent.glob(database.name + "*"))
        assert all(TOKEN.encode() not in f.read_bytes() for f in files), files
        key_file = key_file_for(database_url)
        assert key_file is not None and stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_a_token_moved_to_another_row_does_not_decrypt(hub: Hub) -> None:
    await hub.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})
    await hub.tenant_settings.configure("clinic", TWILIO, {"auth_token": "clinic-own"})
    async with hub.db.sessions.begin() as session:
        rows = {r.tenant_id: r for r in (await session.scalars(select(TenantPluginSettings))).all()}
        salon_id = (await hub.tenants.get("salon")).id
        clinic_id = (await hub.tenants.get("clinic")).id
        rows[clinic_id].secrets = dict(rows[salon_id].secrets)
        rows[clinic_id].revision += 1
    with pytest.raises(StartupError, match="does not decrypt"):
        await hub.tenant_settings.reload()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_without_a_key_fails_clearly_only_when_a_secret_is_involved(database_url: str, backend: str) -> None:
    keyless = build(database_url, {"CONFIG_TOKEN": "x"})
    async with keyless.running():
        await keyless.tenant_settings.configure("salon", "recorder", {"greeting": "hola"})  # plain keys need no key
        with pytest.raises(StartupError, match="HUB_SECRET_KEY is not set: the secret setting .* must be encrypted"):
            await keyless.tenant_settings.configure("salon", "recorder", {"token": TOKEN})
        recorder = keyless.settings_for("recorder", "salon")
        assert (recorder.greeting, recorder.token) == ("hola", None)  # the refused change stored nothing
    keyed = build(database_url, {"CONFIG_TOKEN": "x", "HUB_SECRET_KEY": KEY_A})
    async with keyed.running():
        await keyed.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})
    with pytest.raises(StartupError, match="HUB_SECRET_KEY is not set: the secret setting .* is encrypted"):
        await build(database_url, {"CONFIG_TOKEN": "x"}).open()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_rotation_under_hub_secret_key(database_url: str, backend: str) -> None:
    async with build(database_url, {"HUB_SECRET_KEY": KEY_A}).running() as first:
        await first.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})
    async with build(database_url, {"HUB_SECRET_KEY": KEY_B, "HUB_SECRET_KEY_OLD": KEY_A}).running() as both:
        report = await both.tenant_settings.rotate_key()
        assert (report.rows, report.secrets, report.key_id) == (1, 1, key_id(b"B" * 32))
    async with build(database_url, {"HUB_SECRET_KEY": KEY_B}).running() as after:
        assert after.settings_for(TWILIO, "salon").auth_token.get_secret_value() == TOKEN
    with pytest.raises(StartupError, match=f"encrypted with key {key_id(b'B' * 32)}, which is not among the known keys"):
        await build(database_url, {"HUB_SECRET_KEY": KEY_A}).open()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_rotation_of_the_key_file(database_url: str, backend: str) -> None:
    key_file = key_file_for(database_url)
    assert key_file is not None and not key_file.exists()
    async with build(database_url, {}).running() as hub:
        await hub.tenant_settings.configure("salon", TWILIO, {"account_sid": ACCOUNT, "auth_token": TOKEN})
        old = key_file.read_text()
        report = await hub.tenant_settings.rotate_key()
        assert report.secrets == 1 and key_file.read_text() != old and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert not key_file.with_name(key_file.name + ".new").exists()
        assert hub.settings_for(TWILIO, "salon").auth_token.get_secret_value() == TOKEN
    async with build(database_url, {}).running() as again:  # a new process reads the new key file
        assert again.settings_for(TWILIO, "salon").auth_token.get_secret_value() == TOKEN
    os.unlink(key_file)
    with pytest.raises(StartupError, match=r"is encrypted, but the key file .*\.key is missing"):
        await build(database_url, {}).open()
