"""The command line loads only what a command uses: checked in a fresh interpreter, through the real CLI.

Python's own import log (`PYTHONPROFILEIMPORTTIME`) names every module a
run of `python -m hub ...` imported; each row says which ones that command
must not need. Like the light-surface test of `import hub` (test_plugin_boundary.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, CliResult

ENGINE = ("sqlalchemy", "alembic", "aiosqlite", "hub.core", "hub.database", "hub.models")
SERVER = ("aiohttp.web", "hub.app", "hub.api", "hub.console")
TEMPLATES = ("jinja2", "babel")
SDKS = ("openai", "twilio.rest", "twilio.http", "icalendar", "aiosmtplib", "cryptography")
"""What plugins and the core load on first use: vendor SDKs, and the cipher of secret settings."""


def imported(result: CliResult) -> set[str]:
    """Every module the run imported, from the import-time log on stderr."""
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def loaded(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages that were imported (a package counts when any module of it was)."""
    return sorted({f for f in forbidden for m in modules if m == f or m.startswith(f + ".")})


@pytest.fixture
def shipped_config(tmp_path: Path) -> Path:
    """The shipped config.toml (SQLite, sandbox on) in the test's own folder."""
    return Path(shutil.copy(ROOT / "config.toml", tmp_path / "config.toml"))


@pytest.mark.parametrize(
    ("args", "stdin", "forbidden"),
    [
        (("--help",), None, ENGINE + SERVER + TEMPLATES + SDKS),
        (("serve", "--help"), None, ENGINE + SERVER + TEMPLATES + SDKS),
        (("tenants", "--help"), None, ENGINE + SERVER + TEMPLATES + SDKS),
        (("phones", "normalize", "--region", "ES"), "600 12 34 56\n", ENGINE + SERVER + TEMPLATES + SDKS),
        # Builds the hub (settings, channels) and opens no database: no migrations, no HTTP app, no SDK.
        (("plugins",), None, ("alembic", "hub.app", "hub.api", "hub.console") + SDKS),
    ],
    ids=["--help", "serve --help", "tenants --help", "phones normalize", "plugins"],
)
def test_a_command_imports_only_what_it_uses(
    run_cli: Callable[..., CliResult], shipped_config: Path, args: tuple[str, ...], stdin: str | None, forbidden: tuple[str, ...]
) -> None:
    result = run_cli(*args, config=shipped_config, input=stdin, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    modules = imported(result)
    assert "hub.cli" in modules  # the log is there: an empty one would pass anything
    assert loaded(modules, forbidden) == []


def test_a_migrated_database_opens_without_alembic(run_cli: Callable[..., CliResult], shipped_config: Path) -> None:
    upgrade = run_cli("db", "upgrade", config=shipped_config, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    assert "alembic" in imported(upgrade)
    listed = run_cli("tenants", "list", config=shipped_config, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.startswith("demo\t")
    assert loaded(imported(listed), ("alembic",) + SDKS) == []


def test_lazy_help_and_choices_still_show_their_values(run_cli: Callable[..., CliResult], shipped_config: Path) -> None:
    top = run_cli("--help", config=shipped_config).stdout
    # Plugin commands are still registered before arguments are parsed.
    assert {"calendly", "chatwoot", "twilio", "responders"} <= {line.split()[0] for line in top.splitlines() if line.startswith("  ")}
    assert "appointment.created" in run_cli("webhooks", "subscribe", "--help", config=shipped_config).stdout
    statuses = run_cli("notifications", "list", "--help", config=shipped_config).stdout
    assert "pending" in statuses and "sandboxed" in statuses
    refused = run_cli("notifications", "list", "--tenant", "demo", "--status", "lost", config=shipped_config)
    assert refused.returncode == 2 and "'lost' is not one of" in refused.stderr
    roles = run_cli("users", "create", "x@example.com", "--role", "boss", config=shipped_config)
    assert roles.returncode == 2 and "'boss' is not one of 'tenant', 'operator'" in roles.stderr
