"""Console users: created by `hub users create`, signed in with a password, locked out after repeated failures."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.console.passwords import check_strength, hash_password, verify_password
from hub.models import ConsoleUser, Tenant, utcnow

ROLES = ("tenant", "operator")
MAX_FAILURES = 5
"""Wrong passwords in a row before the account is locked."""
LOCK_FOR = dt.timedelta(minutes=15)
# Verified against when the email is unknown, so an unknown email costs the same time as a wrong password.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$Giylbindn6QdlovKDiguHA$CYj4wgRPfFerq8094Bq2D9WdxhDHQsA6sCFjoQBeOow"


class UserError(ValueError):
    """A user that cannot be created as asked; the message names the field."""


@dataclass(frozen=True)
class SignedInUser:
    """Who is using the console: their tenant (None for an operator) and session version."""

    id: int
    email: str
    role: str
    tenant_id: int | None
    tenant_slug: str | None
    session_version: int

    @property
    def is_operator(self) -> bool:
        """Operators see every tenant."""
        return self.role == "operator"


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: the user, or why not (a message safe to show)."""

    user: SignedInUser | None
    problem: str = ""


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding spaces."""
    return email.strip().lower()


async def create_user(
    session: AsyncSession, hasher: PasswordHasher, *, email: str, password: str, role: str, tenant: str | None
) -> ConsoleUser:
    """Store a new console user (never commits); raises UserError or passwords.WeakPassword."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise UserError("email: not an email address")
    if role not in ROLES:
        raise UserError(f"role: one of {', '.join(ROLES)}")
    check_strength(password)
    tenant_id: int | None = None
    if role == "tenant":
        if not tenant:
            raise UserError("tenant: a tenant user needs --tenant")
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == tenant))
        if tenant_id is None:
            raise UserError(f"tenant: no tenant {tenant!r}")
    elif tenant:
        raise UserError("tenant: an operator sees every tenant; give no --tenant")
    if await session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)) is not None:
        raise UserError(f"email: a user {email} already exists")
    user = ConsoleUser(
        tenant_id=tenant_id, email=email, password_hash=await hash_password(hasher, password), role=role,
        failed_attempts=0, session_version=1, created_at=utcnow(),
    )
    session.add(user)
    await session.flush()
    return user


async def count_users(session: AsyncSession) -> int:
    """How many console users exist (`make run` creates a demo user only when there are none)."""
    return int(await session.scalar(select(func.count()).select_from(ConsoleUser)) or 0)


async def _signed_in(session: AsyncSession, user: ConsoleUser) -> SignedInUser:
    slug = await session.scalar(select(Tenant.slug).where(Tenant.id == user.tenant_id)) if user.tenant_id else None
    return SignedInUser(user.id, user.email, user.role, user.tenant_id, slug, user.session_version)


async def sign_in(session: AsyncSession, hasher: PasswordHasher, email: str, password: str) -> SignIn:
    """Check a password, counting failures: the `MAX_FAILURES`th locks the account for `LOCK_FOR` (caller commits)."""
    # Row-locked on PostgreSQL: concurrent wrong guesses each count.
    user = await session.scalar(select(ConsoleUser).where(ConsoleUser.email == normalize_email(email)).with_for_update())
    if user is None:
        await verify_password(hasher, _DUMMY_HASH, password)
        return SignIn(None, "wrong email or password")
    now = utcnow()
    if user.locked_until is not None and user.locked_until > now:
        return SignIn(None, "too many failed attempts: this account is locked for a while; try again later")
    if not await verify_password(hasher, user.password_hash, password):
        user.failed_attempts += 1
        if user.failed_attempts >= MAX_FAILURES:
            user.locked_until = now + LOCK_FOR
            user.failed_attempts = 0
            user.session_version += 1
            return SignIn(None, "too many failed attempts: this account is locked for a while; try again later")
        return SignIn(None, "wrong email or password")
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(hasher, password)
    user.failed_attempts = 0
    user.locked_until = None
    user.last_sign_in_at = now
    return SignIn(await _signed_in(session, user))


async def user_for_session(session: AsyncSession, user_id: int, version: int) -> SignedInUser | None:
    """The user a session cookie names, if that session is still valid (same version, not locked)."""
    user = await session.get(ConsoleUser, user_id)
    if user is None or user.session_version != version:
        return None
    return await _signed_in(session, user)
