"""The `Calendly-Webhook-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = "Calendly-Webhook-Signature"


class SignatureError(Exception):
    """The header is missing or not in the `t=...,v1=...` form."""


@dataclass(frozen=True)
class SignatureHeader:
    """A parsed header: the timestamp and every `v1` signature it carries."""

    timestamp: int
    signatures: tuple[str, ...]


def parse_header(header: str | None) -> SignatureHeader:
    """Split the header into its timestamp and v1 signatures; raise SignatureError when malformed."""
    if not header or not header.strip():
        raise SignatureError("missing signature")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature")
        if key == "t":
            # Bounded before int(): thousands of digits would make int() raise (and mean nothing).
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed signature timestamp")
            timestamp = int(value)
        elif key == "v1":
            # hmac.compare_digest refuses non-ASCII text, and a signature is hex anyway.
            if not value or len(value) > 128 or not all(ch in "0123456789abcdefABCDEF" for ch in value):
                raise SignatureError("malformed signature")
            signatures.append(value.lower())
        # Other schemes (a future v2) are ignored, as Calendly's own samples do.
    if timestamp is None or not signatures:
        raise SignatureError("malformed signature")
    return SignatureHeader(timestamp, tuple(signatures))


def sign(key: str, timestamp: int, body: bytes) -> str:
    """The hex v1 signature of a body at a timestamp."""
    return hmac.new(key.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header_for(key: str, timestamp: int, body: bytes) -> str:
    """The full header value Calendly sends for this body."""
    return f"t={timestamp},v1={sign(key, timestamp, body)}"


def is_fresh(parsed: SignatureHeader, now: float, tolerance_seconds: int) -> bool:
    """Whether the timestamp is within the tolerance of now, either way (a replay is old, a forgery may be ahead)."""
    return abs(now - parsed.timestamp) <= tolerance_seconds


def matches(parsed: SignatureHeader, keys: Sequence[str], body: bytes) -> int | None:
    """The index of the first key whose signature is in the header, or None.

    Every signature is compared in constant time, so the answer's timing tells
    nothing about how much of a forged signature was right.
    """
    for index, key in enumerate(keys):
        expected = sign(key, parsed.timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in parsed.signatures):
            return index
    return None
