"""Tools responders may call for a tenant: free slots, a booking, a one-off booking link, a cancellation.

`calendly_book` books through the Scheduling API (`POST /invitees`). Where
the tenant's plan refuses it (403) or its rate limit is reached (429), it
answers with a single-use scheduling link for that event type, opened on the
slot's day, for the client to finish the booking. A booking is told to the
hub at once (`upsert_appointment`: the confirmation and reminders follow
without waiting for the webhook, which then changes nothing); with
`replaces`, the old booking is cancelled on Calendly and the hub moves the
old appointment to the new time: one move, not a cancellation and a booking.

These tools act on whatever identifiers they are given: a responder must
hand a model only versions bound to the client it answers (the OpenAI
responder does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from hub import Tool

from .client import CalendlyClient, CalendlyError, event_uuid
from .mapping import booking_from_invitee, fold
from .runtime import CalendlyPlugin

MAX_AVAILABILITY_DAYS = 31
"""A longer range is refused: it would cost a request per week and a wall of slots."""

_EVENT_TYPE = {
    "type": "string",
    "description": "The event type: its Calendly URI, or its name or slug as `hub calendly check` lists them.",
}


def tools_for(plugin: CalendlyPlugin, tenant: str) -> list[Tool]:
    """The tenant's Calendly tools (each with JSON-schema parameters and an async callable)."""

    async def availability(event_type: str, start: str, end: str) -> dict[str, Any]:
        client = plugin.client(tenant)
        zone = ZoneInfo((await plugin.hub.tenant(tenant)).timezone)
        lower, upper = parse_range(start, end, zone, now=dt.datetime.now(dt.UTC))
        uri = await resolve_event_type(plugin, tenant, client, event_type)
        slots = await client.available_times(uri, lower, upper)
        return {
            "event_type": uri,
            "timezone": zone.key,
            "slots": [
                {
                    "start": slot.get("start_time"),
                    "local_start": _local(slot.get("start_time"), zone),
                    "scheduling_url": slot.get("scheduling_url"),
                    "invitees_remaining": slot.get("invitees_remaining"),
                }
                for slot in slots if slot.get("status", "available") == "available"
            ],
        }

    async def scheduling_link(event_type: str) -> dict[str, Any]:
        client = plugin.client(tenant)
        uri = await resolve_event_type(plugin, tenant, client, event_type)
        link = await client.create_scheduling_link(uri)
        return {"event_type": uri, "booking_url": link.get("booking_url")}

    async def book(
        event_type: str, start: str, name: str, email: str, phone: str = "", timezone: str = "", replaces: str = "",
    ) -> dict[str, Any]:
        client = plugin.client(tenant)
        profile = await plugin.hub.tenant(tenant)
        settings = plugin.require_settings(tenant)
        chosen = await find_event_type(plugin, tenant, client, event_type)
        moment = _bound(start, ZoneInfo(profile.timezone), end_of_day=False)
        try:
            invitee = await client.create_invitee(
                event_type=chosen["uri"], start_time=moment, email=email, name=name,
                timezone=timezone or profile.timezone, text_reminder_number=phone or None,
            )
        except CalendlyError as exc:
            if exc.status not in (403, 429):
                raise
            link = await client.create_scheduling_link(chosen["uri"])
            local = moment.astimezone(ZoneInfo(profile.timezone))
            url = f"{link.get('booking_url')}?month={local:%Y-%m}&date={local:%Y-%m-%d}"
            return {"booked": False, "booking_url": url, "start": moment.isoformat(),
                    "why": "the plan does not allow booking through the API" if exc.status == 403 else "Calendly's booking limit was reached"}
        duration = chosen.get("duration")
        event = {
            "uri": invitee.get("event"), "start_time": moment.isoformat(), "name": chosen.get("name"), "event_type": chosen["uri"],
            "end_time": (moment + dt.timedelta(minutes=duration)).isoformat() if isinstance(duration, int) else None,
        }
        data = booking_from_invitee(
            invitee, status="scheduled", region=profile.default_region, phone_questions=settings.phone_questions, scheduled_event=event,
        )
        old_canceled = None
        if replaces:
            data = dataclasses.replace(data, replaces=replaces)
        update = await plugin.hub.upsert_appointment(tenant, data)
        if replaces:
            try:
                await client.cancel_event(event_uuid(replaces), "moved to another time by the client")
                old_canceled = True
            except (CalendlyError, ValueError):
                old_canceled = False  # the hub moved it; the old Calendly event needs a person
        return {
            "booked": True, "invitee": invitee.get("uri"), "appointment_id": update.appointment.id, "change": update.change,
            "start": moment.isoformat(), "old_canceled": old_canceled,
        }

    async def cancel(event: str, reason: str = "") -> dict[str, Any]:
        client = plugin.client(tenant)
        uuid = event_uuid(event)
        result = await client.cancel_event(uuid, reason.strip() or None)
        return {"canceled": True, "event": uuid, "reason": result.get("reason"), "canceled_by": result.get("canceled_by")}

    return [
        Tool(
            "calendly_availability",
            "Free start times of a Calendly event type between two dates (in the business's time zone).",
            {
                "type": "object",
                "properties": {
                    "event_type": _EVENT_TYPE,
                    "start": {"type": "string", "description": "First day (YYYY-MM-DD) or moment (ISO 8601 with offset)."},
                    "end": {"type": "string", "description": f"Last day, included (YYYY-MM-DD), or moment; at most {MAX_AVAILABILITY_DAYS} days after start."},
                },
                "required": ["event_type", "start", "end"],
                "additionalProperties": False,
            },
            availability,
        ),
        Tool(
            "calendly_scheduling_link",
            "A single-use Calendly booking link for an event type, to send to the client.",
            {
                "type": "object",
                "properties": {"event_type": _EVENT_TYPE},
                "required": ["event_type"],
                "additionalProperties": False,
            },
            scheduling_link,
        ),
        Tool(
            "calendly_book",
            "Book an available start time of a Calendly event type for a client (after their explicit yes); "
            "falls back to a single-use booking link when Calendly refuses the booking (plan or rate limit).",
            {
                "type": "object",
                "properties": {
                    "event_type": _EVENT_TYPE,
                    "start": {"type": "string", "description": "The start time, one of calendly_availability's (ISO 8601 with offset)."},
                    "name": {"type": "string", "description": "The client's name."},
                    "email": {"type": "string", "description": "The client's email (Calendly requires one)."},
                    "phone": {"type": "string", "description": "The client's phone in E.164, for Calendly's text reminders."},
                    "timezone": {"type": "string", "description": "The client's IANA time zone; default the business's."},
                    "replaces": {"type": "string", "description": "To move a booking: its external id (invitee URI), cancelled once the new one is made."},
                },
                "required": ["event_type", "start", "name", "email"],
                "additionalProperties": False,
            },
            book,
        ),
        Tool(
            "calendly_cancel",
            "Cancel a Calendly scheduled event (for every invitee of it); Calendly tells the invitees.",
            {
                "type": "object",
                "properties": {
                    "event": {
                        "type": "string",
                        "description": "The scheduled event's uuid or URI, or an invitee URI (the appointment's external id).",
                    },
                    "reason": {"type": "string", "description": "Why, shown to the invitee."},
                },
                "required": ["event"],
                "additionalProperties": False,
            },
            cancel,
        ),
    ]


