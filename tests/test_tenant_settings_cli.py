"""`hub tenants configure | show | rotate-key`, `hub admin-keys`, and `--tenant` commands for database tenants."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.tenants import hash_api_key
from tests.conftest import CliResult, config_document, write_toml

ACCOUNT = "AC" + "12" * 16
TOKEN = "acme-token-9c1f-secret"
TEMPLATES = '{"en": {"reminder": {"content_sid": "HX' + "ab" * 16 + '", "variables": {"1": "{{ contact.name }}"}}}}'


@pytest.fixture
def config(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> Path:
    """A config with no Twilio at all, and a tenant made from the CLI."""
    path = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"plugin_dirs": []}))
    created = run_cli("tenants", "create", "acme", "--region", "US", "--timezone", "America/New_York", config=path)
    assert created.returncode == 0, created.stderr
    return path


def database_files(sqlite_url: str) -> list[Path]:
    database = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    return sorted(database.parent.glob(database.name + "*"))


def test_configure_and_show(config: Path, sqlite_url: str, run_cli: Callable[..., CliResult]) -> None:
    result = run_cli(
        "tenants", "configure", "acme", "twilio_messaging", f"account_sid={ACCOUNT}", "auth_token=@env:ACME_TOKEN",
        "sms_from=+15017122661", "sandbox=false", "timeout_seconds=30", f"content_templates={TEMPLATES}", "help_text=123",
        config=config, env={"ACME_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert "configured twilio_messaging for tenant acme" in result.stderr
    shown = run_cli("tenants", "show", "acme", "--json", config=config)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["tenant"]["timezone"] == "America/New_York" and document["tenant"]["source"] == "database"
    twilio = {p["plugin"]: p for p in document["plugins"]}["twilio_messaging"]
    values = {k: v["value"] for k, v in twilio["settings"].items()}
    assert twilio["configured"] and values["sandbox"] is False and values["timeout_seconds"] == 30.0
    assert values["help_text"] == "123"  # a text field keeps what was typed
    assert values["content_templates"]["en"]["reminder"]["content_sid"] == "HX" + "ab" * 16
    assert values["auth_token"] == "********" and twilio["settings"]["auth_token"]["source"] == "database"
    assert twilio["settings"]["api_base_url"]["source"] == "default"
    text = run_cli("tenants", "show", "acme", config=config)
    assert "plugin twilio_messaging: configured" in text.stdout and "plugin calendly: not configured (calendly.token" in text.stdout
    outputs = "".join(r.stdout + r.stderr for r in (result, shown, text))
    assert TOKEN not in outputs
    files = database_files(sqlite_url)
    assert all(TOKEN.encode() not in f.read_bytes() for f in files)
    key_file = next(f for f in files if f.name.endswith(".key"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    unset = run_cli("tenants", "configure", "acme", "twilio_messaging", "--unset", "help_text", config=config)
    assert unset.returncode == 0 and '"help_text": {"value": null' in run_cli("tenants", "show", "acme", "--json", config=config).stdout


BAD = [
    (("colour=red",), "twilio_messaging.colour: unknown key"),
    ((f"account_sid={ACCOUNT}", "auth_token=x", "sandbox=perhaps"), "twilio_messaging.sandbox: Input should be a valid boolean"),
    ((f"account_sid={ACCOUNT}", "auth_token=x", "content_templates={es"), "twilio_messaging.content_templates: not valid JSON"),
    (("account_sid=AC1", "auth_token=x"), "twilio_messaging.account_sid: must be an Account SID"),
    (("auth_token=@env:NOT_SET",), "twilio_messaging.auth_token: environment variable NOT_SET is not set"),
    (("account_sid",), "twilio_messaging.account_sid: expected key=value"),
]


def test_bad_values_exit_2_naming_plugin_and_key(config: Path, run_cli: Callable[..., CliResult]) -> None:
    for args, message in BAD:
        result = run_cli("tenants", "configure", "acme", "twilio_messaging", *args, config=config)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    shown = json.loads(run_cli("tenants", "show", "acme", "--json", config=config).stdout)
    twilio = {p["plugin"]: p for p in shown["plugins"]}["twilio_messaging"]
    assert not twilio["configured"] and all(v["source"] != "database" for v in twilio["settings"].values())  # nothing stored


def test_unknown_plugin_or_tenant(config: Path, run_cli: Callable[..., CliResult]) -> None:
    plugin = run_cli("tenants", "configure", "acme", "nope", "a=1", config=config)
    assert plugin.returncode == 2 and "no plugin 'nope' is loaded" in plugin.stderr
    tenant = run_cli("tenants", "configure", "ghost", "twilio_messaging", "sandbox=true", config=config)
    assert tenant.returncode == 1 and "no tenant 'ghost'" in tenant.stderr
    assert run_cli("tenants", "show", "ghost", config=config).returncode == 1


def test_tenant_commands_work_for_database_tenants(config: Path, run_cli: Callable[..., CliResult]) -> None:
    before = run_cli("twilio", "templates", "--tenant", "acme", config=config)
    assert "acme: twilio_messaging not configured" in before.stdout, before.stderr
    configured = run_cli(
        "tenants", "configure", "acme", "twilio_messaging", f"account_sid={ACCOUNT}", f"auth_token={TOKEN}",
        f"content_templates={TEMPLATES}", config=config,
    )
    assert configured.returncode == 0, configured.stderr
    templates = run_cli("twilio", "templates", "--tenant", "acme", config=config)
    assert f"acme: account {ACCOUNT}" in templates.stdout and "HX" + "ab" * 16 in templates.stdout
    assert templates.returncode == 1  # confirmation, cancellation and reschedule have no template
    every = run_cli("twilio", "templates", config=config)
    assert f"acme: account {ACCOUNT}" in every.stdout
    calendly = run_cli("calendly", "check", "--tenant", "acme", config=config)
    assert calendly.returncode == 1 and "hub tenants configure acme calendly token=" in calendly.stderr


def test_admin_keys_and_rotation_from_the_cli(config: Path, sqlite_url: str, run_cli: Callable[..., CliResult]) -> None:
    made = run_cli("admin-keys", "create", "--name", "ops", config=config)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("hubadm_")
    listed = run_cli("admin-keys", "list", config=config).stdout
    assert listed.startswith(key[:14] + "\tops\t") and listed.rstrip().endswith("active")
    db = b"".join(f.read_bytes() for f in database_files(sqlite_url))
    assert key.encode() not in db and hash_api_key(key).encode() in db
    assert run_cli("admin-keys", "revoke", key[:14], config=config).returncode == 0
    assert run_cli("admin-keys", "list", config=config).stdout.rstrip().endswith("revoked")
    run_cli("tenants", "configure", "acme", "twilio_messaging", f"account_sid={ACCOUNT}", f"auth_token={TOKEN}", config=config)
    key_file = next(f for f in database_files(sqlite_url) if f.name.endswith(".key"))
    old = key_file.read_text()
    rotated = run_cli("tenants", "rotate-key", config=config)
    assert rotated.returncode == 0 and "re-encrypted 1 secrets of 1 tenant plugin settings" in rotated.stdout
    assert key_file.read_text() != old
    assert '"configured": true' in run_cli("tenants", "show", "acme", "--json", config=config).stdout
