"""Structured logging with personal data masked.

Logs are JSON lines when stderr is not a terminal. Whatever a call logs,
phone numbers, email addresses, names and message bodies never reach the
output in clear: the masking processor runs last before rendering. Numbers
that are not phones (ids, paths, dates, timestamps) are left readable.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# Keys whose values are message content: replaced by their length alone.
CONTENT_KEYS = frozenset({"body", "text", "html", "message_body", "content", "subject"})
EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Candidates for phone numbers: digits, possibly split by the separators people and vendors use.
# Which candidates are phones is decided in `_mask_phone`: ids, paths, dates and addresses are not.
PHONE_RE = re.compile(r"(?<![\w/.\-])\+?\(?\d[\d\s().\-]*\d")
_NOT_PHONES = (
    re.compile(r"\d{4}-\d{2}-\d{2}.*"),  # dates (and the times after them)
    re.compile(r"\d{1,3}(\.\d{1,3}){3}"),  # IPv4 addresses
)
# Keys whose values are personal: names are replaced by their length like bodies.
PERSONAL_KEYS = frozenset({"name", "contact_name", "display_name", "first_name", "last_name"})


# A database error's text quotes the statement's values (the driver's message, `[parameters: ...]`):
# only the error's class survives into a log line.
_DB_ERROR_LINE = re.compile(r"(\((?:sqlalchemy|sqlite3|asyncpg)\.[\w.]+\)(?:\s*<class '[\w.]+'>)?).*$")
_DB_DETAIL_LINE = ("[SQL", "[parameters", "(Background on this error")


def _without_statement_values(text: str) -> str:
    if "[SQL" not in text and "(sqlalchemy." not in text:
        return text
    kept: list[str] = []
    in_statement = False
    for line in text.split("\n"):
        if line.lstrip().startswith(_DB_DETAIL_LINE):
            # A statement may span lines: everything up to its closing bracket goes.
            in_statement = not line.rstrip().endswith("]") and line.lstrip().startswith("[SQL:")
            continue
        if in_statement:
            in_statement = not line.rstrip().endswith("]")
            continue
        kept.append(_DB_ERROR_LINE.sub(r"\1: details withheld", line))
    return "\n".join(kept)


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    following = match.string[match.end():match.end() + 1]
    if len(digits) < 7 or any(pattern.fullmatch(text) for pattern in _NOT_PHONES):
        return text
    if not text.startswith("+"):
        if following and (following.isalnum() or following in "_-/"):
            return text  # part of an id or a path: race-00000000000014, /tmp/12345678/x
        if not re.search(r"[\s().\-]", text) and not 9 <= len(digits) <= 15:
            return text  # a bare number too short or too long to be a phone: counts, ids, timestamps
    return ("+" if text.startswith("+") else "") + "*" * (len(digits) - 2) + digits[-2:]


def mask_text(text: str) -> str:
    """Mask every email and phone number inside a string, and the values a database error quotes."""
    text = _without_statement_values(text)
    text = EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return PHONE_RE.sub(_mask_phone, text)


def _mask_value(key: str, value: Any) -> Any:
    if (key in CONTENT_KEYS or key in PERSONAL_KEYS) and isinstance(value, str):
        return f"<{len(value)} chars>"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_personal_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask phones, emails and message bodies in every field."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_value(key, value)
    return event_dict


class LibraryLogBridge(logging.Handler):
    """Sends the stdlib loggers' records (aiohttp, asyncio, SQLAlchemy) through structlog and its masking.

    A library's exception is logged by its type alone: aiohttp's "Error handling
    request" carries the offending header bytes in its exception text.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = type(record.exc_info[1]).__name__
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:  # a logging failure must not break the caller
            self.handleError(record)


def configure_logging(level: str = "info", *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Set up structlog (and the stdlib loggers it feeds) once per process."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            mask_personal_data,
            # After masking, so the time stamp is not mistaken for a phone number.
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, LibraryLogBridge)]:
        root.removeHandler(handler)
    root.addHandler(LibraryLogBridge())
    # Libraries speak only when something is wrong; the hub's own loggers follow `level`.
    root.setLevel(logging.WARNING)