def parse_range(start: str, end: str, zone: ZoneInfo, *, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[lower, upper) in UTC from two dates (the end day included) or moments; never before now."""
    lower = _bound(start, zone, end_of_day=False)
    upper = _bound(end, zone, end_of_day=True)
    # Calendly only answers for the future; a range starting today starts now.
    lower = max(lower, now.astimezone(dt.UTC))
    if upper <= lower:
        raise ValueError("the range has no future time in it: end must be after start and after now")
    if upper - lower > dt.timedelta(days=MAX_AVAILABILITY_DAYS):
        raise ValueError(f"the range is longer than {MAX_AVAILABILITY_DAYS} days")
    return lower, upper


def _bound(text: str, zone: ZoneInfo, *, end_of_day: bool) -> dt.datetime:
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            if end_of_day:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or ISO 8601 moment: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.UTC)


def _local(value: Any, zone: ZoneInfo) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).astimezone(zone).isoformat()
    except ValueError:
        return None


async def resolve_event_type(plugin: CalendlyPlugin, tenant: str, client: CalendlyClient, value: str) -> str:
    """An event type URI from a URI, a uuid, a slug or a name (accents and case ignored)."""
    text = value.strip()
    if text.startswith(("http://", "https://")):
        return text
    types = await list_event_types(plugin, tenant, client)
    wanted = fold(text)
    for match in (
        lambda t: t.get("uri", "").rstrip("/").rsplit("/", 1)[-1] == text,
        lambda t: t.get("slug") == text,
        lambda t: fold(str(t.get("name") or "")) == wanted,
    ):
        found = [t for t in types if match(t)]
        if len(found) == 1:
            return str(found[0]["uri"])
    names = ", ".join(sorted(str(t.get("name")) for t in types)) or "none"
    raise ValueError(f"no single Calendly event type matches {value!r} (event types: {names})")


async def find_event_type(plugin: CalendlyPlugin, tenant: str, client: CalendlyClient, value: str) -> dict[str, Any]:
    """The event type (its resource: uri, name, duration...) named by a URI, uuid, slug or name."""
    uri = await resolve_event_type(plugin, tenant, client, value)
    types = await list_event_types(plugin, tenant, client)
    return next((t for t in types if t.get("uri") == uri), {"uri": uri})


async def list_event_types(plugin: CalendlyPlugin, tenant: str, client: CalendlyClient) -> list[dict[str, Any]]:
    """The active event types of the tenant's organisation, or of its user when not an admin there."""
    user, organization = await plugin.owner(tenant, client)
    try:
        return await client.event_types(organization=organization)
    except CalendlyError as exc:
        if exc.status != 403:
            raise
        return await client.event_types(user=user)
