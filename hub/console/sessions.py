"""Console sessions: a signed cookie (itsdangerous) holding the user id, session version and CSRF token.

Nothing is stored server-side: the cookie is signed with a key derived from
the hub's secret key (hub.secret_keys), so every hub process accepts it, and
a user's session version (bumped on lock-out) invalidates old cookies. Every
form carries the CSRF token from the cookie; a POST whose token does not
match is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "hub_console"
MAX_AGE_SECONDS = 12 * 3600
"""A session lasts a working day; then the user signs in again."""


@dataclass(frozen=True)
class SessionData:
    """What the cookie says: a CSRF token always, a user once signed in."""

    csrf: str
    user_id: int | None = None
    version: int = 0
    tenant: str | None = None
    """The tenant an operator last chose."""


def derive_signing_key(hub_key: bytes) -> bytes:
    """A key used only for console cookies, derived from the hub's secret key."""
    return hmac.new(hub_key, b"notification-hub console session cookie v1", hashlib.sha256).digest()


class SessionCodec:
    """Reads and writes the session cookie."""

    def __init__(self, signing_key: bytes, *, secure: bool) -> None:
        self._serializer = URLSafeTimedSerializer(signing_key, salt="console-session")
        self.secure = secure

    def read(self, request: web.Request) -> SessionData | None:
        """The request's valid session, or None (missing, forged or expired)."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        user = data.get("u")
        return SessionData(data["c"], user if isinstance(user, int) else None, int(data.get("v", 0)), data.get("t"))

    def write(self, response: web.StreamResponse, data: SessionData) -> None:
        """Set the cookie: HttpOnly, SameSite=Lax, Secure when the hub is served over HTTPS."""
        payload: dict[str, Any] = {"c": data.csrf}
        if data.user_id is not None:
            payload.update(u=data.user_id, v=data.version)
        if data.tenant:
            payload["t"] = data.tenant
        response.set_cookie(
            COOKIE, self._serializer.dumps(payload), max_age=MAX_AGE_SECONDS, httponly=True, samesite="Lax",
            secure=self.secure, path="/",
        )

    @staticmethod
    def clear(response: web.StreamResponse) -> None:
        """Forget the session (sign out)."""
        response.del_cookie(COOKIE, path="/")


def new_csrf() -> str:
    """A fresh CSRF token."""
    return secrets.token_urlsafe(24)


def csrf_ok(session: SessionData | None, submitted: str) -> bool:
    """Whether a form's token is the session's own (constant-time)."""
    return session is not None and bool(submitted) and hmac.compare_digest(session.csrf, submitted)
