"""One tenant policy model: declared and validated in `TenantPolicy`, read the same from config and database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from hub.config import TenantSettings, parse_config
from hub.core import Hub
from hub.errors import ConfigError
from hub.models import Tenant
from hub.tenant_policy import TenantPolicy
from hub.tenants import TenantDirectory, TenantInfo
from tests.conftest import make_config


@pytest.mark.parametrize("model", [TenantSettings, TenantInfo])
def test_policy_keys_are_declared_once(model: type[TenantPolicy]) -> None:
    assert issubclass(model, TenantPolicy)
    own = set(model.__annotations__)
    assert TenantPolicy.keys().isdisjoint(own), f"{model.__name__} declares policy keys again: {own & TenantPolicy.keys()}"
    assert TenantPolicy.keys() <= set(model.model_fields)


BAD_POLICY = [
    ({"reminders": ["2x"]}, "tenants.clinic.reminders", "unknown unit 'x'"),
    ({"reminders": ["-1h"]}, "tenants.clinic.reminders", "is negative"),
    ({"quiet_hours": "25:00-08:00"}, "tenants.clinic.quiet_hours", ""),
    ({"max_attempts": 0}, "tenants.clinic.max_attempts", "greater than or equal to 1"),
    ({"max_attempts": 51}, "tenants.clinic.max_attempts", "less than or equal to 50"),
    ({"channel_order": "whatsapp"}, "tenants.clinic.channel_order", ""),
    ({"reminder": ["1h"]}, "tenants.clinic.reminder", "unknown key"),
]


@pytest.mark.parametrize(("policy", "key", "problem"), BAD_POLICY, ids=[f"{k}={v!r}" for p, k, _ in BAD_POLICY for v in p.values()])
def test_bad_policy_in_config_names_the_key(policy: dict[str, Any], key: str, problem: str) -> None:
    raw = {"tenants": {"clinic": {"timezone": "Europe/Madrid", **policy}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "config.toml", {})
    assert caught.value.key == key and problem in caught.value.problem


async def test_config_policy_reaches_the_core_unchanged(database_url: str) -> None:
    policy = {"reminders": ["1d", "1h30m"], "quiet_hours": "22:00-07:30", "channel_order": ["sms", "email"], "max_attempts": 3,
              "templates_dir": "clinic-templates"}
    tenants = {
        "clinic": {"default_region": "ES", "timezone": "Europe/Madrid", "locale": "es", **policy},
        "salon": {"default_region": "MX", "timezone": "America/Mexico_City", "locale": "es"},
    }
    config = make_config(database_url, tenants=tenants)
    hub = Hub.build(config)
    async with hub.running():
        clinic = await hub.tenants.get("clinic")
        salon = await hub.tenants.get("salon")
        # A fresh directory reads what the database kept, not what this process cached.
        fresh = TenantDirectory(hub.db.sessions)
        stored = await fresh.get("clinic")
    assert clinic.policy() == stored.policy() == config.tenants["clinic"].policy()
    assert (stored.reminders, stored.channel_order, stored.max_attempts) == (("1d", "1h30m"), ("sms", "email"), 3)
    assert salon.policy() == TenantPolicy()


async def test_stored_keys_beside_the_policy_are_not_read_as_policy(hub: Hub) -> None:
    # tenants.settings is a JSON document: other features may keep their keys there too.
    async with hub.db.sessions.begin() as session:
        await session.execute(
            update(Tenant).where(Tenant.slug == "clinic").values(settings={"reminders": ["1h"], "written_by_something_else": True})
        )
    clinic = await TenantDirectory(hub.db.sessions).get("clinic")
    assert clinic.reminders == ("1h",) and clinic.channel_order == TenantPolicy().channel_order
