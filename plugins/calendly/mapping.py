"""From Calendly's invitee (webhook payload or API resource) to the hub's `AppointmentInput`.

Pure functions: the webhook handler (which wraps the input in an
`AppointmentEvent`) and `hub calendly sync` (which upserts it directly)
share them, so a booking looks the same whichever way it arrived.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub import AppointmentInput, InvalidAddress, normalize_email, normalize_phone

SOURCE = "calendly"

INVITEE_CREATED = "invitee.created"
INVITEE_CANCELED = "invitee.canceled"
NO_SHOW_CREATED = "invitee_no_show.created"
NO_SHOW_DELETED = "invitee_no_show.deleted"
HANDLED_EVENTS: tuple[str, ...] = (INVITEE_CREATED, INVITEE_CANCELED, NO_SHOW_CREATED, NO_SHOW_DELETED)

# Column sizes of the appointments table: a longer vendor value must not fail the event.
_SERVICE_MAX = 200
_ADDRESS_MAX = 320
# Location types whose `location` is the invitee's own phone number (the host calls them).
_INVITEE_PHONE_LOCATIONS = frozenset({"outbound_call"})


class Unmappable(ValueError):
    """The invitee lacks what an appointment needs (its URI or the event's start)."""


def status_for(event_name: str, invitee: Mapping[str, Any]) -> str | None:
    """The appointment status a webhook event means, or None when it must change nothing.

    The canceled half of a reschedule (`rescheduled: true`) changes nothing:
    the created half names it in `old_invitee` and moves the appointment,
    whichever of the two arrives first.
    """
    if event_name == INVITEE_CREATED:
        return "scheduled"
    if event_name == INVITEE_CANCELED:
        return None if invitee.get("rescheduled") is True else "canceled"
    if event_name == NO_SHOW_CREATED:
        return "no_show"
    if event_name == NO_SHOW_DELETED:
        return "canceled" if invitee.get("status") == "canceled" else "scheduled"
    return None


def booking_from_invitee(
    invitee: Mapping[str, Any],
    *,
    status: str,
    region: str | None,
    phone_questions: Iterable[str],
    scheduled_event: Mapping[str, Any] | None = None,
) -> AppointmentInput:
    """Map an invitee (with its `scheduled_event`, embedded or given) to an appointment; raise Unmappable."""
    uri = invitee.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise Unmappable("the invitee has no uri")
    event = scheduled_event if scheduled_event is not None else invitee.get("scheduled_event")
    if not isinstance(event, Mapping):
        raise Unmappable("the invitee has no scheduled_event")
    start_at = _moment(event.get("start_time"))
    if start_at is None:
        raise Unmappable("the scheduled event has no valid start_time")
    timezone = _timezone(invitee.get("timezone"))
    location, location_phone = _location(event.get("location"))
    cancellation = _mapping(invitee.get("cancellation")) or _mapping(event.get("cancellation"))
    raw_addresses: list[tuple[str, str]] = []
    if isinstance(invitee.get("email"), str):
        raw_addresses.append(("email", invitee["email"]))
    if isinstance(invitee.get("text_reminder_number"), str):
        raw_addresses.append(("phone", invitee["text_reminder_number"]))
    raw_addresses.extend(("phone", answer) for answer in phone_answers(invitee.get("questions_and_answers"), phone_questions))
    if location_phone:
        raw_addresses.append(("phone", location_phone))
    service = _text(event.get("name"))
    return AppointmentInput(
        source=SOURCE,
        external_id=uri.strip(),
        start_at=start_at,
        end_at=_moment(event.get("end_time")),
        status=status,
        timezone=timezone,
        addresses=usable_addresses(raw_addresses, region),
        contact_name=_name(invitee),
        # The invitee's zone becomes the contact's when it has none (the core never overwrites).
        contact_timezone=timezone,
        service=service[:_SERVICE_MAX] if service else None,
        location=location,
        event_type=_text(event.get("event_type")),
        cancel_url=_text(invitee.get("cancel_url")),
        reschedule_url=_text(invitee.get("reschedule_url")),
        reason=_text(cancellation.get("reason")) if status == "canceled" else None,
        booked_at=_moment(invitee.get("created_at")),
        replaces=_text(invitee.get("old_invitee")),
        data={"calendly_event": event["uri"]} if isinstance(event.get("uri"), str) else {},
    )


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a question: "Teléfono móvil" -> "telefono movil"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def is_phone_question(question: str, phone_questions: Iterable[str]) -> bool:
    """Whether a booking-form question asks for a phone number (any configured text, as a substring)."""
    folded = fold(question)
    return any(needle and needle in folded for needle in (fold(text) for text in phone_questions))


def phone_answers(answers: Any, phone_questions: Iterable[str]) -> list[str]:
    """The answers given to phone questions, in form order."""
    if not isinstance(answers, list):
        return []
    questions = tuple(phone_questions)
    ordered = sorted(
        (a for a in answers if isinstance(a, Mapping)),
        key=_position,
    )
    return [
        a["answer"] for a in ordered
        if isinstance(a.get("question"), str) and isinstance(a.get("answer"), str) and a["answer"].strip()
        and is_phone_question(a["question"], questions)
    ]


def usable_addresses(raw: Iterable[tuple[str, str]], region: str | None) -> tuple[tuple[str, str], ...]:
    """Normalised, de-duplicated addresses; ones the core could not store are left out.

    The core raises on a bad address inside the inbox worker, which would
    fail (and retry) the whole booking over a typo in a form field.
    """
    kept: list[tuple[str, str]] = []
    for kind, value in raw:
        try:
            key = normalize_email(value) if kind == "email" else normalize_phone(value, region)
        except InvalidAddress:
            continue
        if len(key) <= _ADDRESS_MAX and (kind, key) not in kept:
            kept.append((kind, key))
    return tuple(kept)


def _name(invitee: Mapping[str, Any]) -> str | None:
    name = _text(invitee.get("name"))
    if name:
        return name
    parts = [_text(invitee.get(key)) for key in ("first_name", "last_name")]
    return " ".join(p for p in parts if p) or None


def _location(value: Any) -> tuple[str | None, str | None]:
    """(what to show as the place, the invitee's phone number when the host calls them)."""
    location = _mapping(value)
    if not location:
        return None, None
    if location.get("type") in _INVITEE_PHONE_LOCATIONS:
        return None, _text(location.get("location"))
    # Video meetings carry a join_url; physical, phone-in and custom places a `location` text.
    return _text(location.get("join_url")) or _text(location.get("location")), None


def _moment(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # Calendly's times are UTC
    return moment.astimezone(dt.UTC)


def _timezone(value: Any) -> str | None:
    # A zone the hub cannot load would fail reminder planning for the whole booking.
    name = _text(value)
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return name


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _position(answer: Mapping[str, Any]) -> int:
    """Where a question stands on the booking form (0 when Calendly gives none)."""
    position = answer.get("position")
    return position if isinstance(position, int) else 0
