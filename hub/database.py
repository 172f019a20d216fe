"""The database: engine, sessions, and migrations through Alembic."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from hub.errors import StartupError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic (and every migration module it loads) is imported only to migrate or to report revisions:
# a start on a database already at the head is told apart without it (`at_head`).

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the HTTP app read while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Writers queue in SQLite's busy handler for up to 30 s rather than failing at once.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic config for this project's migrations and the given database."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Database:
    """Owns the engine and hands out sessions; one per hub process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = url.split("+", 1)[0].split(":", 1)[0]
        # hide_parameters: a failing statement's error text would otherwise quote its values
        # (names, message bodies) into whatever logs it.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.dialect == "postgresql":
            # Enough connections for a busy webhook burst plus the workers; no ping per checkout
            # (a round trip on every query): stale connections are recycled instead.
            kwargs.update(pool_size=20, max_overflow=10, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> str | None:
        """None when the database answers, else why it does not."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "down" to /health
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    async def revisions(self) -> tuple[str | None, str | None]:
        """(current revision of the database, head revision of the migrations)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

        def current(conn: Connection) -> str | None:
            return MigrationContext.configure(conn).get_current_revision()

        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(current), head
        except OSError as exc:
            raise StartupError(f"database {self.safe_url} cannot be reached: {exc}") from None
        except Exception as exc:
            if "connect" in type(exc).__name__.lower() or "refused" in str(exc).lower():
                raise StartupError(f"database {self.safe_url} cannot be reached: {exc}") from None
            raise

    async def upgrade(self, revision: str = "head") -> None:
        """Run Alembic migrations up to `revision` on this database."""
        from alembic import command

        cfg = alembic_config(self.url)

        def run(conn: Connection) -> None:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def at_head(self) -> bool:
        """Whether the database is surely at the single head of the migrations, known without Alembic.

        False whenever it cannot tell (no version table, several heads, a file it cannot read):
        the caller then asks Alembic.
        """
        head = file_head(MIGRATIONS_DIR / "versions")
        if head is None:
            return False
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        except Exception:
            return False  # not migrated yet, or unreachable: the full check says which
        return list(rows) == [head]

    async def ensure_migrated(self, auto_migrate: bool) -> None:
        """Migrate when allowed, else refuse to run on a database that is behind."""
        if await self.at_head():
            return
        current, head = await self.revisions()
        if current == head:
            return
        if auto_migrate:
            await self.upgrade()
            return
        state = "not migrated" if current is None else f"at revision {current}, migrations are at {head}"
        raise StartupError(f"database {self.safe_url} is {state}: run `hub db upgrade` first")


def file_head(versions: Path) -> str | None:
    """The one head revision of the migration files, read as text (no module is imported); None if unsure."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found: dict[str, Any] = {}
        try:
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    name, value = node.targets[0].id, node.value
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    name, value = node.target.id, node.value
                else:
                    continue
                if name in ("revision", "down_revision"):
                    found[name] = ast.literal_eval(value)
        except (OSError, SyntaxError, ValueError):
            return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, (tuple, list)):
            parents.update(str(d) for d in down)
        elif down is not None:
            return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
