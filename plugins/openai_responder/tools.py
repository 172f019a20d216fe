"""The tools the model may call: bound to the one client being answered, whatever the model asks.

The model never names a client, an email or a phone: every tool acts for
the contact of the conversation, on that contact's own appointments only
(`hub.contact_appointments`), so "cancel every appointment" or "ignore your
instructions" in a message changes nothing beyond that client.

Destructive tools (book, move, cancel) take two calls: the first records
what is asked and tells the model to ask the client; only a later message
of the client that is a plain yes lets the same call through (checked
here, not left to the model). Calendly's own tools that take raw
identifiers (`calendly_book`, `calendly_cancel`) are wrapped, not offered;
other plugins' tools are offered as they are.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hub import AppointmentRef, BusinessProfile, ContactDetails, HubError, HubPort, ReceivedMessage, Tool

WRAPPED = frozenset({"calendly_book", "calendly_cancel", "calendly_availability"})
"""Tools with raw identifiers: offered only through the contact-bound versions below."""
YES_WORDS = frozenset({
    "si", "yes", "ok", "okay", "okey", "vale", "dale", "claro", "confirmo", "confirmado", "adelante", "perfecto", "listo",
    "sure", "yep", "yeah", "correcto", "exacto", "hazlo", "please", "porfa", "favor", "por", "de", "acuerdo", "go", "ahead",
    "do", "it", "gracias", "thanks", "\U0001f44d", "sale", "va", "bueno", "confirm",
})


def is_plain_yes(body: str) -> bool:
    """Whether a message is a plain yes ("sí", "ok, dale", "👍"), the only thing that lets a destructive tool act."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", body.casefold()) if not unicodedata.combining(c))
    folded = folded.replace("\U0001f44d", " \U0001f44d ")
    tokens = re.findall(r"[a-z]+|\U0001f44d", folded)
    return bool(tokens) and len(tokens) <= 6 and all(t in YES_WORDS for t in tokens) and any(
        t in {"si", "yes", "ok", "okay", "okey", "vale", "dale", "claro", "confirmo", "adelante", "sure", "yep", "yeah", "hazlo", "\U0001f44d", "sale", "va", "confirm"} for t in tokens
    )


@dataclass
class Session:
    """One answer's view of the client, and what the tools did."""

    hub: HubPort
    tenant: str
    zone: ZoneInfo
    contact: ContactDetails
    message: ReceivedMessage
    business: BusinessProfile
    pending: dict[str, Any]
    """The destructive call awaiting the client's yes (kept in the conversation state between messages)."""
    tools: dict[str, Tool]
    handoff: tuple[str, str] | None = None
    opted_out: bool = False
    changed: list[str] = field(default_factory=list)
    """What the tools did that the client should hear about even if the model fails afterwards."""

    def local(self, moment: dt.datetime) -> str:
        return moment.astimezone(self.zone).isoformat(timespec="minutes")


