"""What a channel is: the contract a plugin's `register_channels` objects fulfil."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Health:
    """The result of a `check()`: is this part up, and why not."""

    ok: bool
    detail: str = ""
    required: bool = True
    """A part that is not required reports its state without making /health 503."""


@dataclass(frozen=True)
class OutboundMessage:
    """A rendered message ready for a channel to send."""

    tenant: str
    to: str
    """The recipient's address in canonical form (E.164 phone or lower-case email)."""
    body: str
    kind: str = ""
    subject: str | None = None
    html: str | None = None
    notification_id: int | None = None
    locale: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(filename, content type, bytes) triples, e.g. an .ics invite."""
    last_inbound_at: dt.datetime | None = None
    """When the contact last wrote on this medium (the WhatsApp 24-hour rule)."""
    timezone: str | None = None
    """The time zone the message's times are shown in (the contact's, else the tenant's)."""


@dataclass(frozen=True)
class Delivery:
    """What a channel reports after handing a message to its provider."""

    provider_id: str | None
    status: str = "sent"
    """"sent" when the provider accepted it, "sandboxed" when sandbox mode recorded it instead."""
    detail: str = ""


@runtime_checkable
class Channel(Protocol):
    """A way to reach a contact. `medium` groups channels for fallback order.

    Raise `hub.TransientError` for failures worth retrying and
    `hub.PermanentError` for ones that should fall through to the next channel.
    """

    name: str
    """Unique across the hub, e.g. "twilio-whatsapp"."""
    medium: str
    """"whatsapp", "sms", "email" or "chatwoot"."""
    address_kind: str
    """Identity kind this channel sends to: "phone" or "email" or a vendor id kind. A channel that
    reaches one account by several kinds may also set `address_kinds` (a tuple, most preferred first)."""
    sandbox: bool

    async def send(self, message: OutboundMessage) -> Delivery: ...

    async def check(self) -> Health: ...
