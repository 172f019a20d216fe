"""Merging contacts, undoing merges, and merge proposals for evidence that is not certain.

`merge` moves everything of one contact onto another and records what it
moved, so `unmerge` can put it back; the `contact_merges` rows are the audit
trail and are never deleted. Uncertain evidence becomes a `MergeProposal`
(`propose`, `propose_lookalikes`) that an operator accepts or rejects; a
rejected pair is never merged by evidence again. Like the resolver in
`hub.contacts`, nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import phonenumbers
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import (
    Appointment,
    Contact,
    ContactMerge,
    Conversation,
    Identity,
    MergeProposal,
    Message,
    Notification,
    utcnow,
)
from hub.phones import WHATSAPP_ID
from hub.tenants import TenantInfo

PROFILE_FIELDS = ("name", "locale", "timezone", "external_id")

# Kinds a person normally has one of: two contacts that each hold one are not merged on a
# single shared address (a family's shared phone, a work and a home email), only proposed.
PERSONAL_KINDS = ("phone", "email", WHATSAPP_ID)

# Proposal reasons, as `hub contacts duplicates` prints them.
CONFLICTING_IDENTITIES = "conflicting identities"
SAME_NAME_SAME_DIGITS = "same name, same last 8 digits"
BRAZIL_NINTH_DIGIT = "brazil ninth digit"

PROPOSAL_OPEN, PROPOSAL_ACCEPTED, PROPOSAL_REJECTED = "open", "accepted", "rejected"

# Phones are compared on their last eight digits for the same-name proposal.
TAIL_DIGITS = 8


class MergeError(ValueError):
    """A merge, unmerge or proposal decision that cannot be done; the message says why."""


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


async def _proposal(session: AsyncSession, tenant: TenantInfo, a: int, b: int) -> MergeProposal | None:
    low, high = _pair(a, b)
    return await session.scalar(
        select(MergeProposal).where(
            MergeProposal.tenant_id == tenant.id, MergeProposal.contact_id == low, MergeProposal.other_contact_id == high
        )
    )


async def rejected_pair(session: AsyncSession, tenant: TenantInfo, a: int, b: int) -> bool:
    """Whether an operator said these two are different people (rejected, or unmerged)."""
    found = await _proposal(session, tenant, a, b)
    return found is not None and found.status == PROPOSAL_REJECTED


async def propose(
    session: AsyncSession, tenant: TenantInfo, a: int, b: int, reason: str, evidence: dict[str, Any]
) -> int | None:
    """Record that contacts `a` and `b` may be one person; the proposal's id, or None if the pair already has one."""
    low, high = _pair(a, b)
    insert = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(MergeProposal)
    statement = (
        insert.values(
            tenant_id=tenant.id, contact_id=low, other_contact_id=high, reason=reason, evidence=evidence,
            status=PROPOSAL_OPEN, created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "contact_id", "other_contact_id"])
        .returning(MergeProposal.id)
    )
    found = await session.scalar(statement)
    return int(found) if found is not None else None


async def propose_lookalikes(
    session: AsyncSession, tenant: TenantInfo, contact_id: int, name: str | None, phone: str
) -> list[int]:
    """Proposals for a new phone that looks like another contact's: the same last eight digits under
    another country code with the same name, or a Brazilian number with and without its ninth digit."""
    proposed: list[int] = []
    if name:
        rows = await session.execute(
            select(Identity.contact_id, Identity.value)
            .join(Contact, Contact.id == Identity.contact_id)
            .where(
                Identity.tenant_id == tenant.id, Identity.kind == "phone", Identity.phone_tail == phone[-TAIL_DIGITS:],
                Identity.contact_id != contact_id, func.lower(Contact.name) == name.lower(),
            )
            .limit(10)
        )
        for other_id, value in rows.all():
            if _country_code(value) != _country_code(phone):
                found = await propose(session, tenant, contact_id, other_id, SAME_NAME_SAME_DIGITS,
                                      {"identities": [f"phone:{phone}", f"phone:{value}"], "name": name})
                if found is not None:
                    proposed.append(found)
    twin = brazil_twin(phone)
    if twin is not None:
        twin_owner = await session.scalar(
            select(Identity.contact_id).where(
                Identity.tenant_id == tenant.id, Identity.kind == "phone", Identity.match_key == twin,
                Identity.contact_id != contact_id,
            )
        )
        if twin_owner is not None:
            found = await propose(session, tenant, contact_id, twin_owner, BRAZIL_NINTH_DIGIT,
                                  {"identities": [f"phone:{phone}", f"phone:{twin}"]})
            if found is not None:
                proposed.append(found)
    return proposed


