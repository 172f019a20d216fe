"""Tenants: created from config on start and by `hub tenants create`, keys shown once and stored hashed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from hub.core import Hub
from hub.models import ApiKey
from hub.tenants import hash_api_key, tenant_for_api_key
from tests.conftest import CliResult, config_document, make_config, write_toml


def test_create_tenant_prints_key_once(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    result = run_cli("tenants", "create", "barber", "--region", "CO", "--timezone", "America/Bogota", "--locale", "es", config=config)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("hub_") and len(key) > 40
    assert "created tenant barber (CO, America/Bogota, es)" in result.stderr
    listed = run_cli("tenants", "list", config=config).stdout
    assert "barber\tbarber\tCO\tAmerica/Bogota\tes" in listed
    again = run_cli("tenants", "create", "barber", config=config)
    assert again.returncode == 1 and "tenant 'barber' already exists" in again.stderr
    bad = run_cli("tenants", "create", "x", "--timezone", "Nowhere/City", config=config)
    assert bad.returncode == 2 and "unknown timezone 'Nowhere/City'" in bad.stderr
    db = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///")).read_bytes()
    assert key.encode() not in db and hash_api_key(key).encode() in db


async def test_keys_resolve_to_their_tenant_only(database_url: str) -> None:
    hub = Hub.build(make_config(database_url))
    async with hub.running():
        from hub.tenants import issue_api_key, revoke_api_keys

        clinic = await hub.tenants.get("clinic")
        async with hub.db.sessions.begin() as session:
            key = await issue_api_key(session, clinic.id)
        async with hub.db.sessions() as session:
            found = await tenant_for_api_key(session, key)
            assert found is not None and found.slug == "clinic"
            assert await tenant_for_api_key(session, key + "x") is None
            stored = (await session.scalars(select(ApiKey.key_hash))).all()
        assert stored == [hash_api_key(key)]
        async with hub.db.sessions.begin() as session:
            assert await revoke_api_keys(session, clinic.id) == 1
        async with hub.db.sessions() as session:
            assert await tenant_for_api_key(session, key) is None


async def test_config_tenants_are_created_and_updated_on_start(database_url: str) -> None:
    first = Hub.build(make_config(database_url))
    async with first.running():
        assert [t.slug for t in await first.tenants.all()] == ["clinic", "salon"]
    changed = {"clinic": {"name": "Clínica Sol", "default_region": "ES", "timezone": "Atlantic/Canary", "locale": "es"}}
    second = Hub.build(make_config(database_url, tenants=changed))
    async with second.running():
        clinic = await second.tenants.get("clinic")
        assert (clinic.name, clinic.timezone) == ("Clínica Sol", "Atlantic/Canary")
        assert len(await second.tenants.all()) == 2  # removing a tenant from config never deletes its data


async def test_plugin_data_is_kept_per_tenant(hub: Hub) -> None:
    assert await hub.get_plugin_data("recorder", "clinic", "subscription") is None
    await hub.set_plugin_data("recorder", "clinic", "subscription", {"uri": "a", "signing_key": "k1"})
    await hub.set_plugin_data("recorder", "clinic", "subscription", {"uri": "b"})
    assert await hub.get_plugin_data("recorder", "clinic", "subscription") == {"uri": "b"}
    assert await hub.get_plugin_data("recorder", "salon", "subscription") is None
