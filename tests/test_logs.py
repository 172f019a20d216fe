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


import pytest  # noqa: E402


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("race-00000000000014 done", None, "race-00000000000014"),
        ("wrote /var/lib/hub/12345678901/x.db", None, "/var/lib/hub/12345678901/x.db"),
        ("at 2026-11-29T11:45:24.871232Z", None, "2026-11-29T11:45:24.871232Z"),
        ("listening on 127.0.0.1:8080", None, "127.0.0.1:8080"),
        ("batch of 12345678 rows", None, "12345678 rows"),
        ("to +34 600 123 456 now", "600 123", "+*********56"),
        ("call 600 123 456", "600 123", "*******56"),
        ("whatsapp:+5215512345678", "5512345678", "whatsapp:+***********78"),
        ("sms to 600123456", "600123456", "*******56"),
        ("(55) 1234-5678", "1234-5678", "********78"),
    ],
)
def test_masking_hides_phones_but_not_ids_paths_or_dates(text: str, hidden: str | None, kept: str) -> None:
    masked = mask_text(text)
    assert kept in masked
    if hidden is not None:
        assert hidden not in masked


def test_names_are_logged_by_length() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=True)
    try:
        structlog.get_logger("test").info("contact_created", name="Ana Secreta Pérez", contact_id=12345678)
    finally:
        structlog.reset_defaults()
    record = json.loads(stream.getvalue().splitlines()[0])
    assert record["name"] == "<17 chars>" and record["contact_id"] == 12345678