def _country_code(e164: str) -> int:
    return int(phonenumbers.parse(e164, None).country_code or 0)


def brazil_twin(phone: str) -> str | None:
    """A Brazilian number's other form when its ninth digit cannot be inferred: the 8-digit landline-looking
    form (WhatsApp Business on a landline, or an old mobile id) beside the 9-digit mobile with the same digits."""
    if not phone.startswith("+55"):
        return None
    national = phone[3:]
    if len(national) == 10 and national[2] in "2345":
        return f"+55{national[:2]}9{national[2:]}"
    if len(national) == 11 and national[2] == "9" and national[3] in "2345":
        return f"+55{national[:2]}{national[3:]}"
    return None


# --- merging ------------------------------------------------------------------------------


async def merge(
    session: AsyncSession,
    tenant: TenantInfo,
    *,
    keep: int,
    other: int,
    reason: str,
    evidence: list[str],
    proposal_id: int | None = None,
) -> ContactMerge:
    """Move everything of contact `other` onto `keep`, mark `other` merged, and record what moved (for `unmerge`)."""
    kept = await session.get_one(Contact, keep)
    absorbed = await session.get_one(Contact, other)

    async def ids(model: Any) -> list[int]:
        return list((await session.scalars(select(model.id).where(model.contact_id == other))).all())

    moved: dict[str, Any] = {
        "identities": await ids(Identity),
        "appointments": await ids(Appointment),
        "notifications": await ids(Notification),
        "conversations": [],
        "threads": [],
        "kept_threads": {},
        "profile": [],
        "attributes": dict(kept.attributes or {}),
    }
    await session.execute(update(Identity).where(Identity.contact_id == other).values(contact_id=keep))
    await session.execute(update(Appointment).where(Appointment.contact_id == other).values(contact_id=keep))
    await session.execute(update(Notification).where(Notification.contact_id == other).values(contact_id=keep))
    kept_threads = {
        c.medium: c for c in (await session.scalars(select(Conversation).where(Conversation.contact_id == keep))).all()
    }
    for conversation in (await session.scalars(select(Conversation).where(Conversation.contact_id == other))).all():
        target = kept_threads.get(conversation.medium)
        if target is None:
            conversation.contact_id = keep
            moved["conversations"].append(conversation.id)
            continue
        # Keep one thread per medium: move the messages, drop the empty conversation.
        messages = list((await session.scalars(select(Message.id).where(Message.conversation_id == conversation.id))).all())
        moved["threads"].append({
            "into": target.id, "medium": conversation.medium, "channel": conversation.channel,
            "external_id": conversation.external_id, "messages": messages,
            "last_inbound_at": _iso(conversation.last_inbound_at), "last_outbound_at": _iso(conversation.last_outbound_at),
        })
        moved["kept_threads"][str(target.id)] = {
            "last_inbound_at": _iso(target.last_inbound_at), "last_outbound_at": _iso(target.last_outbound_at)
        }
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
    for name in PROFILE_FIELDS:
        if not getattr(kept, name) and getattr(absorbed, name):
            setattr(kept, name, getattr(absorbed, name))
            moved["profile"].append(name)
    kept.attributes = {**(absorbed.attributes or {}), **(kept.attributes or {})}
    absorbed.merged_into_id = keep
    record = ContactMerge(
        tenant_id=tenant.id, kept_contact_id=keep, merged_contact_id=other, reason=reason,
        evidence={"identities": evidence}, moved=moved, proposal_id=proposal_id,
    )
    session.add(record)
    await session.flush()
    return record


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


