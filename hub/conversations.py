"""What responders may read and do about the person they answer, and only that person.

Every function here takes the tenant and the contact (or conversation) the
responder is answering and refuses anything that is not theirs: an
appointment of another contact is "unknown", whatever a message asked for.
They are the bodies of the port's responder methods (`HubPort.recent_messages`,
`contact_appointments`, `confirm_appointment`, ...), which `hub/core.py`
delegates to.

Reads run on `reading` sessions, outside any transaction: a responder
answering one message reads several times, and on PostgreSQL each
transaction's BEGIN and ROLLBACK were two more round trips per read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.appointment_input import AppointmentInput
from hub.appointments import appointment_ref
from hub.business import BusinessProfile
from hub.contacts import link
from hub.errors import HubError, UnknownContact
from hub.events import AppointmentRef
from hub.handoff import UnknownConversation, load_conversation, record_event
from hub.models import Appointment, Contact, Conversation, ConversationEvent, Identity, Message, Notification, utcnow
from hub.phones import normalize_email
from hub.responders import ContactDetails, ConversationMessage
from hub.tenants import TenantInfo

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.database import Database

@asynccontextmanager
async def reading(db: Database) -> AsyncIterator[AsyncSession]:
    """A session for reads only, with no transaction around them: each statement sees what was committed when it ran."""
    async with db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=connection, expire_on_commit=False) as session:
            yield session


CALL_KINDS = ("model_call", "tool_call")
"""What `record_call` records; hand-offs and releases are recorded by hub/handoff.py."""


class UnknownAppointment(HubError):
    """No such appointment among the contact's own."""


