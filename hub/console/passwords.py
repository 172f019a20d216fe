"""Console passwords: argon2id hashes (argon2-cffi), checked in a thread so the event loop keeps serving.

argon2id is memory-hard (OWASP's first choice for password storage); its
parameters and salt travel inside the hash, so they can be raised later and
old hashes still verify (and are re-hashed on the next sign-in).
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10


class WeakPassword(ValueError):
    """A password the console refuses to store; the message says why."""


def new_hasher() -> PasswordHasher:
    """The hasher with the library's current recommended parameters (RFC 9106 low-memory profile)."""
    return PasswordHasher()


def check_strength(password: str) -> None:
    """Raise WeakPassword for a password too short to keep."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")


def generate_password() -> str:
    """A random password for a demo or first user: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    """The argon2id hash of `password` (slow on purpose: computed off the event loop)."""
    return await asyncio.to_thread(hasher.hash, password)


async def verify_password(hasher: PasswordHasher, stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash; False (never an exception) for a mismatch or a bad hash."""

    def check() -> bool:
        try:
            return hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
