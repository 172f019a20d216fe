"""What the rules responder does with a classified message: the short dialogues of booking, moving and cancelling.

A conversation's dialogue state (kept with `hub.set_conversation_state`)
says what the last reply waits for: a slot number ("pick"), a yes to book or
move ("book_yes"), an email address ("email"), a yes to cancel
("cancel_yes"). A message that answers it moves the dialogue on; any other
message is handled on its own and the wait is dropped.

Nothing destructive happens without the client's explicit yes: a booking,
a move and a cancellation are each asked back first. Every appointment
touched is one of the client's own (`hub.contact_appointments`), and the
one a reminder was about comes first.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hub import (
    AppointmentRef,
    BusinessProfile,
    ContactDetails,
    Conversation,
    ConversationMessage,
    HubError,
    HubPort,
    InvalidAddress,
    ReceivedMessage,
    Reply,
    TenantProfile,
    Tool,
)

from . import when
from .classifier import Classification, Context, classify
from .replies import DEFAULTS, hours_text, language
from .settings import Settings
from .text import fold, words

NAME = "rules_responder"
EMAIL = re.compile(r"[^\s@<>,;:()\[\]]+@[^\s@<>,;:()\[\]]+\.[A-Za-z]{2,}")
NO_WORDS = frozenset({"no", "nope", "nah", "not", "mejor", "dejalo", "olvidalo", "gracias", "thanks", "por", "ahora", "now", "todavia", "aun"})
ORDINALS = {
    "primera": 1, "primero": 1, "first": 1, "segunda": 2, "segundo": 2, "second": 2, "tercera": 3, "tercero": 3, "third": 3,
    "cuarta": 4, "cuarto": 4, "fourth": 4, "quinta": 5, "fifth": 5, "ultima": -1, "ultimo": -1, "last": -1,
}
LATE = re.compile(r"\b(?:llego|llegare|voy a llegar|vamos a llegar|estoy llegando)\b.*\b(?:tarde|minutos|min)\b|\brunning late\b|\b(?:be|am) \d+ (?:min|minutes) late\b|\bwill be late\b|\bbe late\b")
PRICE_WORDS = re.compile(r"\b(?:cuanto|precio|precios|tarifa|costo|cuesta|sale|vale|cobran|how much|price|prices|cost|fee)\b")
ADDRESS_WORDS = re.compile(r"\b(?:donde|direccion|ubicacion|ubicados|llego|llegar|where|address|location|directions|parking|estacionamiento|aparcar)\b")
HOURS_WORDS = re.compile(r"\b(?:horario|abren|abris|abre|cierran|atienden|abiertos|open|close|hours|hora abren)\b")


@dataclass
class Turn:
    """Everything known while answering one message."""

    hub: HubPort
    settings: Settings
    conversation: Conversation
    message: ReceivedMessage
    tenant: TenantProfile
    contact: ContactDetails
    business: BusinessProfile
    lang: str
    zone: ZoneInfo
    last_out: ConversationMessage | None
    state: dict[str, Any]
    tools: dict[str, Tool]
    heard: Classification = field(default_factory=lambda: Classification("other"))

    def say(self, key: str, **values: Any) -> str:
        """A reply text in the contact's language, the tenant's version first."""
        source = self.settings.replies.get(self.lang, {}).get(key) or DEFAULTS[self.lang][key]
        context = {"tenant": self.tenant.name, "name": self.contact.name, **values}
        return self.hub.render_inline(source, locale=self.lang, timezone=self.zone.key, context=context, name=f"{NAME}:{key}")

    def reply(self, key: str, **values: Any) -> Reply:
        return Reply(self.say(key, **values), responder=NAME, data={"intent": self.heard.intent})

    def today(self) -> dt.date:
        return dt.datetime.now(self.zone).date()


async def respond(hub: HubPort, settings: Settings, conversation: Conversation, message: ReceivedMessage) -> Reply:
    """Answer one message (and keep the dialogue state for the next)."""
    tenant = await hub.tenant(conversation.tenant)
    # One read for the contact, the last messages and the dialogue state: three separate reads were most of a reply's cost.
    contact, history, state = await hub.conversation_context(NAME, conversation.tenant, conversation.id, limit=8)
    last_out = next((m for m in reversed(history) if m.direction == "out" and m.id < message.message_id), None)
    before = dict(state)
    turn = Turn(
        hub=hub, settings=settings, conversation=conversation, message=message, tenant=tenant, contact=contact,
        business=await hub.business_profile(conversation.tenant),
        # A contact with no locale is answered in the language they write in (remembered for "ok", "1"...).
        lang=language(contact.locale or guess_language(message.body) or state.get("lang") or tenant.locale),
        zone=ZoneInfo(contact.timezone or tenant.timezone), last_out=last_out, state=state,
        tools={tool.name: tool for tool in await hub.tools_for(conversation.tenant)},
    )
    awaiting = state.get("awaiting")
    turn.heard = classify(message.body, Context(
        last_outbound_kind=last_out.kind if last_out else None,
        awaiting_yes=awaiting in ("book_yes", "cancel_yes") or (awaiting == "pick" and len(state.get("offered", [])) == 1),
    ))
    reply = await answer(turn)
    if turn.heard.intent != "other":
        turn.state.pop("misses", None)
    if not contact.locale and turn.lang != language(tenant.locale):
        turn.state["lang"] = turn.lang  # remembered only when it is not the tenant's own language
    elif "lang" in turn.state:
        del turn.state["lang"]
    if turn.state != before:  # most answers (prices, hours, a greeting) leave the dialogue as it was: no write
        await hub.set_conversation_state(NAME, conversation.tenant, conversation.id, turn.state)
    return reply


def guess_language(body: str) -> str | None:
    """"en" or "es" when the message plainly is one of them, else None."""
    tokens = set(words(body).split())
    english = len(tokens & {"the", "i", "you", "my", "is", "can", "to", "please", "thanks", "yes", "appointment", "want", "need", "hi", "hello", "what", "are", "do"})
    spanish = len(tokens & {"el", "la", "de", "que", "mi", "es", "por", "favor", "gracias", "si", "cita", "turno", "quiero", "hola", "para", "los", "las", "con"})
    if english > spanish:
        return "en"
    if spanish > english:
        return "es"
    return None


async def answer(turn: Turn) -> Reply:
    """The reply to the turn's message: the awaited answer first, else by intent."""
    intent = turn.heard.intent
    if intent == "opt_out":
        turn.state.clear()
        return await opt_out(turn)
    if intent == "human":
        turn.state.clear()
        return handoff(turn, "asked for a person")
    awaiting = turn.state.get("awaiting")
    handled: Reply | None = None
    if awaiting == "pick":
        handled = await on_pick(turn)
    elif awaiting == "book_yes":
        handled = await on_book_yes(turn)
    elif awaiting == "email":
        handled = await on_email(turn)
    elif awaiting == "cancel_yes":
        handled = await on_cancel_yes(turn)
    if handled is not None:
        return handled
    for key in ("awaiting", "offered", "slot", "purpose", "appointment_id"):
        turn.state.pop(key, None)
    if intent == "confirm":
        return await confirm(turn)
    if intent == "cancel":
        return await ask_cancel(turn)
    if intent in ("book", "availability"):
        return await offer_slots(turn, purpose="book")
    if intent == "reschedule":
        return await ask_reschedule(turn)
    if intent == "info":
        return info(turn)
    if intent == "greeting":
        thanks = re.search(r"\b(?:gracias|thanks|thank)\b", words(turn.message.body))
        return turn.reply("thanks" if thanks else "greeting")
    return not_understood(turn)


