"""Typed events that sources turn webhooks into, and the views hooks receive.

A plugin's webhook handler builds one of the `InboxEvent` classes and hands it
to `hub.accept(...)`; the core stores it, answers the webhook, and a
worker processes it later. Events are plain dataclasses so they survive a
round trip through the `inbox_events.payload` JSON column.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hub.appointment_input import AppointmentInput


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True, kw_only=True)
class InboxEvent:
    """Base class: one verified webhook, normalised; `kind` routes it to its processor."""

    kind: ClassVar[str] = ""
    tenant: str

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe dict stored in `inbox_events.payload`."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> InboxEvent:
        """Rebuild the event from what `to_payload` stored."""
        values = dict(payload)
        for f in dataclasses.fields(cls):
            if f.type in ("dt.datetime", "dt.datetime | None") and isinstance(values.get(f.name), str):
                values[f.name] = dt.datetime.fromisoformat(values[f.name])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class InboundMessage(InboxEvent):
    """A person wrote to a tenant on some medium (WhatsApp, SMS, email, chat)."""

    kind: ClassVar[str] = "message.received"
    medium: str
    channel: str
    sender: str
    """The sender's address as the vendor sent it (`whatsapp:+52155...`); the core normalises it."""
    sender_kind: str = "phone"
    """Identity kind of `sender`: "phone", "email", "whatsapp_id", or a vendor id kind such as "chatwoot"."""
    linked_addresses: list[list[str]] = field(default_factory=list)
    """[kind, raw address] pairs the vendor itself says are the sender's too (WhatsApp's `WaId`
    phone beside a business-scoped id): linked to the same contact as certain evidence."""
    body: str = ""
    provider_id: str | None = None
    profile_name: str | None = None
    media: list[dict[str, str]] = field(default_factory=list)
    received_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class DeliveryStatusEvent(InboxEvent):
    """A provider reported what happened to a message the hub sent."""

    kind: ClassVar[str] = "delivery.status"
    channel: str
    provider_id: str
    status: str
    """One of: queued, sent, delivered, read, undelivered, failed."""
    error_code: str | None = None
    error_message: str | None = None
    reported_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class AppointmentEvent(InboxEvent):
    """A booking system created, moved or canceled an appointment: `AppointmentEvent(tenant=..., appointment=AppointmentInput(...))`."""

    kind: ClassVar[str] = "appointment.changed"
    appointment: AppointmentInput

    def to_payload(self) -> dict[str, Any]:
        """The tenant beside the appointment's own fields, flat (the document the inbox has always stored)."""
        return {"tenant": self.tenant, **self.appointment.to_json()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AppointmentEvent:
        """Rebuild the event from what `to_payload` stored."""
        fields = dict(payload)
        tenant = fields.pop("tenant")
        return cls(tenant=tenant, appointment=AppointmentInput.from_json(fields))


@dataclass(frozen=True, kw_only=True)
class OptOutEvent(InboxEvent):
    """A person asked to stop (or start again) receiving messages on one medium."""

    kind: ClassVar[str] = "contact.opt_out"
    address_kind: str
    address: str
    medium: str
    opted_out: bool = True
    confirm: bool = False
    """Send the one opt-out confirmation once applied (providers such as Twilio SMS confirm by themselves)."""


@dataclass(frozen=True, kw_only=True)
class DeferredEvent(InboxEvent):
    """A verified webhook a plugin completes later, in the inbox worker (it needs a vendor call first).

    The plugin's `complete_event` turns it into the events to process; when
    that fails, the inbox retries the event with its usual backoff.
    """

    kind: ClassVar[str] = "plugin.deferred"
    plugin: str
    name: str
    """What the vendor called the webhook (Calendly's `invitee.created`)."""
    payload: dict[str, Any]
    """The webhook's body, as verified."""


INBOX_EVENT_TYPES: tuple[type[InboxEvent], ...] = (
    InboundMessage, DeliveryStatusEvent, AppointmentEvent, OptOutEvent, DeferredEvent,
)


@dataclass(frozen=True)
class ReceivedMessage:
    """What `on_message_received` and `respond_to_message` see: a recorded inbound message."""

    tenant: str
    contact_id: int
    conversation_id: int
    message_id: int
    medium: str
    channel: str
    address: str
    body: str
    media: list[dict[str, str]]
    profile_name: str | None
    address_kind: str = "phone"
    """The identity kind of `address` ("phone", "whatsapp_id", "email"...)."""


@dataclass(frozen=True)
class Conversation:
    """A contact's thread on one medium, as responders see it."""

    id: int
    tenant: str
    contact_id: int
    medium: str
    channel: str
    last_inbound_at: dt.datetime | None
    handler: str = "bot"
    """"bot" while the responders answer it, "human" once it was handed off (see `HubPort.hand_off`)."""


@dataclass(frozen=True)
class DeliveryStatus:
    """What `on_delivery_status` sees: a status applied to a recorded outbound message."""

    tenant: str
    channel: str
    provider_id: str
    status: str
    message_id: int | None
    notification_id: int | None
    error_code: str | None = None
    error_message: str | None = None
    contact_id: int | None = None
    """The contact the message went to, when the hub knows it."""


@dataclass(frozen=True)
class ContactRef:
    """A contact as hooks see it."""

    id: int
    tenant: str
    name: str | None
    locale: str | None
    timezone: str | None


@dataclass(frozen=True)
class IdentityRef:
    """One address of a contact: (kind, value), e.g. ("phone", "+34600123456")."""

    id: int
    kind: str
    value: str


@dataclass(frozen=True)
class AppointmentRef:
    """An appointment as hooks see it; times are timezone-aware UTC."""

    id: int
    tenant: str
    contact_id: int | None
    source: str
    external_id: str
    start_at: dt.datetime
    end_at: dt.datetime | None
    timezone: str | None
    status: str
    service: str | None = None
    location: str | None = None
    confirmed_at: dt.datetime | None = None
    """When the client confirmed it (answering a reminder); None until then, and again after a move."""
