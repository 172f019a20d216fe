"""Linking one person's addresses into one contact, and merging contacts.

`link` is the one resolver every source goes through (webhooks, imports, the
API): it normalises each address, finds the contacts that already own any of
them, creates a contact when none does, adds the missing identities, and
merges contacts when the new evidence shows they are one person. It flushes
but never commits: the caller's use case owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.events import ContactRef, IdentityRef
from hub.models import Appointment, Contact, ContactMerge, Conversation, Identity, Message, Notification, utcnow
from hub.phones import InvalidAddress, normalize_address
from hub.tenants import TenantInfo

PROFILE_FIELDS = ("name", "locale", "timezone", "external_id")


@dataclass
class LinkOutcome:
    """What `link` did: the contact, the identities it added and the contacts it absorbed."""

    contact: ContactRef
    identities: list[IdentityRef]
    """Every identity named in the evidence, in the order given."""
    added: list[IdentityRef] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)
    created: bool = False


# The width of `identities.value`: a longer address cannot be stored (PostgreSQL refuses it).
MAX_ADDRESS_LENGTH = 320


def identity_key(kind: str, raw: str, region: str | None) -> tuple[str, str]:
    """(kind, stored value) for an address: the one place that decides how identities are stored."""
    # The kind is folded like normalize_address folds it, so "Phone" and "phone" are one key.
    folded = kind.strip().lower()
    value = normalize_address(folded, raw, region)
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("too long", raw)
    return folded, value


def _storable(name: str, value: Any) -> bool:
    """Whether a profile value fits its column: PostgreSQL refuses (and SQLite keeps) one that does
    not, and one bad vendor field must not fail the whole event; such evidence is left out."""
    length = getattr(Contact.__table__.c[name].type, "length", None)
    return isinstance(value, str) and "\x00" not in value and (length is None or len(value) <= length)


def _ref(contact: Contact, tenant: TenantInfo) -> ContactRef:
    return ContactRef(contact.id, tenant.slug, contact.name, contact.locale, contact.timezone)


async def find_contact(session: AsyncSession, tenant: TenantInfo, kind: str, raw: str) -> Contact | None:
    """The contact owning this address, or None (raises InvalidAddress for a malformed one)."""
    kind, value = identity_key(kind, raw, tenant.default_region)
    return await session.scalar(
        select(Contact)
        .join(Identity, Identity.contact_id == Contact.id)
        .where(Identity.tenant_id == tenant.id, Identity.kind == kind, Identity.value == value)
    )


async def link(
    session: AsyncSession,
    tenant: TenantInfo,
    addresses: Sequence[tuple[str, str]],
    *,
    profile: dict[str, Any] | None = None,
    reason: str = "shared identity",
) -> LinkOutcome:
    """Resolve (kind, raw address) pairs of one person to one contact, merging where needed."""
    if not addresses:
        raise ValueError("link needs at least one address")
    unknown = [name for name in (profile or {}) if name not in PROFILE_FIELDS]
    if unknown:
        # Checked before anything is written, like the addresses below.
        raise ValueError(f"unknown profile field {unknown[0]!r}")
    keys: list[tuple[str, str]] = []
    for kind, raw in addresses:
        key = identity_key(kind, raw, tenant.default_region)
        if key not in keys:
            keys.append(key)
    existing = {
        (row.kind, row.value): row
        for row in (
            await session.scalars(
                select(Identity).where(
                    Identity.tenant_id == tenant.id,
                    Identity.kind.in_({k for k, _ in keys}),
                    Identity.value.in_({v for _, v in keys}),
                )
            )
        ).all()
        if (row.kind, row.value) in keys
    }
    owner_ids = sorted({row.contact_id for row in existing.values()})
    outcome_created = False
    if owner_ids:
        contact = await session.get_one(Contact, owner_ids[0])
    else:
        contact = Contact(tenant_id=tenant.id, attributes={})
        session.add(contact)
        await session.flush()
        outcome_created = True
    merged: list[int] = []
    for other_id in owner_ids[1:]:
        await merge(session, tenant, keep=contact.id, other=other_id, reason=reason, evidence=[f"{k}:{v}" for k, v in keys])
        merged.append(other_id)
    now = utcnow()
    added: list[IdentityRef] = []
    refs: list[IdentityRef] = []
    for kind, value in keys:
        row = existing.get((kind, value))
        if row is None:
            row = Identity(tenant_id=tenant.id, contact_id=contact.id, kind=kind, value=value, opted_out={})
            session.add(row)
            await session.flush()
            added.append(IdentityRef(row.id, kind, value))
        else:
            row.contact_id = contact.id
            row.last_seen_at = now
        refs.append(IdentityRef(row.id, kind, value))
    for name, value in (profile or {}).items():
        # Evidence fills gaps; it never overwrites what an operator or earlier source set.
        if value and not getattr(contact, name) and _storable(name, value):
            setattr(contact, name, value)
    await session.flush()
    return LinkOutcome(_ref(contact, tenant), refs, added, merged, outcome_created)


async def merge(
    session: AsyncSession, tenant: TenantInfo, *, keep: int, other: int, reason: str, evidence: list[str]
) -> None:
    """Move everything of contact `other` onto `keep`, mark `other` merged, and record why."""
    kept = await session.get_one(Contact, keep)
    absorbed = await session.get_one(Contact, other)
    await session.execute(update(Identity).where(Identity.contact_id == other).values(contact_id=keep))
    await session.execute(update(Appointment).where(Appointment.contact_id == other).values(contact_id=keep))
    await session.execute(update(Notification).where(Notification.contact_id == other).values(contact_id=keep))
    kept_mediums = set(
        (await session.scalars(select(Conversation.medium).where(Conversation.contact_id == keep))).all()
    )
    for conversation in (await session.scalars(select(Conversation).where(Conversation.contact_id == other))).all():
        if conversation.medium in kept_mediums:
            # Keep one thread per medium: move the messages, drop the empty conversation.
            target = await session.scalar(
                select(Conversation).where(Conversation.contact_id == keep, Conversation.medium == conversation.medium)
            )
            assert target is not None
            await session.execute(
                update(Message).where(Message.conversation_id == conversation.id).values(conversation_id=target.id)
            )
            # The merged thread is as recent as the more recent of the two, in both directions.
            for column in ("last_inbound_at", "last_outbound_at"):
                theirs = getattr(conversation, column)
                ours = getattr(target, column)
                if theirs and (ours is None or theirs > ours):
                    setattr(target, column, theirs)
            await session.delete(conversation)
        else:
            conversation.contact_id = keep
    for name in PROFILE_FIELDS:
        if not getattr(kept, name) and getattr(absorbed, name):
            setattr(kept, name, getattr(absorbed, name))
    kept.attributes = {**(absorbed.attributes or {}), **(kept.attributes or {})}
    absorbed.merged_into_id = keep
    session.add(
        ContactMerge(
            tenant_id=tenant.id, kept_contact_id=keep, merged_contact_id=other, reason=reason, evidence={"identities": evidence}
        )
    )
    await session.flush()


async def set_opt_out(session: AsyncSession, tenant: TenantInfo, kind: str, raw: str, medium: str, opted_out: bool) -> bool:
    """Opt an address out of (or back into) one medium; True when that changed anything."""
    kind, value = identity_key(kind, raw, tenant.default_region)
    identity = await session.scalar(
        select(Identity).where(Identity.tenant_id == tenant.id, Identity.kind == kind, Identity.value == value)
    )
    if identity is None:
        if not opted_out:
            return False
        await link(session, tenant, [(kind, value)], reason="opt-out")
        identity = await session.scalar(
            select(Identity).where(Identity.tenant_id == tenant.id, Identity.kind == kind, Identity.value == value)
        )
        assert identity is not None
    current = dict(identity.opted_out or {})
    if opted_out == (medium in current):
        return False
    if opted_out:
        current[medium] = utcnow().isoformat()
    else:
        current.pop(medium)
    identity.opted_out = current
    await session.flush()
    return True