# --- the awaited answers ------------------------------------------------------------


async def on_pick(turn: Turn) -> Reply | None:
    offered: list[dict[str, Any]] = turn.state.get("offered", [])
    index = chosen_index(turn, offered)
    if index is None:
        return None
    slot = offered[index]
    turn.state.update(awaiting="book_yes", slot=slot)
    turn.state.pop("offered", None)
    key = "move_ask" if turn.state.get("purpose") == "reschedule" else "book_ask"
    return turn.reply(key, start=_moment(slot["start"]), service=slot.get("service"))


def chosen_index(turn: Turn, offered: list[dict[str, Any]]) -> int | None:
    """Which offered slot the message picks: "2", "el 2", "la primera", "a las 10", or a yes to a single one."""
    text = words(turn.message.body)
    tokens = text.split()
    if len(tokens) <= 4:
        for token in tokens:
            if token.isdigit() and 1 <= int(token) <= len(offered):
                return int(token) - 1
            if token in ORDINALS:
                number = ORDINALS[token]
                return len(offered) - 1 if number == -1 else (number - 1 if number <= len(offered) else None)
    if turn.heard.time:
        wanted = when.resolve_time(turn.heard.time)
        if wanted is not None and wanted.until_hour is None:
            day = when.resolve_date(turn.heard.date, turn.today()) if turn.heard.date else None
            for index, slot in enumerate(offered):
                local = _moment(slot["start"]).astimezone(turn.zone)
                if (local.hour, local.minute) == (wanted.hour, wanted.minute) and (day is None or local.date() == day):
                    return index
    if turn.heard.intent == "confirm" and len(offered) == 1:
        return 0
    return None


