"""`hub send` and `hub notifications list` through the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult, config_document, write_toml


def test_send_waits_for_the_outcome_and_says_sandbox(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    result = run_cli("send", "--tenant", "clinic", "--to", "600 123 456", "--kind", "message", "--data", '{"text": "Hola"}', config=config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "notification 1  message  SANDBOXED  via recorder-sms"
    assert lines[1] == "  attempt recorder-sms: sandboxed"
    assert lines[2].startswith("SANDBOX: the message was rendered and recorded, not sent")
    listed = run_cli("notifications", "list", "--tenant", "clinic", config=config)
    header, row = listed.stdout.strip().splitlines()
    assert header.split("\t") == ["ID", "DUE", "KIND", "STATUS", "CHANNEL", "CONTACT", "ERROR"]
    assert row.split("\t")[2:6] == ["message", "sandboxed", "recorder-sms", "contact 1"]
    assert run_cli("notifications", "list", "--tenant", "clinic", "--status", "failed", config=config).stdout == "no notifications\n"


def test_send_reports_failures_and_bad_input(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    failed = run_cli("send", "--tenant", "clinic", "--to", "ana@example.com", "--kind", "message", "--data", '{"text": "x"}', config=config)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout and "recorder-sms: no phone for this contact" in failed.stdout
    missing = run_cli("send", "--tenant", "clinic", "--to", "+34600123456", "--kind", "message", config=config)
    assert missing.returncode == 1 and "undefined variable 'text'" in missing.stdout
    bad = run_cli("send", "--tenant", "clinic", "--to", "12", "--kind", "message", config=config)
    assert bad.returncode == 2 and "Invalid value for --to: too short" in bad.stderr
    bad = run_cli("send", "--tenant", "clinic", "--to", "+34600123456", "--kind", "message", "--channel", "fax", config=config)
    assert bad.returncode == 2 and "no channel or medium 'fax'" in bad.stderr
    bad = run_cli("send", "--tenant", "nope", "--to", "+34600123456", "--kind", "message", config=config)
    assert bad.returncode == 1 and "no tenant 'nope'" in bad.stderr
