"""`hub db`: migrations."""

from __future__ import annotations

import click

from hub.cli import CliState, run


@click.group()
def db() -> None:
    """Database migrations."""


@db.command()
@click.pass_obj
def upgrade(state: CliState) -> None:
    """Migrate the database to the newest schema."""
    from hub.database import Database

    async def body() -> None:
        database = Database(state.config().hub.database_url)
        try:
            before, head = await database.revisions()
            if before == head:
                click.echo(f"{database.safe_url}: already at {head}")
                return
            await database.upgrade()
            click.echo(f"{database.safe_url}: migrated {before or 'empty'} -> {head}")
        finally:
            await database.close()

    run(body())


@db.command()
@click.pass_obj
def current(state: CliState) -> None:
    """Show the database's schema revision and the newest one."""
    from hub.database import Database

    async def body() -> None:
        database = Database(state.config().hub.database_url)
        try:
            now, head = await database.revisions()
        finally:
            await database.close()
        click.echo(f"current: {now or 'none (not migrated)'}\nhead:    {head}")

    run(body())
