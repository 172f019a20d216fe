"""`hub admin-keys`: keys for the admin API (/api/v1/admin), stored hashed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.cli import with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub


@click.group(name="admin-keys")
def admin_keys() -> None:
    """Keys for the admin API: they can change any tenant's settings, and are never tenant keys."""


@admin_keys.command()
@click.option("--name", required=True, help="Who or what holds the key (shown by `list`).")
@with_open_hub
async def create(hub: Hub, name: str) -> None:
    """Create an admin key and print it (shown once, stored hashed)."""
    from hub.admin_keys import issue_admin_key

    async with hub.db.sessions.begin() as session:
        key = await issue_admin_key(session, name)
    click.echo(f"admin key for {name} (shown once): {key}", err=True)
    click.echo(key)


@admin_keys.command(name="list")
@with_open_hub
async def list_(hub: Hub) -> None:
    """List admin keys by prefix (the keys themselves are not stored)."""
    from hub.admin_keys import list_admin_keys

    async with hub.db.sessions() as session:
        for info in await list_admin_keys(session):
            click.echo(f"{info.prefix}\t{info.name}\t{info.created_at}\t{'revoked' if info.revoked else 'active'}")


@admin_keys.command()
@click.argument("prefix")
@with_open_hub
async def revoke(hub: Hub, prefix: str) -> None:
    """Revoke the admin key shown by `list` with this prefix."""
    from hub.admin_keys import revoke_admin_keys

    async with hub.db.sessions.begin() as session:
        count = await revoke_admin_keys(session, prefix)
    if not count:
        raise click.ClickException(f"no active admin key with prefix {prefix!r} (see `hub admin-keys list`)")
    click.echo(f"revoked admin key {prefix}")
