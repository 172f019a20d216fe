"""X-Request-Id: on every response (errors and redirects too), and in every log line written for the request."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from hub.app import create_app
from hub.core import Hub
from hub.logs import configure_logging
from hub.request_ids import request_id_for
from tests.conftest import make_config


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abc-123.def", True), ("edge:7f3a", True), (None, False), ("", False), ("x" * 65, False),
     ("has space", False), ("call +34 600 123 456", False), ("4155550123999", False)],
)
def test_a_callers_id_is_kept_only_when_plain(incoming: str | None, kept: bool) -> None:
    chosen = request_id_for(incoming)
    assert (chosen == incoming) is kept
    assert 1 <= len(chosen) <= 64


async def test_every_response_and_log_line_carries_the_request_id(sqlite_url: str, record_file: Path) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=True)
    hub = Hub.build(make_config(sqlite_url, record_file=record_file))
    try:
        async with hub.running():
            async with TestClient(TestServer(create_app(hub, manage_hub=False, run_workers=False))) as client:
                responses: list[Any] = [
                    await client.get("/health"),
                    await client.get("/api/v1/contacts"),  # 401 from the API sub-app
                    await client.get("/t/clinic/", allow_redirects=False),  # a redirect
                    await client.get("/no/such/page"),  # 404
                ]
                for response in responses:
                    assert response.headers.get("X-Request-Id"), response.url
                assert len({r.headers["X-Request-Id"] for r in responses}) == len(responses)
                form = await client.get("/signin", headers={"X-Request-Id": "trace-42.a"})
                assert form.headers["X-Request-Id"] == "trace-42.a"
                text = await form.text()
                token = text.split('name="csrf" value="')[1].split('"')[0]
                refused = await client.post("/signin", data={"email": "x@y.example", "password": "nope", "csrf": token},
                                            headers={"X-Request-Id": "trace-43.b"})
                assert refused.headers["X-Request-Id"] == "trace-43.b"
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    refusal = [line for line in lines if line["event"] == "console_sign_in_refused"]
    assert refusal and all(line["request_id"] == "trace-43.b" for line in refusal)
