"""`hub calendly sync`: upcoming bookings made before the hub listened, through the same mapping as webhooks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client import CalendlyError
from .mapping import Unmappable, booking_from_invitee
from .runtime import CalendlyPlugin


@dataclass
class SyncReport:
    """What a backfill did: events read, and per invitee the upsert's change."""

    events: int = 0
    invitees: int = 0
    changes: Counter[str] = field(default_factory=Counter)
    without_contact: int = 0
    """Bookings stored without a usable email or phone: no notifications for them."""
    skipped: list[str] = field(default_factory=list)

    def summary(self, tenant: str) -> str:
        """One line for the operator."""
        counts = ", ".join(f"{self.changes[c]} {c}" for c in ("created", "rescheduled", "updated", "unchanged"))
        line = f"calendly sync for {tenant}: {self.events} upcoming events, {self.invitees} invitees: {counts}"
        if self.without_contact:
            line += f"; {self.without_contact} without an email or phone"
        if self.skipped:
            line += f"; {len(self.skipped)} skipped"
        return line


async def list_upcoming(plugin: CalendlyPlugin, tenant: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Active scheduled events starting after now (the organisation's, or the user's when not an admin)."""
    client = plugin.client(tenant)
    user, organization = await plugin.owner(tenant, client)
    try:
        return [event async for event in client.scheduled_events(organization=organization, min_start_time=now)]
    except CalendlyError as exc:
        if exc.status != 403:
            raise
        return [event async for event in client.scheduled_events(user=user, min_start_time=now)]


async def backfill(
    plugin: CalendlyPlugin, tenant: str, events: list[dict[str, Any]], *, progress: Callable[[int], None] | None = None,
) -> SyncReport:
    """Upsert every active invitee of these events; a second run changes nothing."""
    client = plugin.client(tenant)
    settings = plugin.require_settings(tenant)
    region = (await plugin.hub.tenant(tenant)).default_region
    report = SyncReport(events=len(events))
    for event in events:
        async for invitee in client.invitees(str(event.get("uri", ""))):
            report.invitees += 1
            try:
                booking = booking_from_invitee(
                    invitee, status="scheduled", region=region, phone_questions=settings.phone_questions, scheduled_event=event,
                )
            except Unmappable as exc:
                report.skipped.append(f"{invitee.get('uri')}: {exc}")
                continue
            # Bookings made before the hub was installed were confirmed by Calendly: reminders only.
            change = await plugin.hub.upsert_appointment(tenant, dataclasses.replace(booking, confirm=False))
            report.changes[change.change] += 1
            if change.appointment.contact_id is None:
                report.without_contact += 1
        if progress is not None:
            progress(1)
    return report
