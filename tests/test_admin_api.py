"""The admin API (/api/v1/admin): tenants and their plugin settings, for admin keys only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.admin_keys import issue_admin_key, revoke_admin_keys
from hub.app import create_app
from hub.core import Hub
from hub.tenant_settings import MASK
from hub.tenants import issue_api_key
from tests.test_tenant_settings import ACCOUNT, TOKEN, build, environ

SALON_TWILIO = "/api/v1/admin/tenants/salon/plugins/twilio_messaging"


@dataclass
class Admin:
    hub: Hub
    client: TestClient
    admin_key: str
    tenant_key: str

    async def call(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> tuple[int, Any, str]:
        headers = {"Authorization": f"Bearer {key if key is not None else self.admin_key}"}
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            text = await response.text()
            return response.status, await response.json(), text


@pytest.fixture
async def admin(database_url: str, backend: str) -> AsyncIterator[Admin]:
    hub = build(database_url, environ(backend))
    async with hub.running():
        async with hub.db.sessions.begin() as session:
            admin_key = await issue_admin_key(session, "ops")
            tenant_key = await issue_api_key(session, (await hub.tenants.get("clinic")).id)
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            yield Admin(hub, client, admin_key, tenant_key)


async def test_only_admin_keys_get_in(admin: Admin) -> None:
    async with admin.client.get("/api/v1/admin/tenants") as response:
        assert response.status == 401 and "admin key" in (await response.json())["detail"]
    cases = [("not-a-key", 401, "unauthorized"), (admin.tenant_key, 403, "forbidden"), (admin.admin_key, 200, None)]
    for key, status, error in cases:
        got, body, _ = await admin.call("GET", "/api/v1/admin/tenants", key=key)
        assert (got, body.get("error")) == (status, error), key[:8]
    assert [t["slug"] for t in body["tenants"]] == ["clinic", "salon"]
    async with admin.client.get("/api/v1/contacts?phone=+34600123456", headers={"Authorization": f"Bearer {admin.admin_key}"}) as response:
        assert response.status == 401  # nor is an admin key a tenant key
    async with admin.hub.db.sessions.begin() as session:
        assert await revoke_admin_keys(session, admin.admin_key[:14]) == 1
    assert (await admin.call("GET", "/api/v1/admin/tenants"))[0] == 401


async def test_not_found_and_bad_bodies_are_clear(admin: Admin) -> None:
    status, body, _ = await admin.call("GET", "/api/v1/admin/tenants/ghost")
    assert (status, body["error"]) == (404, "not_found") and "ghost" in body["detail"]
    status, body, _ = await admin.call("PUT", "/api/v1/admin/tenants/salon/plugins/nope", json={})
    assert (status, body["error"]) == (404, "not_found") and "no plugin 'nope'" in body["detail"]
    status, body, _ = await admin.call("PUT", SALON_TWILIO, data=b"{not json")
    assert (status, body["error"]) == (400, "malformed_json")
    bad = [
        (["a"], "body", "JSON object"),
        ({"account_sid": "AC1", "auth_token": TOKEN}, "account_sid", "Account SID"),
        ({"account_sid": ACCOUNT, "auth_token": TOKEN, "colour": "red"}, "colour", "unknown key"),
        ({"account_sid": ACCOUNT, "auth_token": TOKEN, "timeout_seconds": "soon"}, "timeout_seconds", "valid number"),
    ]
    for payload, field, reason in bad:
        status, body, text = await admin.call("PUT", SALON_TWILIO, json=payload)
        assert (status, body["error"], body["field"]) == (422, "validation_failed", field), body
        assert body["plugin"] == "twilio_messaging" and reason in body["reason"] and TOKEN not in text
    assert admin.hub.settings_for("twilio_messaging", "salon") is None  # nothing was stored


async def test_put_patch_and_get_settings_with_secrets_masked(admin: Admin) -> None:
    status, body, text = await admin.call("PUT", SALON_TWILIO, json={"account_sid": ACCOUNT, "auth_token": TOKEN, "help_text": "hola"})
    assert status == 200 and body["configured"] is True and TOKEN not in text
    assert body["settings"]["auth_token"] == {"value": MASK, "source": "database", "secret": True}
    assert admin.hub.settings_for("twilio_messaging", "salon").auth_token.get_secret_value() == TOKEN
    status, body, _ = await admin.call("PATCH", SALON_TWILIO, json={"help_text": None, "sandbox": False})
    assert status == 200 and body["settings"]["help_text"]["source"] == "default"
    assert body["settings"]["sandbox"] == {"value": False, "source": "database", "secret": False}
    assert admin.hub.settings_for("twilio_messaging", "salon").auth_token.get_secret_value() == TOKEN  # PATCH keeps the rest
    status, body, text = await admin.call("GET", "/api/v1/admin/tenants/salon")
    assert status == 200 and TOKEN not in text
    assert body["tenant"]["timezone"] == "America/Mexico_City" and body["tenant"]["source"] == "config"
    plugins = {p["plugin"]: p for p in body["plugins"]}
    assert plugins["twilio_messaging"]["configured"] and plugins["twilio_messaging"]["settings"]["account_sid"]["value"] == ACCOUNT
    status, body, _ = await admin.call("PUT", SALON_TWILIO, json={"sandbox": True})  # PUT replaces: the account is gone
    assert status == 422 and body["field"] == "account_sid"
