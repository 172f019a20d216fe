"""The rules every accepted value follows, shared by the API, the CLI and booking sources.

A value the hub accepts must never fail later for the same reason: a year
the database or `astimezone` cannot hold, a time zone name that only the
host's zone files know (`localtime`, `Factory`), a locale that is a path,
a link that runs script when clicked.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

MAX_ID = 2**63 - 1
"""The largest id a BIGINT column holds."""
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,2}$"
_LOCALE = re.compile(LOCALE_PATTERN)
# Folders of the zone database that hold copies or POSIX-rule variants, not places.
_NOT_PLACES = ("posix/", "right/", "SystemV/")


@functools.cache
def _timezone_names() -> frozenset[str]:
    # Area/Location names and UTC: "EST5EDT", "Factory" and "localtime" are zone files, not places
    # a business is in, and "localtime" means whatever the host says.
    names = (name for name in available_timezones() if "/" in name and not name.startswith(_NOT_PLACES))
    return frozenset((*names, "UTC"))


def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA Area/Location time zone or UTC (a set lookup, never a file read)."""
    return name in _timezone_names()


def check_timezone(name: str) -> str:
    """`name` when it is a time zone the hub accepts; raises ValueError naming it otherwise."""
    if not is_timezone(name):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as Europe/Madrid, or UTC)")
    return name


def check_locale(tag: str) -> str:
    """`tag` when it is a language tag (es, es-MX, pt_BR); raises ValueError otherwise."""
    if not _LOCALE.fullmatch(tag):
        raise ValueError("not a language tag (use es, es-MX or pt_BR)")
    return tag


def iso_text(value: Any) -> Any:
    """Refuse a number where a time is expected: 12345 is not read as a Unix time."""
    if not isinstance(value, str | dt.datetime):
        raise ValueError("must be an ISO 8601 date-time text such as 2026-12-01T10:00:00+01:00")
    return value


def check_moment(value: dt.datetime) -> dt.datetime:
    """`value` when it lies in the years the hub stores (1900 to 2200, in UTC too); raises ValueError."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between {EARLIEST_YEAR} and {LATEST_YEAR}")
    try:
        in_utc = value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(f"must be between {EARLIEST_YEAR} and {LATEST_YEAR}") from None
    if not EARLIEST_YEAR <= in_utc.year <= LATEST_YEAR:
        raise ValueError(f"must be between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


def is_web_link(url: str) -> bool:
    """Whether `url` is an absolute http(s) URL with a host, safe to render as a link."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and not any(ch.isspace() or ord(ch) < 32 for ch in url)


def check_url(url: str) -> str:
    """`url` when it is an http(s) link; raises ValueError otherwise (javascript:, data:, relative)."""
    if not is_web_link(url):
        raise ValueError("must be an http:// or https:// URL")
    return url


def web_link(url: str | None) -> str | None:
    """`url` if it is safe to render as a link, else None (stored rows from before the rule, other sources)."""
    return url if url and is_web_link(url) else None
