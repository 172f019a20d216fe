"""Tenants and their API keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.config import TenantSettings
from hub.errors import UnknownTenant
from hub.models import ApiKey, Tenant, utcnow
from hub.tenant_policy import TenantPolicy

API_KEY_PREFIX = "hub_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
"""`last_used_at` is written at most this often per key: not a write on every request."""


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


async def issue_api_key(
    session: AsyncSession, tenant_id: int, *, name: str | None = None, expires_at: dt.datetime | None = None
) -> str:
    """Store a new key for the tenant and return it in clear: the only time it is shown."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant_id, key_hash=hash_api_key(key), prefix=key[:12], name=name, expires_at=expires_at))
    await session.flush()
    return key


async def tenant_for_api_key(session: AsyncSession, key: str, *, now: dt.datetime | None = None) -> TenantInfo | None:
    """The tenant an active (neither revoked nor expired) API key belongs to, or None; notes the key's use."""
    now = now or utcnow()
    found = (
        await session.execute(
            select(Tenant, ApiKey.id, ApiKey.last_used_at)
            .join(ApiKey, ApiKey.tenant_id == Tenant.id)
            .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None),
                   or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
        )
    ).first()
    if found is None:
        return None
    row, key_id, last_used = found
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        await session.commit()
    return _info(row)


@dataclass(frozen=True)
class ApiKeyInfo:
    """One key as `hub tenants keys list` shows it: never the key itself."""

    prefix: str
    name: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def state(self, now: dt.datetime) -> str:
        """active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


async def list_api_keys(session: AsyncSession, tenant_id: int) -> list[ApiKeyInfo]:
    """Every key of a tenant, oldest first."""
    rows = (await session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.id))).all()
    return [ApiKeyInfo(r.prefix, r.name, r.created_at, r.expires_at, r.last_used_at, r.revoked_at) for r in rows]


async def revoke_api_key(session: AsyncSession, tenant_id: int, prefix: str) -> int:
    """Revoke the tenant's one active key whose stored prefix starts with `prefix`; returns 0 or 1.

    Raises ValueError when the prefix is shared by several active keys (nothing is revoked then).
    """
    if len(prefix) < len(API_KEY_PREFIX) + 4:
        return 0
    rows = (
        await session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None), ApiKey.prefix.startswith(prefix, autoescape=True))
        )
    ).all()
    if len(rows) > 1:
        raise ValueError(f"prefix {prefix!r} matches {len(rows)} active keys: give more of it")
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


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
