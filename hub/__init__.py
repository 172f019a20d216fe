"""Notification Hub: the public surface plugins import from.

Plugins use only what is exported here (`from hub import hookimpl, ...`),
never the core's internal modules, and reach the running hub only through
`HubPort`, the interface every hook receives. Importing this package is
light: the database engine, the CLI and the HTTP server load only when a
name that needs them (`run_with_hub`, `with_open_hub`, `Hub`) is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.appointment_input import AppointmentInput
from hub.channels import Channel, Delivery, Health, OutboundMessage
from hub.contact_view import ContactView, IdentityView, MessageView, NotificationView
from hub.errors import ChannelError, HubError, PermanentError, TemplateError, TransientError, UnknownContact, UnknownTenant
from hub.header_text import UnsafeHeader, header_text
from hub.events import (
    AppointmentEvent,
    AppointmentRef,
    ContactRef,
    Conversation,
    DeferredEvent,
    DeliveryStatus,
    DeliveryStatusEvent,
    IdentityRef,
    InboundMessage,
    InboxEvent,
    OptOutEvent,
    ReceivedMessage,
)
from hub.notifications import NotificationRequest
from hub.phones import WHATSAPP_ID, InvalidAddress, is_whatsapp_id, normalize_address, normalize_email, normalize_phone
from hub.plugins import hookimpl
from hub.request_body import parse_json
from hub.port import AppointmentUpdate, HubPort, Job, TenantProfile
from hub.business import BusinessProfile, Service
from hub.responders import ContactDetails, ContextSection, ConversationMessage, Reply, Tool
from hub.settings import PluginSettings, ProviderSettings

if TYPE_CHECKING:
    from hub.cli import hub_from_context, run_with_hub, with_open_hub
    from hub.core import Hub

_LAZY = {
    "Hub": "hub.core",
    "hub_from_context": "hub.cli",
    "run_with_hub": "hub.cli",
    "with_open_hub": "hub.cli",
}


def __getattr__(name: str) -> Any:
    # Names whose modules pull in the engine or the CLI load on first use, not on `import hub`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hub' has no attribute {name!r}")


__all__ = [
    "AppointmentEvent",
    "AppointmentInput",
    "AppointmentRef",
    "AppointmentUpdate",
    "BusinessProfile",
    "Channel",
    "ChannelError",
    "ContactDetails",
    "ContactRef",
    "ContactView",
    "ContextSection",
    "Conversation",
    "ConversationMessage",
    "DeferredEvent",
    "Delivery",
    "DeliveryStatus",
    "DeliveryStatusEvent",
    "Health",
    "Hub",
    "HubError",
    "HubPort",
    "IdentityRef",
    "IdentityView",
    "InboundMessage",
    "InboxEvent",
    "InvalidAddress",
    "Job",
    "MessageView",
    "NotificationView",
    "NotificationRequest",
    "OptOutEvent",
    "OutboundMessage",
    "PermanentError",
    "PluginSettings",
    "ProviderSettings",
    "ReceivedMessage",
    "Service",
    "Reply",
    "TemplateError",
    "TenantProfile",
    "Tool",
    "TransientError",
    "UnknownContact",
    "UnknownTenant",
    "UnsafeHeader",
    "WHATSAPP_ID",
    "header_text",
    "hookimpl",
    "is_whatsapp_id",
    "hub_from_context",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
    "parse_json",
    "run_with_hub",
    "with_open_hub",
]
