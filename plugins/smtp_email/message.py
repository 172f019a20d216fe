"""Turning an `OutboundMessage` into the MIME email the server receives.

Layout: text/plain alone; multipart/alternative (text, html) when there is
html; both wrapped in multipart/mixed when there are attachments (the .ics
invite and `message.attachments`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from hub import InvalidAddress, OutboundMessage, PermanentError, UnsafeHeader, header_text, normalize_email

from .invite import build_invite, wants_invite
from .settings import Settings

ICS_TYPE = "text/calendar"


def message_id(message: OutboundMessage, settings: Settings) -> str:
    """`<notification-<id>.<tenant>@<domain>>`: the same for every attempt at one notification.

    A retried send then carries the Message-ID of the first attempt, so a
    receiving server or client can tell a duplicate from a second email.
    """
    if message.notification_id is None:
        return email.utils.make_msgid(domain=settings.domain)
    return f"<notification-{message.notification_id}.{message.tenant}@{settings.domain}>"


def recipient(message: OutboundMessage) -> str:
    """The recipient address, checked; PermanentError if it is not an email address."""
    try:
        return normalize_email(message.to)
    except InvalidAddress as exc:
        raise PermanentError(f"recipient is not an email address ({exc.reason})", code="invalid_address") from None


def _address(addr_spec: str, display_name: str | None = None) -> Address:
    local, _, domain = addr_spec.rpartition("@")
    return Address(display_name=display_name or "", username=local, domain=domain)


def build_message(message: OutboundMessage, settings: Settings, *, now: dt.datetime | None = None) -> EmailMessage:
    """The complete email for `message`; PermanentError when it can never be built."""
    if not message.subject or not message.subject.strip():
        raise PermanentError("an email needs a subject: the template gave none", code="no_subject")
    to = recipient(message)
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        # Every header value is decoded and checked first: the email package would decode an
        # encoded word holding CR LF into a header of the sender's choosing.
        subject = header_text(message.subject)
        from_name = header_text(settings.from_name) if settings.from_name else None
    except UnsafeHeader as exc:
        raise PermanentError(f"the subject cannot be put in a header: it {exc}", code="unsafe_header") from None
    try:
        mail = EmailMessage()
        mail["From"] = _address(settings.from_address, from_name)
        mail["To"] = _address(to)
        if settings.reply_to:
            mail["Reply-To"] = _address(settings.reply_to)
        mail["Subject"] = subject
        mail["Date"] = email.utils.format_datetime(now)
        mail["Message-ID"] = message_id(message, settings)
        # Only the mailto form: an https one-click link (RFC 8058, with List-Unsubscribe-Post)
        # needs an endpoint on the hub that unsubscribes, and there is none yet.
        mail["List-Unsubscribe"] = f"<mailto:{settings.unsubscribe_address}?subject=unsubscribe>"
        mail.set_content(message.body)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        attachments = list(message.attachments)
        has_own_invite = any(_content_type(ctype)[0:2] == ("text", "calendar") for _, ctype, _ in attachments)
        if not has_own_invite and wants_invite(message.kind, message.data):
            invite = build_invite(
                message.data["appointment"],
                domain=settings.domain,
                organizer=settings.from_address,
                organizer_name=settings.from_name,
                attendee=to,
                summary=_summary(message.data),
                now=now,
            )
            attachments.insert(0, ("invite.ics", f"{ICS_TYPE}; method=REQUEST; charset=utf-8", invite))
        for filename, content_type, content in attachments:
            maintype, subtype, params = _content_type(content_type)
            mail.add_attachment(
                bytes(content), maintype=maintype, subtype=subtype, filename=filename, params=params
            )
    except (ValueError, TypeError, HeaderParseError) as exc:
        # The exception text may quote the content; the reason keeps to its type.
        raise PermanentError(f"cannot build the email: {type(exc).__name__}", code="bad_message") from None
    return mail


def _summary(data: dict[str, Any]) -> str:
    appointment = data.get("appointment") or {}
    tenant = data.get("tenant") or {}
    return str(appointment.get("service") or tenant.get("name") or "Appointment")


def _content_type(value: str) -> tuple[str, str, dict[str, str]]:
    """("text", "calendar", {"method": "REQUEST"}) from "text/calendar; method=REQUEST"."""
    kind, *rest = value.split(";")
    maintype, _, subtype = kind.strip().lower().partition("/")
    if not maintype or not subtype:
        maintype, subtype = "application", "octet-stream"
    params = {}
    for item in rest:
        key, sep, val = item.partition("=")
        if sep and key.strip():
            params[key.strip().lower()] = val.strip().strip('"')
    return maintype, subtype, params
