"""The one shape of an appointment as a booking system describes it: `AppointmentInput`.

The REST API parses its request body into it, booking sources map their
bookings into it (Calendly's webhooks and backfill), and `AppointmentEvent`
carries it through the inbox as the flat JSON of `to_json`: `[kind,
address]` lists and ISO 8601 times, the same document the inbox has always
stored. It imports nothing of the hub, so the event types and the plugin
surface can use it without the storage layer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

AppointmentStatus = Literal["scheduled", "canceled", "no_show"]
APPOINTMENT_STATUSES: tuple[str, ...] = get_args(AppointmentStatus)
_MOMENTS = ("start_at", "end_at", "booked_at")


@dataclass(frozen=True)
class AppointmentInput:
    """An appointment as a booking system describes it."""

    source: str
    external_id: str
    start_at: dt.datetime
    end_at: dt.datetime | None = None
    timezone: str | None = None
    status: str = "scheduled"
    """One of `APPOINTMENT_STATUSES`: "scheduled", "canceled", "no_show"."""
    addresses: tuple[tuple[str, str], ...] = ()
    """(kind, raw address) pairs of the person who booked: ("phone", "+34..."), ("email", "...")."""
    contact_name: str | None = None
    contact_locale: str | None = None
    contact_timezone: str | None = None
    service: str | None = None
    location: str | None = None
    event_type: str | None = None
    cancel_url: str | None = None
    reschedule_url: str | None = None
    reason: str | None = None
    """Why it was canceled, for the cancellation notice."""
    booked_at: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    confirm: bool = True
    """Send the booking confirmation when the appointment is new (a backfill of old bookings says no)."""
    replaces: str | None = None
    """External id of a booking this one replaces (a reschedule that the source books anew, as
    Calendly does): that appointment is moved to this time and takes this external id."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (addresses as [kind, address] lists, times in ISO 8601)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["addresses"] = [[kind, address] for kind, address in self.addresses]
        values["data"] = dict(self.data)
        for name in _MOMENTS:
            if values[name] is not None:
                values[name] = values[name].isoformat()
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> AppointmentInput:
        """Rebuild an input from `to_json`'s dict; raises TypeError naming a key it does not know."""
        fields = dict(values)
        fields["addresses"] = tuple((kind, address) for kind, address in fields.get("addresses") or ())
        for name in _MOMENTS:
            if isinstance(fields.get(name), str):
                fields[name] = dt.datetime.fromisoformat(fields[name])
        return cls(**fields)