async def on_book_yes(turn: Turn) -> Reply | None:
    if turn.heard.intent == "confirm":
        slot = turn.state["slot"]
        if turn.state.get("purpose") != "reschedule" and not turn.contact.emails:
            turn.state["awaiting"] = "email"
            return turn.reply("ask_email")
        return await book(turn, slot)
    if said_no(turn) or turn.heard.intent == "cancel":
        turn.state.clear()
        return turn.reply("not_booked")
    return None


async def on_email(turn: Turn) -> Reply | None:
    found = EMAIL.search(turn.message.body)
    if found is None:
        if turn.heard.intent in ("other", "greeting", "confirm"):
            return turn.reply("bad_email")
        return None
    try:
        await turn.hub.set_contact_email(turn.tenant.slug, turn.contact.id, found.group(0))
    except InvalidAddress:
        return turn.reply("bad_email")
    turn.contact = await turn.hub.contact_details(turn.tenant.slug, turn.contact.id)
    email = found.group(0).strip().lower()
    return await book(turn, turn.state["slot"], email=email)


async def on_cancel_yes(turn: Turn) -> Reply | None:
    appointment = await own_appointment(turn, turn.state.get("appointment_id"))
    if appointment is None:
        return None
    if turn.heard.intent in ("confirm", "cancel") and not said_no(turn):
        turn.state.clear()
        return await cancel(turn, appointment)
    if said_no(turn):
        turn.state.clear()
        return turn.reply("cancel_kept", start=appointment.start_at)
    return None


def said_no(turn: Turn) -> bool:
    tokens = words(turn.message.body).split()
    return bool(tokens) and tokens[0] in ("no", "nope", "nah") and all(t in NO_WORDS or t == "no" for t in tokens)


# --- intents -------------------------------------------------------------------------


async def opt_out(turn: Turn) -> Reply:
    address = turn.message.address
    medium = turn.message.medium
    if medium in turn.contact.opted_out.get(address, ()):
        # Already done (the channel's keyword handling, or an earlier message): its confirmation went out then.
        return Reply("", responder=NAME, data={"intent": "opt_out"})
    await turn.hub.request_opt_out(
        turn.tenant.slug, address_kind="email" if "@" in address else "phone", address=address, medium=medium,
        opted_out=True, source=NAME, dedupe_key=f"{NAME}:{turn.message.message_id}", confirm=True,
    )
    # The hub confirms once the opt-out is applied (one confirmation, whoever asked for it).
    return Reply("", responder=NAME, data={"intent": "opt_out"})


def handoff(turn: Turn, reason: str) -> Reply:
    """Hand the conversation to a person, telling the client so."""
    summary = f"{turn.heard.intent}: {turn.message.body}"[:500]
    return Reply(turn.say("handoff"), handoff=True, responder=NAME,
                 data={"intent": turn.heard.intent, "handoff_reason": reason, "handoff_summary": summary})


async def confirm(turn: Turn) -> Reply:
    appointment = await target_appointment(turn)
    if appointment is None:
        return turn.reply("no_appointment")
    await turn.hub.confirm_appointment(turn.tenant.slug, turn.contact.id, appointment.id)
    return turn.reply("confirmed", start=appointment.start_at)


async def ask_cancel(turn: Turn) -> Reply:
    appointment = await target_appointment(turn)
    if appointment is None:
        return turn.reply("no_appointment")
    turn.state.update(awaiting="cancel_yes", appointment_id=appointment.id)
    return turn.reply("cancel_ask", start=appointment.start_at)


