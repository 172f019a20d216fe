"""Start-up through the real CLI: config mistakes and unreachable parts stop it with one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, CliResult, config_document, write_toml
from tests.pg import PostgresCluster, free_port


def one_error_line(result: CliResult) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_key_names_file_table_and_key(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[hub]\ndatabse_url = "sqlite+aiosqlite:///x.db"\n')
    assert one_error_line(run_cli("plugins", config=config)) == f"Error: {config}: hub.databse_url: unknown key"


def test_bad_values_are_named(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[tenants.clinic]\ndefault_region = "XX"\n')
    line = one_error_line(run_cli("tenants", "list", config=config))
    assert line.startswith(f"Error: {config}: tenants.clinic.default_region: unknown region 'XX'")
    config.write_text('[tenants.clinic]\ntimezone = "Mars/Olympus"\n')
    line = one_error_line(run_cli("tenants", "list", config=config))
    assert line.startswith(f"Error: {config}: tenants.clinic.timezone: unknown timezone 'Mars/Olympus'")
    config.write_text("[hub\n")
    assert one_error_line(run_cli("plugins", config=config)).startswith(f"Error: {config}: not valid TOML")


def test_missing_config_file(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    line = one_error_line(run_cli("plugins", "--json", config=tmp_path / "nope.toml"))
    assert line == f"Error: {tmp_path / 'nope.toml'}: file not found (pass --config or set HUB_CONFIG)"


def test_missing_secret_names_the_variable(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    document = config_document(sqlite_url, plugins={"recorder": {"token": {"env": "RECORDER_TOKEN"}}})
    config = write_toml(tmp_path / "config.toml", document)
    line = one_error_line(run_cli("plugins", config=config))
    assert line == f"Error: {config}: plugins.recorder.token: environment variable RECORDER_TOKEN is not set"
    shown = run_cli("plugins", "--json", config=config, env={"RECORDER_TOKEN": "tok-very-secret"})
    assert shown.returncode == 0, shown.stderr
    recorder = next(json.loads(line) for line in shown.stdout.splitlines() if '"recorder"' in line)
    assert recorder["settings"]["token"] == "********"
    assert "tok-very-secret" not in shown.stdout + shown.stderr


def test_unknown_disabled_plugin(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"disabled": ["recordr"]}))
    line = one_error_line(run_cli("plugins", config=config))
    assert line.startswith("Error: hub.disabled: unknown plugin 'recordr' (known: ")


def test_plugin_raising_on_import(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "broken.py").write_text("import not_installed_anywhere\n")
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"plugin_dirs": [str(folder)]}))
    line = one_error_line(run_cli("serve", config=config))
    assert line == (
        f"Error: plugin 'broken' ({folder / 'broken.py'}) failed to import: "
        "ModuleNotFoundError: No module named 'not_installed_anywhere'"
    )
    # Disabling it by name lets the hub start.
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"plugin_dirs": [str(folder)], "disabled": ["broken"]}))
    assert run_cli("plugins", config=config).returncode == 0


def test_unreachable_database(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    url = f"postgresql+asyncpg://hub:pw-secret@127.0.0.1:{free_port()}/hub"
    config = write_toml(tmp_path / "config.toml", config_document(url))
    result = run_cli("serve", config=config)
    line = one_error_line(result)
    assert line.startswith("Error: database postgresql+asyncpg://hub:***@127.0.0.1:") and "cannot be reached" in line
    assert "pw-secret" not in result.stderr


def test_database_url_from_environment_wins(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document("sqlite+aiosqlite:///not-this.db"))
    result = run_cli("db", "current", config=config, env={"HUB_DATABASE_URL": sqlite_url})
    assert result.returncode == 0, result.stderr
    current, head = (line.split(":", 1)[1].strip() for line in result.stdout.splitlines()[:2])
    assert current == head  # the migrated database named by the variable, not the empty one in the file
    assert not (tmp_path / "not-this.db").exists()


def test_serve_refuses_unmigrated_postgres_until_upgraded(pg_cluster: PostgresCluster, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    import asyncio

    from tests.conftest import _create_pg_database

    asyncio.run(_create_pg_database(pg_cluster, "startup_check"))
    config = write_toml(tmp_path / "config.toml", config_document(pg_cluster.url("startup_check")))
    line = one_error_line(run_cli("serve", config=config))
    assert line.endswith("is not migrated: run `hub db upgrade` first")
    from alembic.script import ScriptDirectory

    from hub.database import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    upgraded = run_cli("db", "upgrade", config=config)
    assert upgraded.returncode == 0 and f"migrated empty -> {head}" in upgraded.stdout
    assert f"already at {head}" in run_cli("db", "upgrade", config=config).stdout
    assert run_cli("tenants", "list", config=config).stdout.startswith("clinic\tClinic\tES")


def test_serve_on_shipped_config_answers_health(tmp_path: Path) -> None:
    """What the README's first command does: the shipped config, SQLite auto-migrated, sandbox on."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "--config", str(ROOT / "config.toml"), "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    body = json.loads(response.read())
                    break
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        assert body is not None, process.stderr.read() if process.poll() is not None else "no answer"
        assert body["status"] == "ok" and body["database"]["ok"] is True
        assert (tmp_path / "hub.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"Notification Hub serving on http://127.0.0.1:{port}/" in err
