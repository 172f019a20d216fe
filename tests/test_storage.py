"""Migrations: an empty database upgrades on both backends and matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hub.database import Database
from hub.models import Base


async def test_empty_database_migrates_without_drift(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        current, head = await db.revisions()
        assert current is None and head is not None
        await db.upgrade()
        assert await db.revisions() == (head, head)

        def diff(conn):  # type: ignore[no-untyped-def]
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        def tables(conn):  # type: ignore[no-untyped-def]
            return set(inspect(conn).get_table_names())

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
            assert set(Base.metadata.tables) <= await conn.run_sync(tables)
    finally:
        await db.close()


async def test_upgrade_twice_is_harmless(database_url: str) -> None:
    db = Database(database_url)
    try:
        before = await db.revisions()
        await db.upgrade()
        assert await db.revisions() == before
    finally:
        await db.close()