async def cancel(turn: Turn, appointment: AppointmentRef) -> Reply:
    tool = turn.tools.get("calendly_cancel")
    if appointment.source == "calendly" and tool is not None:
        ok, _ = await call_tool(turn, tool, event=appointment.external_id, reason="cancelled by the client")
        if not ok:
            return handoff(turn, "tool failed: calendly_cancel")
    await turn.hub.cancel_appointment(turn.tenant.slug, turn.contact.id, appointment.id, reason="cancelled by the client")
    return turn.reply("canceled", start=appointment.start_at)


async def ask_reschedule(turn: Turn) -> Reply:
    appointment = await target_appointment(turn)
    if appointment is None:
        return turn.reply("no_appointment")
    if appointment.source != "calendly" or "calendly_book" not in turn.tools:
        return handoff(turn, "asked to move an appointment this responder cannot move")
    return await offer_slots(turn, purpose="reschedule", appointment=appointment)


async def offer_slots(turn: Turn, *, purpose: str, appointment: AppointmentRef | None = None) -> Reply:
    tool = turn.tools.get("calendly_availability")
    service = turn.business.service(appointment.service if appointment else None) or mentioned_service(turn)
    event_type = (service.event_type if service else None) or turn.business.event_type
    if tool is None or not event_type:
        return handoff(turn, "asked to book but no booking tool or event type is set up")
    day = when.resolve_date(turn.heard.date, turn.today()) if turn.heard.date else None
    first = day or turn.today()
    last = day or first + dt.timedelta(days=turn.settings.search_days)
    ok, found = await call_tool(turn, tool, event_type=event_type, start=first.isoformat(), end=last.isoformat())
    if not ok:
        return handoff(turn, "tool failed: calendly_availability")
    slots = pick_slots(turn, found.get("slots", []))
    prefix = ""
    if not slots and day is not None:
        prefix = turn.say("no_slots", day=day) + "\n"
        later = day + dt.timedelta(days=1)
        ok, found = await call_tool(turn, tool, event_type=event_type, start=later.isoformat(),
                                    end=(later + dt.timedelta(days=turn.settings.search_days)).isoformat())
        slots = pick_slots(turn, found.get("slots", [])) if ok else []
    if not slots:
        turn.state.pop("awaiting", None)
        return turn.reply("no_slots", day=day)
    name = service.name if service else (appointment.service if appointment else None)
    turn.state.update(
        awaiting="pick", purpose=purpose,
        offered=[{"start": s, "event_type": found.get("event_type") or event_type, "service": name} for s in slots],
    )
    if appointment is not None:
        turn.state["appointment_id"] = appointment.id
    text = prefix + turn.say("slots", slots=[_moment(s) for s in slots], service=name)
    return Reply(text, responder=NAME, data={"intent": turn.heard.intent})


def pick_slots(turn: Turn, slots: list[dict[str, Any]]) -> list[str]:
    """The start times to offer: near the time the client named, at most `slots_offered`."""
    starts = [s["start"] for s in slots if isinstance(s.get("start"), str)]
    wanted = when.resolve_time(turn.heard.time) if turn.heard.time else None
    if wanted is not None:
        def minutes(start: str) -> int:
            local = _moment(start).astimezone(turn.zone)
            return local.hour * 60 + local.minute

        if wanted.until_hour is not None:
            starts = [s for s in starts if wanted.hour * 60 <= minutes(s) < wanted.until_hour * 60]
        else:
            target = wanted.hour * 60 + wanted.minute
            starts.sort(key=lambda s: (abs(minutes(s) - target), s))
    return starts[: turn.settings.slots_offered]


