"""Prometheus /metrics: guarded by a token (or an operator listener), with requests, webhooks, outbox and plugin figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from hub.app import create_app
from hub.config import parse_config
from hub.core import Hub
from hub.metrics import metrics_app
from hub.notifications import NotificationRequest
from tests.conftest import config_document

TOKEN = "metrics-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def hub_with(url: str, record_file: Path, environ: dict[str, str]) -> Hub:
    return Hub.build(parse_config(config_document(url, record_file=record_file), "test-config.toml", environ))


async def test_metrics_need_the_token_and_count_what_happened(sqlite_url: str, record_file: Path) -> None:
    hub = hub_with(sqlite_url, record_file, {"HUB_METRICS_TOKEN": TOKEN})
    async with hub.running():
        await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="+34600123456", data={"text": "hi"}))
        await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="+34600123457", data={"text": "later"},
                                                                       channel_order=("email",)))
        await hub.dispatcher.dispatch_due()
        await hub.notify(tenant="clinic", request=NotificationRequest(kind="message", address="+34600123458", data={"text": "due"}))
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status == 401
                assert TOKEN not in await refused.text()
            await client.get("/api/v1/contacts/17")  # 401, counted under its route pattern
            await client.post("/webhooks/recorder/inbound", data=b"not json")
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status == 200
            found = samples(await response.text())
    assert found[("hub_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/v1/contacts/{id}"), ("status", "4xx")))] == 1
    assert found[("hub_notifications", (("channel", "recorder-sms"), ("status", "sandboxed")))] == 1
    assert found[("hub_notifications", (("channel", "none"), ("status", "failed")))] == 1
    assert found[("hub_notifications_dispatched_total", (("channel", "recorder-sms"), ("status", "sandboxed")))] == 1
    assert found[("hub_outbox_due", ())] == 1
    assert found[("hub_outbox_oldest_due_age_seconds", ())] >= 0
    assert found[("hub_webhooks_received_total", (("outcome", "rejected"), ("plugin", "recorder")))] == 1


async def test_without_a_token_metrics_are_only_on_the_operator_listener(sqlite_url: str, record_file: Path) -> None:
    hub = hub_with(sqlite_url, record_file, {})
    async with hub.running():
        async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
            assert (await client.get("/metrics")).status == 404
        async with TestClient(TestServer(metrics_app(hub))) as operator:
            response = await operator.get("/metrics")
            assert response.status == 200
            assert ("hub_outbox_due", ()) in samples(await response.text())


async def test_plugin_failures_are_counted(sqlite_url: str, record_file: Path) -> None:
    hub = hub_with(sqlite_url, record_file, {})
    async with hub.running():
        await hub.call("on_message_received", hub=hub, message=None)  # the flaky test plugin always raises here
        async with TestClient(TestServer(metrics_app(hub))) as operator:
            found = samples(await (await operator.get("/metrics")).text())
    assert found[("hub_plugin_failures", (("plugin", "flaky"),))] >= 1


async def test_responder_tokens_and_latency_are_counted(sqlite_url: str, record_file: Path) -> None:
    from hub.events import InboundMessage
    from hub.models import Conversation
    from sqlalchemy import select

    hub = hub_with(sqlite_url, record_file, {})
    async with hub.running():
        await hub.accept(InboundMessage(tenant="clinic", medium="sms", channel="recorder-sms", sender="+34600123456", body="hola",
                                        provider_id="in-1"), source="test", dedupe_key="in-1")
        await hub.inbox.process_pending()
        await hub.responders.answer_pending()
        async with hub.db.sessions() as session:
            conversation = await session.scalar(select(Conversation.id))
        assert conversation is not None
        await hub.record_call("clinic", conversation, kind="model_call", name="openai", outcome="ok", tokens=42)
        await hub.record_call("clinic", conversation, kind="tool_call", name="book", outcome="ok", tokens=0)
        async with TestClient(TestServer(metrics_app(hub))) as operator:
            found = samples(await (await operator.get("/metrics")).text())
    assert found[("hub_responder_tokens_total", (("responder", "openai"),))] == 42
    answered = sum(v for (name, _), v in found.items() if name == "hub_responder_duration_seconds_count")
    assert answered >= 1
