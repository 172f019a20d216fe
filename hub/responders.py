"""What responders and tool providers hand back to the core."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tool:
    """A function a responder may call: a name, JSON-schema parameters and an async callable."""

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A responder's answer to an inbound message; `handoff` asks a human to take over."""

    body: str
    handoff: bool = False
    responder: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextSection:
    """One titled block of what an agent should know about a contact."""

    title: str
    lines: list[str]


@dataclass(frozen=True)
class ConversationMessage:
    """One message of a conversation as responders read it (`HubPort.recent_messages`)."""

    id: int
    direction: str
    """"in" (the contact wrote) or "out" (the hub sent it)."""
    body: str
    at: dt.datetime
    kind: str | None = None
    """For an outbound message, the notification kind that sent it: "reminder", "confirmation", "reply"..."""
    appointment_id: int | None = None
    """For an outbound message about an appointment (a reminder), which one."""


@dataclass(frozen=True)
class ContactDetails:
    """A contact with its addresses, as responders need it to book for them (`HubPort.contact_details`)."""

    id: int
    tenant: str
    name: str | None
    locale: str | None
    timezone: str | None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    opted_out: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Address -> the mediums it opted out of."""
