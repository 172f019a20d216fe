"""The HTTP app: /health, plugin sub-apps, and errors that are always JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from hub.app import create_app
from hub.core import Hub
from hub.database import Database
from tests.conftest import TEST_PLUGINS, make_config

BOOM_PLUGIN = '''
from aiohttp import web
from hub import hookimpl

@hookimpl
def register_routes(hub):
    async def boom(request):
        raise RuntimeError("secret internals +34600123456")
    return [web.get("/boom", boom)]
'''


async def test_health_reports_database_and_plugins(client: Any) -> None:
    response = await client.get("/health")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "detail": ""}
    assert body["plugins"]["recorder"]["channels"]["recorder-sms"]["ok"] is True
    assert body["plugins"]["recorder"]["sandbox"] is True
    assert body["plugins"]["flaky"]["configured"] is True


async def test_health_is_503_when_a_required_channel_is_down(sqlite_url: str, record_file: Path) -> None:
    config = make_config(sqlite_url, record_file=record_file, plugins={"recorder": {"healthy": False}})
    hub = Hub.build(config)
    async with TestClient(TestServer(create_app(hub, run_workers=False))) as client:
        response = await client.get("/health")
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"
    assert body["plugins"]["recorder"]["channels"]["recorder-sms"] == {"ok": False, "detail": "told to be unhealthy", "required": True}


async def test_health_is_503_when_the_database_is_down(hub: Hub, client: Any) -> None:
    working = hub.db
    hub.db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    try:
        response = await client.get("/health")
        body = await response.json()
    finally:
        await hub.db.close()
        hub.db = working
    assert response.status == 503
    assert body["database"]["ok"] is False and body["database"]["detail"]


async def test_unknown_path_and_method_are_json(client: Any) -> None:
    response = await client.get("/nope")
    assert response.status == 404
    assert await response.json() == {"error": "not_found"}
    response = await client.get("/webhooks/recorder/inbound")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"


async def test_malformed_and_oversized_bodies_get_4xx_json(client: Any, hub: Hub) -> None:
    response = await client.post("/webhooks/recorder/inbound", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_json"
    response = await client.post("/webhooks/recorder/inbound", json={"tenant": "clinic"})
    assert response.status == 422
    assert (await response.json())["detail"] == "tenant, from and id are required"
    too_big = b"x" * (hub.config.hub.max_body_bytes + 1)
    response = await client.post("/webhooks/recorder/inbound", data=too_big, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"] == "request_entity_too_large"


async def test_unexpected_error_is_json_500_without_internals(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "boom.py").write_text(BOOM_PLUGIN)
    hub = Hub.build(make_config(sqlite_url, hub={"plugin_dirs": [str(TEST_PLUGINS), str(folder)]}))
    async with TestClient(TestServer(create_app(hub, run_workers=False))) as client:
        response = await client.get("/webhooks/boom/boom")
        text = await response.text()
    assert response.status == 500
    assert text == '{"error": "internal_error"}'
