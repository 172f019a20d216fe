"""`hub users create`, `hub webhooks subscribe | list | disable`, and the demo sign-in `hub serve --demo-user` prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.commands.serve import _demo_sign_in
from hub.core import Hub
from hub.models import ConsoleUser
from tests.conftest import CliResult, config_document, make_config, write_toml


@pytest.fixture
def config(sqlite_url: str, tmp_path: Path) -> Path:
    return write_toml(tmp_path / "config.toml", config_document(sqlite_url))


@pytest.mark.parametrize(
    ("args", "env", "problem"),
    [
        (("desk@clinic.example", "--tenant", "clinic"), {}, None),
        (("ops@hub.example", "--role", "operator"), {"HUB_USER_PASSWORD": "a long passphrase"}, None),
        (("desk@clinic.example",), {}, "tenant: a tenant user needs --tenant"),
        (("desk@clinic.example", "--tenant", "nope"), {}, "tenant: no tenant 'nope'"),
        (("ops@hub.example", "--role", "operator", "--tenant", "clinic"), {}, "give no --tenant"),
        (("not-an-email", "--tenant", "clinic"), {}, "email: not an email address"),
        (("desk@clinic.example", "--tenant", "clinic"), {"HUB_USER_PASSWORD": "short"}, "at least 10 characters"),
    ],
)
def test_users_create(run_cli: Callable[..., CliResult], config: Path, args: tuple[str, ...], env: dict[str, str], problem: str | None) -> None:
    result = run_cli("users", "create", *args, config=config, env=env)
    if problem:
        assert result.returncode != 0 and problem in result.stderr
        return
    assert result.returncode == 0, result.stderr
    if "HUB_USER_PASSWORD" in env:
        assert "password" not in result.stdout
    else:
        assert result.stdout.startswith("password (shown once): ") and len(result.stdout.split(": ")[1].strip()) >= 16
    again = run_cli("users", "create", *args, config=config, env=env)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_webhooks_cli(run_cli: Callable[..., CliResult], config: Path) -> None:
    made = run_cli("webhooks", "subscribe", "clinic", "https://crm.example/hooks", "--event", "appointment.*", config=config)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("whsec_")
    listed = run_cli("webhooks", "list", "--tenant", "clinic", config=config)
    assert "https://crm.example/hooks\tappointment.*\tactive" in listed.stdout and secret not in listed.stdout
    for args, problem in (
        (("clinic", "ftp://x", "--event", "*"), "url: an http:// or https:// URL"),
        (("clinic", "https://x.example", "--event", "appointment.moved"), "events: 'appointment.moved' matches no event"),
        (("nope", "https://x.example", "--event", "*"), "nope"),
    ):
        refused = run_cli("webhooks", "subscribe", *args, config=config)
        assert refused.returncode != 0 and problem in refused.stderr
    assert run_cli("webhooks", "disable", "1", config=config).returncode == 0
    assert "disabled" in run_cli("webhooks", "list", config=config).stdout
    assert "no active subscription 1" in run_cli("webhooks", "disable", "1", config=config).stderr


async def test_demo_sign_in_is_made_once_with_a_printed_password(sqlite_url: str, record_file: Path) -> None:
    hub = Hub.build(make_config(sqlite_url, record_file=record_file))
    async with hub.running():
        first = await _demo_sign_in(hub, "demo@demo.example")
        second = await _demo_sign_in(hub, "demo@demo.example")
        async with hub.db.sessions() as session:
            users = list(await session.scalars(select(ConsoleUser)))
    assert "with password " in first and "shown only this once" in first
    password = first.split("with password ")[1].split(" ")[0]
    assert password not in second and "printed when it was made" in second
    assert len(users) == 1 and users[0].email == "demo@demo.example" and password not in users[0].password_hash