async def _contact(session: AsyncSession, tenant: TenantInfo, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.tenant_id != tenant.id:
        raise UnknownContact(f"no contact {contact_id} in tenant {tenant.slug!r}")
    return contact


async def recent_messages(hub: Hub, tenant: str, conversation_id: int, limit: int = 10) -> list[ConversationMessage]:
    """The conversation's last `limit` messages, oldest first, outbound ones with their notification's kind."""
    info = await hub.tenants.get(tenant)
    async with reading(hub.db) as session:
        await load_conversation(session, info, conversation_id)
        thread = (await session.execute(_recent(conversation_id, limit))).all()
    return [ConversationMessage(m.id, m.direction, m.body, m.created_at, m.kind, m.appointment_id) for m in reversed(thread)]


async def contact_details(hub: Hub, tenant: str, contact_id: int) -> ContactDetails:
    """The contact's name, locale, time zone, phones and emails (and which mediums each opted out of)."""
    info = await hub.tenants.get(tenant)
    async with reading(hub.db) as session:
        contact = await _contact(session, info, contact_id)
        identities = (await session.scalars(select(Identity).where(Identity.contact_id == contact_id).order_by(Identity.id))).all()
    return ContactDetails(
        contact.id, info.slug, contact.name, contact.locale, contact.timezone,
        phones=tuple(i.value for i in identities if i.kind == "phone"),
        emails=tuple(i.value for i in identities if i.kind == "email"),
        opted_out={i.value: tuple(sorted(i.opted_out or {})) for i in identities if i.opted_out},
    )


async def conversation_context(
    hub: Hub, plugin: str, tenant: str, conversation_id: int, limit: int = 10
) -> tuple[ContactDetails, list[ConversationMessage], dict[str, Any]]:
    """The conversation's contact, its last `limit` messages and the plugin's dialogue state, read together.

    What `contact_details`, `recent_messages` and `conversation_state` return, in three statements on one
    connection instead of six on three: a responder reads all three for every message it answers.
    """
    info = await hub.tenants.get(tenant)
    bounds = {"b_conversation": conversation_id, "b_tenant": info.id, "b_limit": max(1, min(limit, 100))}
    # Plain columns on a connection, statements built once: ORM rows and sessions were most of this read's CPU.
    async with hub.db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        found = (await connection.execute(_CONTEXT_CONTACT, bounds)).first()
        if found is None:
            raise UnknownConversation(f"no conversation {conversation_id} in tenant {info.slug!r}")
        identities = (await connection.execute(_CONTEXT_IDENTITIES, {"b_contact": found.id})).all()
        thread = (await connection.execute(_CONTEXT_MESSAGES, bounds)).all()
    details = ContactDetails(
        found.id, info.slug, found.name, found.locale, found.timezone,
        phones=tuple(i.value for i in identities if i.kind == "phone"),
        emails=tuple(i.value for i in identities if i.kind == "email"),
        opted_out={i.value: tuple(sorted(i.opted_out or {})) for i in identities if i.opted_out},
    )
    messages = [ConversationMessage(m.id, m.direction, m.body, m.created_at, m.kind, m.appointment_id) for m in reversed(thread)]
    return details, messages, dict((found.responder_state or {}).get(plugin) or {})


_CONTEXT_CONTACT = (
    select(Conversation.responder_state, Contact.id, Contact.name, Contact.locale, Contact.timezone)
    .join(Contact, Contact.id == Conversation.contact_id)
    .where(Conversation.id == bindparam("b_conversation"), Conversation.tenant_id == bindparam("b_tenant"))
)
_CONTEXT_IDENTITIES = (
    select(Identity.kind, Identity.value, Identity.opted_out).where(Identity.contact_id == bindparam("b_contact")).order_by(Identity.id)
)
_CONTEXT_MESSAGES = (
    select(Message.id, Message.direction, Message.body, Message.created_at, Notification.kind, Notification.appointment_id)
    .outerjoin(Notification, Notification.id == Message.notification_id)
    .where(Message.conversation_id == bindparam("b_conversation"))
    .order_by(Message.id.desc())
    .limit(bindparam("b_limit"))
)


def _recent(conversation_id: int, limit: int) -> Any:
    return _CONTEXT_MESSAGES.params(b_conversation=conversation_id, b_limit=max(1, min(limit, 100)))


async def contact_appointments(hub: Hub, tenant: str, contact_id: int, *, include_past: bool = False) -> list[AppointmentRef]:
    """The contact's own scheduled appointments, soonest first (past ones too with `include_past`)."""
    info = await hub.tenants.get(tenant)
    async with reading(hub.db) as session:
        await _contact(session, info, contact_id)
        query = select(Appointment).where(
            Appointment.tenant_id == info.id, Appointment.contact_id == contact_id, Appointment.status == "scheduled"
        )
        if not include_past:
            query = query.where(Appointment.start_at >= utcnow())
        rows = (await session.scalars(query.order_by(Appointment.start_at))).all()
    return [appointment_ref(row, info) for row in rows]


async def _own_appointment(session: AsyncSession, tenant: TenantInfo, contact_id: int, appointment_id: int) -> Appointment:
    row = await session.get(Appointment, appointment_id)
    if row is None or row.tenant_id != tenant.id or row.contact_id != contact_id:
        raise UnknownAppointment(f"contact {contact_id} has no appointment {appointment_id}")
    return row


async def confirm_appointment(hub: Hub, tenant: str, contact_id: int, appointment_id: int) -> AppointmentRef:
    """Mark one of the contact's scheduled appointments confirmed; `on_appointment_changed` gets "confirmed".

    Confirming twice changes nothing and fires nothing the second time.
    """
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        appointment = await _own_appointment(uow.session, info, contact_id, appointment_id)
        if appointment.status != "scheduled":
            raise UnknownAppointment(f"appointment {appointment_id} is {appointment.status}, not scheduled")
        if appointment.confirmed_at is None:
            appointment.confirmed_at = utcnow()
            await uow.session.flush()
            ref = appointment_ref(appointment, info)
            uow.after_commit(
                "on_appointment_changed", partial(hub.call, "on_appointment_changed", hub=hub, appointment=ref, change="confirmed")
            )
        ref = appointment_ref(appointment, info)
    return ref


async def cancel_appointment(hub: Hub, tenant: str, contact_id: int, appointment_id: int, *, reason: str) -> AppointmentRef:
    """Cancel one of the contact's appointments in the hub (its pending reminders go, the cancellation notice is sent)."""
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        row = await _own_appointment(uow.session, info, contact_id, appointment_id)
        data = AppointmentInput(
            source=row.source, external_id=row.external_id, start_at=row.start_at, end_at=row.end_at, timezone=row.timezone,
            status="canceled", reason=reason or None,
        )
        change = await hub.apply_appointment(uow, info, data)
    return change.appointment


async def set_contact_email(hub: Hub, tenant: str, contact_id: int, email: str) -> bool:
    """Add an email address to the contact; False (nothing changed) when it already belongs to someone else.

    A client typing an address that is another contact's must not merge the two.
    Raises `hub.InvalidAddress` for something that is not an email address.
    """
    info = await hub.tenants.get(tenant)
    value = normalize_email(email)
    async with hub.unit_of_work() as uow:
        contact = await _contact(uow.session, info, contact_id)
        owner = await uow.session.scalar(
            select(Identity.contact_id).where(Identity.tenant_id == info.id, Identity.kind == "email", Identity.value == value)
        )
        if owner is not None:
            return owner == contact.id
        anchor = await uow.session.scalar(select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id).limit(1))
        if anchor is None:
            uow.session.add(Identity(tenant_id=info.id, contact_id=contact.id, kind="email", value=value))
            return True
        outcome = await link(uow.session, info, [(anchor.kind, anchor.value), ("email", value)], reason="given in a conversation")
        hub.announce_link(uow, outcome)
    return True


