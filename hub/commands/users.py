"""`hub users`: people who sign in to the web console."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.cli import LazyChoice, with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub


def _roles() -> tuple[str, ...]:
    from hub.console.users import ROLES  # with the models behind it: loaded only when a command line reads it

    return ROLES


@click.group()
def users() -> None:
    """Console users: a tenant's staff (see one tenant) or operators (see every tenant)."""


@users.command()
@click.argument("email")
@click.option("--tenant", help="The tenant this user works for (required for a tenant user).")
@click.option("--role", type=LazyChoice(_roles), default="tenant", show_default=True)
@click.option("--password", envvar="HUB_USER_PASSWORD", help="The password (default: $HUB_USER_PASSWORD, else one is generated and printed once).")
@with_open_hub
async def create(hub: Hub, email: str, tenant: str | None, role: str, password: str | None) -> None:
    """Create a console user; a generated password is printed once (it is stored only as an argon2id hash)."""
    from hub.console.passwords import WeakPassword, generate_password, new_hasher
    from hub.console.users import UserError, create_user

    generated = password is None
    secret = password or generate_password()
    try:
        async with hub.db.sessions.begin() as session:
            user = await create_user(session, new_hasher(), email=email, password=secret, role=role, tenant=tenant)
    except (UserError, WeakPassword) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role} user {user.email}" + (f" for tenant {tenant}" if tenant else ""), err=True)
    if generated:
        click.echo(f"password (shown once): {secret}")
