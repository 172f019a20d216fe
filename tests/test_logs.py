"""Logs are structured and never carry phone numbers, emails or message bodies in clear."""

from __future__ import annotations

import io
import json

import structlog

from hub.logs import configure_logging, mask_text


def test_mask_text_hides_phones_and_emails() -> None:
    masked = mask_text("from whatsapp:+5215512345678 and Ana.Perez@Example.com, call (55) 1234-5678")
    assert "5512345678" not in masked and "1234-5678" not in masked
    assert "Perez" not in masked and "A***@Example.com" in masked
    assert "+***********78" in masked


def test_json_log_lines_are_masked() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=True)
    try:
        log = structlog.get_logger("test")
        log.info("inbound", sender="+34 600 123 456", body="my secret appointment note", meta={"email": "ana@example.com"})
        log.debug("hidden at info level")
    finally:
        structlog.reset_defaults()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "inbound" and record["level"] == "info" and record["timestamp"].endswith("Z")
    assert record["body"] == "<26 chars>"
    assert "600" not in record["sender"] and record["sender"].endswith("56")
    assert record["meta"]["email"] == "a***@example.com"