async def book(turn: Turn, slot: dict[str, Any], *, email: str | None = None) -> Reply:
    tool = turn.tools.get("calendly_book")
    if tool is None:
        return handoff(turn, "no booking tool")
    moving = turn.state.get("purpose") == "reschedule"
    old = await own_appointment(turn, turn.state.get("appointment_id")) if moving else None
    if moving and old is None:
        turn.state.clear()
        return turn.reply("no_appointment")
    arguments: dict[str, Any] = {
        "event_type": slot["event_type"], "start": slot["start"],
        "name": turn.contact.name or turn.message.profile_name or ("Cliente" if turn.lang == "es" else "Client"),
        "email": email or (turn.contact.emails[0] if turn.contact.emails else ""),
        "phone": turn.contact.phones[0] if turn.contact.phones else "",
        "timezone": turn.zone.key,
    }
    if old is not None:
        arguments["replaces"] = old.external_id
    if not arguments["email"]:
        turn.state["awaiting"] = "email"
        return turn.reply("ask_email")
    ok, result = await call_tool(turn, tool, **arguments)
    turn.state.clear()
    if not ok:
        return handoff(turn, "tool failed: calendly_book")
    if not result.get("booked"):
        return turn.reply("link", url=result.get("booking_url"))
    if moving and result.get("old_canceled") is False:
        return handoff(turn, "moved in the hub, but the old Calendly booking could not be cancelled")
    return turn.reply("moved" if moving else "booked", start=_moment(slot["start"]))


def info(turn: Turn) -> Reply:
    text = words(turn.message.body)
    profile = turn.business
    parts: list[str] = []
    asked_price, asked_address, asked_hours = (bool(p.search(text)) for p in (PRICE_WORDS, ADDRESS_WORDS, HOURS_WORDS))
    everything = not (asked_price or asked_address or asked_hours)
    if (asked_price or everything) and profile.services:
        named = mentioned_service(turn)
        parts.append(turn.say("prices", services=[named] if named else list(profile.services)))
    if (asked_address or everything) and profile.address:
        parts.append(turn.say("address", address=profile.address))
    if (asked_hours or everything) and profile.hours:
        parts.append(turn.say("hours", hours=hours_text(profile.hours, turn.lang)))
    if everything and profile.about:
        parts.append(profile.about)
    if not parts:
        return handoff(turn, "asked something the business profile does not answer")
    return Reply("\n".join(p.strip() for p in parts if p.strip()), responder=NAME, data={"intent": "info"})


def not_understood(turn: Turn) -> Reply:
    if LATE.search(words(turn.message.body)):
        return turn.reply("late")
    misses = int(turn.state.get("misses", 0)) + 1
    turn.state["misses"] = misses
    if misses >= turn.settings.misunderstandings_before_handoff:
        turn.state.clear()
        return handoff(turn, "repeated misunderstanding")
    return turn.reply("not_understood")


# --- helpers -------------------------------------------------------------------------


def mentioned_service(turn: Turn) -> Any:
    """The business's service the message names (by name or alias), or None."""
    text = f" {fold(turn.message.body)} "
    for service in turn.business.services:
        for name in (service.name, *service.aliases):
            if re.search(rf"\b{re.escape(fold(name))}\b", text):
                return service
    return None


async def target_appointment(turn: Turn) -> AppointmentRef | None:
    """The appointment a message is about: the one the last reminder named, else the client's next one."""
    upcoming = await turn.hub.contact_appointments(turn.tenant.slug, turn.contact.id)
    if turn.last_out is not None and turn.last_out.appointment_id is not None:
        for appointment in upcoming:
            if appointment.id == turn.last_out.appointment_id:
                return appointment
    return upcoming[0] if upcoming else None


async def own_appointment(turn: Turn, appointment_id: Any) -> AppointmentRef | None:
    if not isinstance(appointment_id, int):
        return None
    for appointment in await turn.hub.contact_appointments(turn.tenant.slug, turn.contact.id):
        if appointment.id == appointment_id:
            return appointment
    return None


async def call_tool(turn: Turn, tool: Tool, **arguments: Any) -> tuple[bool, dict[str, Any]]:
    """Call a tool and record the call on the conversation (name, outcome, latency; never the arguments' values)."""
    started = time.monotonic()
    try:
        result = await tool.func(**arguments)
        outcome, ok = "ok", True
    except (HubError, ValueError) as exc:
        result, outcome, ok = {"error": str(exc)}, "error", False
    latency = int((time.monotonic() - started) * 1000)
    await turn.hub.record_call(
        turn.tenant.slug, turn.conversation.id, kind="tool_call", name=tool.name, outcome=outcome, latency_ms=latency,
        detail={"responder": NAME, "arguments": sorted(arguments)},
    )
    return ok, result if isinstance(result, dict) else {"result": result}


def _moment(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
