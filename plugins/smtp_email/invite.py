"""The .ics invite attached to confirmations and reschedules (iMIP METHOD:REQUEST).

The dispatcher passes the appointment as `message.data["appointment"]`, a dict
with `id` (or `external_id`), `start`, `end` (ISO 8601 with an offset; `end`
may be None), `service`, `location`, `timezone`, `cancel_url`,
`reschedule_url` and `sequence`. The UID is the same for every email about
one appointment and SEQUENCE grows with each change, so a calendar updates
the event it already has instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub import PermanentError

PRODID = "-//Notification Hub//smtp_email//EN"
DEFAULT_LENGTH = dt.timedelta(minutes=30)
INVITE_KINDS = frozenset({"confirmation", "reschedule"})


def wants_invite(kind: str, data: Mapping[str, Any]) -> bool:
    """Whether a message of this kind, with this data, carries an invite."""
    appointment = data.get("appointment")
    return kind in INVITE_KINDS and isinstance(appointment, Mapping) and bool(appointment.get("start"))


def appointment_uid(appointment: Mapping[str, Any], domain: str) -> str:
    """`appointment-<id>@<domain>`: stable across every email about the appointment."""
    key = appointment.get("id") or appointment.get("external_id")
    if key is None:
        # Without an id nothing ties two emails together; a fresh UID at least never collides.
        return f"appointment-{uuid.uuid4().hex}@{domain}"
    return f"appointment-{key}@{domain}"


def _utc(value: Any, zone_name: str | None, key: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise PermanentError(f"appointment {key} is not an ISO 8601 time", code="bad_appointment") from None
    if moment.tzinfo is None:
        # A time without an offset is only meaningful in the appointment's own zone.
        try:
            zone = ZoneInfo(zone_name) if zone_name else None
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        if zone is None:
            raise PermanentError(f"appointment {key} has no UTC offset and no known timezone", code="bad_appointment")
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.timezone.utc)


def build_invite(
    appointment: Mapping[str, Any],
    *,
    domain: str,
    organizer: str,
    organizer_name: str | None,
    attendee: str,
    summary: str,
    now: dt.datetime,
) -> bytes:
    """The VCALENDAR text of a METHOD:REQUEST invite for one appointment."""
    # Here, not at the top: only appointment emails need it, and every `hub` command loads the plugin.
    from icalendar import Calendar, Event, vCalAddress

    zone_name = appointment.get("timezone")
    start = _utc(appointment["start"], zone_name, "start")
    end = _utc(appointment["end"], zone_name, "end") if appointment.get("end") else start + DEFAULT_LENGTH
    if end <= start:
        raise PermanentError("appointment ends before it starts", code="bad_appointment")

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "REQUEST")

    event = Event()
    event.add("uid", appointment_uid(appointment, domain))
    event.add("dtstamp", now.astimezone(dt.timezone.utc))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    if appointment.get("location"):
        event.add("location", str(appointment["location"]))
    links = [
        f"{label}: {appointment[key]}"
        for label, key in (("Reschedule", "reschedule_url"), ("Cancel", "cancel_url"))
        if appointment.get(key)
    ]
    if links:
        event.add("description", "\n".join(links))
    organizer_address = vCalAddress(f"mailto:{organizer}")
    if organizer_name:
        organizer_address.params["cn"] = organizer_name
    event.add("organizer", organizer_address)
    attendee_address = vCalAddress(f"mailto:{attendee}")
    attendee_address.params["role"] = "REQ-PARTICIPANT"
    # The booking is already made: no accept/decline replies should go to the sender's mailbox.
    attendee_address.params["rsvp"] = "FALSE"
    event.add("attendee", attendee_address)
    try:
        sequence = int(appointment.get("sequence") or 0)
    except (TypeError, ValueError):
        raise PermanentError("appointment sequence is not a number", code="bad_appointment") from None
    event.add("sequence", sequence)
    event.add("status", "CONFIRMED")
    calendar.add_component(event)
    return calendar.to_ical()
