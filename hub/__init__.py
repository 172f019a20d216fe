"""Notification Hub: the public surface plugins import from.

Plugins use only what is exported here (`from hub import hookimpl, ...`),
never the core's internal modules.
"""

from hub.appointments import AppointmentInput
from hub.channels import Channel, Delivery, Health, OutboundMessage
from hub.cli import hub_from_context, with_open_hub
from hub.config import PluginSettings, ProviderSettings
from hub.core import Hub
from hub.errors import ChannelError, HubError, PermanentError, TransientError
from hub.events import (
    AppointmentEvent,
    AppointmentRef,
    ContactRef,
    Conversation,
    DeliveryStatus,
    DeliveryStatusEvent,
    IdentityRef,
    InboundMessage,
    InboxEvent,
    OptOutEvent,
    ReceivedMessage,
)
from hub.phones import WHATSAPP_ID, InvalidAddress, is_whatsapp_id, normalize_address, normalize_email, normalize_phone
from hub.outbox import NotificationRequest
from hub.plugins import hookimpl
from hub.responders import ContextSection, Reply, Tool

__all__ = [
    "AppointmentEvent",
    "AppointmentInput",
    "AppointmentRef",
    "Channel",
    "ChannelError",
    "ContactRef",
    "ContextSection",
    "Conversation",
    "Delivery",
    "DeliveryStatus",
    "DeliveryStatusEvent",
    "Health",
    "Hub",
    "HubError",
    "IdentityRef",
    "InboundMessage",
    "InboxEvent",
    "InvalidAddress",
    "NotificationRequest",
    "OptOutEvent",
    "OutboundMessage",
    "PermanentError",
    "PluginSettings",
    "ProviderSettings",
    "ReceivedMessage",
    "Reply",
    "Tool",
    "TransientError",
    "WHATSAPP_ID",
    "hookimpl",
    "is_whatsapp_id",
    "hub_from_context",
    "with_open_hub",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
]
