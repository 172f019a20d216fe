"""Admin API keys: made by `hub admin-keys create`, stored hashed, in their own table.

An admin key can change any tenant's settings, so it is never a tenant key:
it has its own prefix and table, and a tenant key presented to the admin API
is recognised and refused (403), not mistaken for an unknown one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import AdminKey, ApiKey, utcnow
from hub.tenants import hash_api_key

ADMIN_KEY_PREFIX = "hubadm_"

KeyKind = Literal["admin", "tenant", "unknown"]


@dataclass(frozen=True)
class AdminKeyInfo:
    """An admin key as listed: never the key itself."""

    prefix: str
    name: str
    created_at: str
    revoked: bool


async def issue_admin_key(session: AsyncSession, name: str) -> str:
    """Store a new admin key and return it in clear: the only time it is shown."""
    key = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(AdminKey(name=name, key_hash=hash_api_key(key), prefix=key[:14]))
    await session.flush()
    return key


async def key_kind(session: AsyncSession, key: str) -> KeyKind:
    """Whether a presented key is a live admin key, a tenant's API key, or neither."""
    digest = hash_api_key(key)
    if await session.scalar(select(AdminKey.id).where(AdminKey.key_hash == digest, AdminKey.revoked_at.is_(None))) is not None:
        return "admin"
    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is not None:
        return "tenant"
    return "unknown"


async def list_admin_keys(session: AsyncSession) -> list[AdminKeyInfo]:
    """Every admin key, oldest first."""
    rows = (await session.scalars(select(AdminKey).order_by(AdminKey.id))).all()
    return [AdminKeyInfo(row.prefix, row.name, row.created_at.isoformat(timespec="seconds"), row.revoked_at is not None) for row in rows]


async def revoke_admin_keys(session: AsyncSession, prefix: str) -> int:
    """Revoke the live admin key shown with this prefix (as `hub admin-keys list` prints it); returns how many."""
    rows = (await session.scalars(select(AdminKey).where(AdminKey.prefix == prefix, AdminKey.revoked_at.is_(None)))).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)
