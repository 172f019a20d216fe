"""Chatwoot's webhook signature (4.11+): `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "X-Chatwoot-Signature"
TIMESTAMP = "X-Chatwoot-Timestamp"
DELIVERY = "X-Chatwoot-Delivery"
FUTURE_SECONDS = 30
"""How far ahead of our clock a timestamp may be (clock skew), as Chatwoot's own receiver guide allows."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The header value Chatwoot sends for this body at this timestamp."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def check(secret: str, signature: str | None, timestamp: str | None, body: bytes, *, now: float, tolerance: int) -> str:
    """"" when the signature verifies and is fresh, else why not: "missing", "malformed", "wrong" or "stale"."""
    if not signature or not timestamp:
        return "missing"
    if not signature.startswith("sha256=") or not timestamp.isascii() or not timestamp.isdigit():
        return "malformed"
    candidate = signature.removeprefix("sha256=").strip().lower()
    if not candidate.isascii() or len(candidate) != 64:
        return "malformed"
    if not hmac.compare_digest(sign(secret, timestamp, body), f"sha256={candidate}"):
        return "wrong"
    age = now - int(timestamp)
    if age > tolerance or age < -FUTURE_SECONDS:
        return "stale"
    return ""
