"""A read model of one contact for agents' panels: identities and consent, appointments, reminders, timeline.

Plain frozen dataclasses, light to import (plugins receive them through the
port's `contact_view`); hub/contact_reads.py fills them from the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from hub.events import AppointmentRef



@dataclass(frozen=True)
class IdentityView:
    """One address of the contact and the mediums it opted out of."""

    kind: str
    value: str
    opted_out: tuple[str, ...]


@dataclass(frozen=True)
class NotificationView:
    """One notification (a reminder, a confirmation...) with its delivery state."""

    id: int
    kind: str
    template: str
    status: str
    due_at: dt.datetime
    sent_at: dt.datetime | None
    attempts: int
    """Delivery attempts recorded for it, over every channel."""
    channel: str | None
    last_error: str | None
    appointment_id: int | None
    data: dict[str, Any]
    """What the template was given beside the contact and appointment (resending reuses it)."""


@dataclass(frozen=True)
class MessageView:
    """One message in or out, on any medium."""

    id: int
    direction: str
    """"in" or "out"."""
    medium: str
    channel: str
    body: str
    status: str
    at: dt.datetime
    notification_id: int | None


@dataclass(frozen=True)
class ContactView:
    """Everything an agent panel shows about one contact."""

    id: int
    tenant: str
    name: str | None
    locale: str | None
    timezone: str | None
    identities: tuple[IdentityView, ...]
    appointments: tuple[AppointmentRef, ...]
    """Oldest first, as hooks see appointments."""
    notifications: tuple[NotificationView, ...]
    """Newest first (by due time), the last 50."""
    timeline: tuple[MessageView, ...]
    """Newest first, the last 50 messages across mediums."""

    @property
    def no_shows(self) -> int:
        """How many appointments were marked no-show."""
        return sum(1 for a in self.appointments if a.status == "no_show")

    def upcoming(self, now: dt.datetime) -> list[AppointmentRef]:
        """Scheduled appointments that have not started, soonest first."""
        return [a for a in self.appointments if a.status == "scheduled" and a.start_at >= now]

    def past(self, now: dt.datetime) -> list[AppointmentRef]:
        """Appointments that started before `now` (any status), most recent first."""
        return sorted((a for a in self.appointments if a.start_at < now), key=lambda a: a.start_at, reverse=True)

    def addresses(self, kind: str) -> list[str]:
        """The contact's addresses of one kind ("phone", "email", "chatwoot"...)."""
        return [i.value for i in self.identities if i.kind == kind]
