"""What a caller asks the outbox to send: the request shape shared by the API, the CLI, plugins and the core."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NotificationRequest:
    """What to send: to a contact (or an address, linked to its contact), when, and how."""

    kind: str
    contact_id: int | None = None
    address: str | None = None
    """"+34600123456", "whatsapp:+34600123456" or "ana@example.com" when there is no contact id."""
    data: dict[str, Any] = field(default_factory=dict)
    send_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    channel_order: tuple[str, ...] = ()
    """Mediums or channel names; empty means the tenant's order."""
    idempotency_key: str | None = None
    template: str | None = None
    appointment_id: int | None = None
    locale: str | None = None