async def unmerge(session: AsyncSession, tenant: TenantInfo, merged_contact_id: int) -> ContactMerge:
    """Undo the merge that absorbed a contact: what moved goes back, the record stays (marked undone),
    and the pair is remembered as two people so evidence never merges them again."""
    record = await session.scalar(
        select(ContactMerge)
        .where(ContactMerge.tenant_id == tenant.id, ContactMerge.merged_contact_id == merged_contact_id,
               ContactMerge.undone_at.is_(None))
        .order_by(ContactMerge.id.desc())
        .limit(1)
    )
    if record is None:
        raise MergeError(f"contact {merged_contact_id} was not merged into another (or its merge was undone)")
    keep, other = record.kept_contact_id, record.merged_contact_id
    kept = await session.get_one(Contact, keep)
    absorbed = await session.get_one(Contact, other)
    if kept.merged_into_id is not None:
        raise MergeError(
            f"contact {keep} was since merged into {kept.merged_into_id}: unmerge {keep} first"
        )
    moved = record.moved or {}
    for model, key in ((Identity, "identities"), (Appointment, "appointments"), (Notification, "notifications"),
                       (Conversation, "conversations")):
        if moved.get(key):
            await session.execute(
                update(model).where(model.id.in_(moved[key]), model.contact_id == keep).values(contact_id=other)
            )
    for thread in moved.get("threads", []):
        conversation = Conversation(
            tenant_id=tenant.id, contact_id=other, medium=thread["medium"], channel=thread["channel"],
            external_id=thread["external_id"], last_inbound_at=_time(thread["last_inbound_at"]),
            last_outbound_at=_time(thread["last_outbound_at"]),
        )
        session.add(conversation)
        await session.flush()
        if thread["messages"]:
            await session.execute(
                update(Message)
                .where(Message.id.in_(thread["messages"]), Message.conversation_id == thread["into"])
                .values(conversation_id=conversation.id)
            )
    for target_id, times in (moved.get("kept_threads") or {}).items():
        target = await session.get(Conversation, int(target_id))
        if target is not None:
            target.last_inbound_at = _time(times["last_inbound_at"])
            target.last_outbound_at = _time(times["last_outbound_at"])
    for name in moved.get("profile", []):
        if getattr(kept, name) == getattr(absorbed, name):
            setattr(kept, name, None)
    before = moved.get("attributes")
    if before is not None:
        contributed = {k for k in (absorbed.attributes or {}) if k not in before}
        kept.attributes = {k: v for k, v in (kept.attributes or {}).items() if k not in contributed}
    absorbed.merged_into_id = None
    record.undone_at = utcnow()
    await _decide(session, tenant, keep, other, PROPOSAL_REJECTED, reason="unmerged")
    await session.flush()
    return record


async def _decide(session: AsyncSession, tenant: TenantInfo, a: int, b: int, status: str, *, reason: str) -> MergeProposal:
    found = await _proposal(session, tenant, a, b)
    if found is None:
        low, high = _pair(a, b)
        found = MergeProposal(tenant_id=tenant.id, contact_id=low, other_contact_id=high, reason=reason,
                              evidence={}, status=status)
        session.add(found)
    found.status = status
    found.decided_at = utcnow()
    await session.flush()
    return found


async def accept_proposal(session: AsyncSession, tenant: TenantInfo, proposal_id: int) -> ContactMerge:
    """Merge the pair an open proposal names (into the older contact) and mark it accepted."""
    proposal = await _open_proposal(session, tenant, proposal_id)
    for contact_id in (proposal.contact_id, proposal.other_contact_id):
        contact = await session.get_one(Contact, contact_id)
        if contact.merged_into_id is not None:
            raise MergeError(f"contact {contact_id} was since merged into {contact.merged_into_id}")
    evidence = list((proposal.evidence or {}).get("identities", []))
    record = await merge(session, tenant, keep=proposal.contact_id, other=proposal.other_contact_id,
                         reason=f"accepted proposal {proposal.id}: {proposal.reason}", evidence=evidence,
                         proposal_id=proposal.id)
    proposal.status = PROPOSAL_ACCEPTED
    proposal.decided_at = utcnow()
    await session.flush()
    return record


async def reject_proposal(session: AsyncSession, tenant: TenantInfo, proposal_id: int) -> MergeProposal:
    """Mark an open proposal rejected: the two contacts stay apart, whatever evidence comes later."""
    proposal = await _open_proposal(session, tenant, proposal_id)
    proposal.status = PROPOSAL_REJECTED
    proposal.decided_at = utcnow()
    await session.flush()
    return proposal


async def _open_proposal(session: AsyncSession, tenant: TenantInfo, proposal_id: int) -> MergeProposal:
    proposal = await session.scalar(
        select(MergeProposal).where(MergeProposal.id == proposal_id, MergeProposal.tenant_id == tenant.id)
    )
    if proposal is None:
        raise MergeError(f"no merge proposal {proposal_id} in tenant {tenant.slug}")
    if proposal.status != PROPOSAL_OPEN:
        raise MergeError(f"merge proposal {proposal_id} is already {proposal.status}")
    return proposal


