"""Tenants and their API keys."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.config import TenantSettings
from hub.errors import UnknownTenant
from hub.models import ApiKey, Tenant, utcnow
from hub.tenant_policy import TenantPolicy

API_KEY_PREFIX = "hub_"


class TenantInfo(TenantPolicy):
    """What the core needs to know about a tenant on every event: who it is, and its policy."""

    id: int
    slug: str
    name: str
    default_region: str
    timezone: str
    locale: str


def _info(row: Tenant) -> TenantInfo:
    return TenantInfo(
        id=row.id, slug=row.slug, name=row.name, default_region=row.default_region, timezone=row.timezone,
        locale=row.locale, **TenantPolicy.stored_part(row.settings),
    )


def hash_api_key(key: str) -> str:
    """How keys are stored: a SHA-256 of a 256-bit random key needs no slow hash."""
    return hashlib.sha256(key.encode()).hexdigest()


async def upsert_tenant(session: AsyncSession, slug: str, settings: TenantSettings) -> tuple[TenantInfo, bool]:
    """Create the tenant or update its settings; True when it was created.

    One INSERT ... ON CONFLICT statement: several processes starting at once on a new
    database all create the config's tenants, and none may fail on the unique slug.
    """
    values = {
        "name": settings.name or slug,
        "default_region": settings.default_region,
        "timezone": settings.timezone,
        "locale": settings.locale,
        "settings": settings.to_stored(),
    }
    existed = await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None
    insert = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(Tenant)
    await session.execute(
        insert.values(slug=slug, created_at=utcnow(), **values).on_conflict_do_update(index_elements=["slug"], set_=values)
    )
    row = await session.scalar(select(Tenant).where(Tenant.slug == slug).execution_options(populate_existing=True))
    assert row is not None
    return _info(row), not existed


async def issue_api_key(session: AsyncSession, tenant_id: int) -> str:
    """Store a new key for the tenant and return it in clear: the only time it is shown."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant_id, key_hash=hash_api_key(key), prefix=key[:10]))
    await session.flush()
    return key


async def tenant_for_api_key(session: AsyncSession, key: str) -> TenantInfo | None:
    """The tenant a (non-revoked) API key belongs to, or None."""
    row = await session.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    )
    return _info(row) if row else None


async def revoke_api_keys(session: AsyncSession, tenant_id: int) -> int:
    """Revoke every key of a tenant; returns how many."""
    rows = (await session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)))).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


class TenantDirectory:
    """Looks tenants up by slug or id, caching what it has read (tenants rarely change)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._by_slug: dict[str, TenantInfo] = {}
        self._by_id: dict[int, TenantInfo] = {}

    def remember(self, info: TenantInfo) -> None:
        self._by_slug[info.slug] = info
        self._by_id[info.id] = info

    async def get(self, slug: str) -> TenantInfo:
        """The tenant with this slug; raises UnknownTenant."""
        if slug not in self._by_slug:
            async with self._sessions() as session:
                row = await session.scalar(select(Tenant).where(Tenant.slug == slug))
            if row is None:
                raise UnknownTenant(f"no tenant {slug!r} (create it with `hub tenants create {slug}` or in config.toml)")
            self.remember(_info(row))
        return self._by_slug[slug]

    async def by_id(self, tenant_id: int) -> TenantInfo:
        """The tenant with this id; raises UnknownTenant."""
        if tenant_id not in self._by_id:
            async with self._sessions() as session:
                row = await session.get(Tenant, tenant_id)
            if row is None:
                raise UnknownTenant(f"no tenant with id {tenant_id}")
            self.remember(_info(row))
        return self._by_id[tenant_id]

    async def all(self) -> list[TenantInfo]:
        """Every tenant, by slug."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(Tenant).order_by(Tenant.slug))).all()
        infos = [_info(row) for row in rows]
        for info in infos:
            self.remember(info)
        return infos