def contact_tools(session: Session) -> list[Tool]:
    """The tools offered to the model for this answer."""

    async def my_appointments() -> dict[str, Any]:
        upcoming = await session.hub.contact_appointments(session.tenant, session.contact.id)
        return {"appointments": [_appointment(session, a) for a in upcoming]}

    async def confirm_appointment(appointment_id: int) -> dict[str, Any]:
        confirmed = await session.hub.confirm_appointment(session.tenant, session.contact.id, int(appointment_id))
        session.changed.append("confirmed")
        return {"confirmed": True, "appointment": _appointment(session, confirmed)}

    async def find_free_times(first_day: str, last_day: str, service: str = "") -> dict[str, Any]:
        tool = session.tools.get("calendly_availability")
        event_type = _event_type(session, service)
        if tool is None or not event_type:
            return {"error": "booking is not available here: offer a handoff"}
        found = await tool.func(event_type=event_type, start=first_day, end=last_day)
        return {"times": [slot["start"] for slot in found.get("slots", [])][:12], "timezone": found.get("timezone")}

    async def book_slot(start: str, service: str = "") -> dict[str, Any]:
        tool = session.tools.get("calendly_book")
        event_type = _event_type(session, service)
        if tool is None or not event_type:
            return {"error": "booking is not available here: offer a handoff"}
        if not session.contact.emails:
            return {"error": "the client has no email yet: ask for it (Calendly needs one) and call again once given"}
        asked = {"action": "book", "start": start, "service": service}
        if not _agreed(session, asked):
            return _ask(session, asked, f"Ask the client to answer yes to book {start}.")
        result = await tool.func(**_booking(session, event_type, start))
        session.pending.clear()
        session.changed.append("booked" if result.get("booked") else "link")
        return _booking_result(result)

    async def reschedule_appointment(appointment_id: int, start: str) -> dict[str, Any]:
        appointment = await _own(session, appointment_id)
        tool = session.tools.get("calendly_book")
        event_type = _event_type(session, appointment.service or "")
        if appointment.source != "calendly" or tool is None or not event_type:
            return {"error": "this appointment cannot be moved here: offer a handoff"}
        asked = {"action": "reschedule", "appointment_id": appointment.id, "start": start}
        if not _agreed(session, asked):
            return _ask(session, asked, f"Ask the client to answer yes to move the appointment to {start}.")
        arguments = _booking(session, event_type, start)
        arguments["replaces"] = appointment.external_id
        if not arguments["email"]:
            return {"error": "the client has no email yet: ask for it (Calendly needs one) and call again once given"}
        result = await tool.func(**arguments)
        session.pending.clear()
        session.changed.append("moved" if result.get("booked") else "link")
        return _booking_result(result)

    async def cancel_appointment(appointment_id: int) -> dict[str, Any]:
        appointment = await _own(session, appointment_id)
        asked = {"action": "cancel", "appointment_id": appointment.id}
        if not _agreed(session, asked):
            return _ask(session, asked, f"Ask the client to answer yes to cancel the appointment of {session.local(appointment.start_at)}.")
        tool = session.tools.get("calendly_cancel")
        if appointment.source == "calendly" and tool is not None:
            await tool.func(event=appointment.external_id, reason="cancelled by the client")
        await session.hub.cancel_appointment(session.tenant, session.contact.id, appointment.id, reason="cancelled by the client")
        session.pending.clear()
        session.changed.append("canceled")
        return {"canceled": True}

    async def opt_out() -> dict[str, Any]:
        address = session.message.address
        await session.hub.request_opt_out(
            session.tenant, address_kind="email" if "@" in address else "phone", address=address, medium=session.message.medium,
            opted_out=True, source="openai_responder", dedupe_key=f"openai_responder:{session.message.message_id}", confirm=True,
        )
        session.opted_out = True
        return {"opted_out": True, "tell_client": "nothing: the confirmation is sent by the system"}

    async def handoff(reason: str, summary: str = "") -> dict[str, Any]:
        session.handoff = (reason[:200] or "asked for a person", summary[:1000])
        return {"handed_off": True, "tell_client": "a person will answer soon"}

    integer = {"type": "integer"}
    day = {"type": "string", "description": "YYYY-MM-DD, in the business's time zone"}
    moment = {"type": "string", "description": "a start time exactly as find_free_times gave it"}
    service_name = {"type": "string", "description": "the service's name, if the client named one"}
    tools = [
        Tool("my_appointments", "The client's upcoming appointments (id, start, service, confirmed).", _schema({}), my_appointments),
        Tool("confirm_appointment", "Mark one of the client's appointments as confirmed by them.",
             _schema({"appointment_id": integer}, ["appointment_id"]), confirm_appointment),
        Tool("find_free_times", "Free start times between two days (at most 31 days apart).",
             _schema({"first_day": day, "last_day": day, "service": service_name}, ["first_day", "last_day"]), find_free_times),
        Tool("book_slot", "Book a free time for the client; needs their yes to your question first.",
             _schema({"start": moment, "service": service_name}, ["start"]), book_slot),
        Tool("reschedule_appointment", "Move one of the client's appointments to a free time; needs their yes first.",
             _schema({"appointment_id": integer, "start": moment}, ["appointment_id", "start"]), reschedule_appointment),
        Tool("cancel_appointment", "Cancel one of the client's appointments; needs their yes first.",
             _schema({"appointment_id": integer}, ["appointment_id"]), cancel_appointment),
        Tool("opt_out", "Stop all messages to the client on this channel, when they ask to stop receiving messages.",
             _schema({}), opt_out),
        Tool("handoff", "Pass the conversation to a person of the team (the client asked, is upset, or you cannot help).",
             _schema({"reason": {"type": "string"}, "summary": {"type": "string"}}, ["reason"]), handoff),
    ]
    taken = {tool.name for tool in tools}
    return tools + [tool for name, tool in session.tools.items() if name not in WRAPPED and name not in taken]


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


def _appointment(session: Session, appointment: AppointmentRef) -> dict[str, Any]:
    return {"id": appointment.id, "start": session.local(appointment.start_at), "service": appointment.service,
            "confirmed": appointment.confirmed_at is not None}


async def _own(session: Session, appointment_id: Any) -> AppointmentRef:
    for appointment in await session.hub.contact_appointments(session.tenant, session.contact.id):
        if appointment.id == int(appointment_id):
            return appointment
    raise HubError(f"appointment {appointment_id} is not one of this client's upcoming appointments")


def _event_type(session: Session, service: str) -> str | None:
    named = session.business.service(service) if service else None
    return (named.event_type if named else None) or session.business.event_type


def _agreed(session: Session, asked: dict[str, Any]) -> bool:
    """Whether this exact action was asked before this message, and this message is a plain yes."""
    return (
        {k: v for k, v in session.pending.items() if k != "asked_at"} == asked
        and int(session.pending.get("asked_at", session.message.message_id)) < session.message.message_id
        and is_plain_yes(session.message.body)
    )


def _ask(session: Session, asked: dict[str, Any], instruction: str) -> dict[str, Any]:
    session.pending.clear()
    session.pending.update(asked, asked_at=session.message.message_id)
    return {"done": False, "needs_client_yes": True, "instruction": instruction}


def _booking(session: Session, event_type: str, start: str) -> dict[str, Any]:
    return {
        "event_type": event_type, "start": start, "name": session.contact.name or session.message.profile_name or "Cliente",
        "email": session.contact.emails[0] if session.contact.emails else "",
        "phone": session.contact.phones[0] if session.contact.phones else "", "timezone": session.zone.key,
    }


def _booking_result(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("booked"):
        return {"booked": True, "start": result.get("start")}
    return {"booked": False, "booking_link_for_client": result.get("booking_url"), "why": result.get("why")}