async def record_call(
    hub: Hub, tenant: str, conversation_id: int, *, kind: str, name: str, outcome: str, tokens: int = 0,
    latency_ms: int = 0, detail: dict[str, Any] | None = None,
) -> None:
    """Record a model call or a tool call on the conversation (tokens, latency, outcome)."""
    if kind not in CALL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CALL_KINDS)}")
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        await load_conversation(uow.session, info, conversation_id)
        record_event(uow, info, conversation_id, kind=kind, name=name, outcome=outcome, tokens=max(0, tokens),
                     latency_ms=max(0, latency_ms), detail=detail)


async def tokens_used_today(hub: Hub, tenant: str) -> int:
    """Model tokens the tenant's conversations used since midnight in the tenant's time zone."""
    info = await hub.tenants.get(tenant)
    zone = ZoneInfo(info.timezone)
    midnight = dt.datetime.combine(utcnow().astimezone(zone).date(), dt.time(), tzinfo=zone)
    async with reading(hub.db) as session:
        used = await session.scalar(
            select(func.coalesce(func.sum(ConversationEvent.tokens), 0)).where(
                ConversationEvent.tenant_id == info.id, ConversationEvent.kind == "model_call",
                ConversationEvent.created_at >= midnight,
            )
        )
    return int(used or 0)


async def conversation_state(hub: Hub, plugin: str, tenant: str, conversation_id: int) -> dict[str, Any]:
    """The plugin's dialogue state for this conversation ({} at first)."""
    info = await hub.tenants.get(tenant)
    async with reading(hub.db) as session:
        row = await load_conversation(session, info, conversation_id)
    return dict((row.responder_state or {}).get(plugin) or {})


async def set_conversation_state(hub: Hub, plugin: str, tenant: str, conversation_id: int, value: dict[str, Any]) -> None:
    """Replace the plugin's dialogue state for this conversation (an empty dict clears it)."""
    info = await hub.tenants.get(tenant)
    async with hub.unit_of_work() as uow:
        row: Conversation = await load_conversation(uow.session, info, conversation_id)
        state = dict(row.responder_state or {})
        if value:
            state[plugin] = value
        else:
            state.pop(plugin, None)
        row.responder_state = state


async def business_profile(hub: Hub, tenant: str) -> BusinessProfile:
    """The tenant's business profile (services, prices, address, hours)."""
    return (await hub.tenants.get(tenant)).business
