"""Linking one person's addresses into one contact: the identity resolver.

`link` is the one resolver every source goes through (webhooks, imports, the
API): it normalises each address, finds the contacts that already own any of
them (by match key, `hub.phones.match_key`), creates a contact when none does,
adds the missing identities, and merges contacts when the evidence is certain.
Evidence that is not certain (see `docs/architecture.md`, the identity rules)
becomes a merge proposal for an operator instead (`hub.merges`). It flushes but never commits: the
caller's use case owns the transaction.

Linking is safe under concurrency: identities are inserted with
`ON CONFLICT DO NOTHING`, and a link that lost a race to a concurrent one
undoes the contact it had just made and resolves again against the winner's
rows (PostgreSQL waits for the winner to commit; SQLite serialises writers).

`link_many` resolves a batch of such requests (a bulk send to thousands of
addresses) with a constant number of statements per chunk, and hands each
request whose evidence is not simple to `link`, so every request gets what
`link` would have given it had the batch been linked one by one, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, String, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.events import ContactRef, IdentityRef
from hub.merges import (
    CONFLICTING_IDENTITIES,
    PERSONAL_KINDS,
    PROFILE_FIELDS,
    TAIL_DIGITS,
    brazil_twin,
    merge,
    propose,
    propose_lookalikes,
    rejected_pair,
)
from hub.models import Contact, Identity, UTCDateTime, utcnow
from hub.phones import InvalidAddress, match_key, normalize_address
from hub.tenants import TenantInfo

# A link that loses a race re-reads and tries again; more rounds than racers is never needed.
LINK_ATTEMPTS = 5

# The width of `identities.value`: a longer address cannot be stored (PostgreSQL refuses it).
MAX_ADDRESS_LENGTH = 320

_INSERT_ORDER = {kind: rank for rank, kind in enumerate(PERSONAL_KINDS)}

# `last_seen_at` is rewritten at most this often: a burst of messages from one person is one write.
SEEN_RESOLUTION = dt.timedelta(minutes=1)


@dataclass
class LinkOutcome:
    """What `link` did: the contact, the identities it added, the contacts it absorbed, the merges it proposed."""

    contact: ContactRef
    identities: list[IdentityRef]
    """Every identity named in the evidence, in the order given."""
    added: list[IdentityRef] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)
    created: bool = False
    proposed: list[int] = field(default_factory=list)
    """Ids of merge proposals this link recorded."""


@dataclass(frozen=True)
class Key:
    """One address as stored: its kind, stored value and match key."""

    kind: str
    value: str
    match: str


def identity_key(kind: str, raw: str, region: str | None) -> tuple[str, str]:
    """(kind, stored value) for an address: the one place that decides how identities are stored."""
    key = _key(kind, raw, region)
    return key.kind, key.value


def _key(kind: str, raw: str, region: str | None) -> Key:
    # The kind is folded like normalize_address folds it, so "Phone" and "phone" are one key.
    folded = kind.strip().lower()
    value = normalize_address(folded, raw, region)
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("too long", raw)
    return Key(folded, value, match_key(folded, value))


def _storable(name: str, value: Any) -> bool:
    """Whether a profile value fits its column: PostgreSQL refuses (and SQLite keeps) one that does
    not, and one bad vendor field must not fail the whole event; such evidence is left out."""
    length = getattr(Contact.__table__.c[name].type, "length", None)
    return isinstance(value, str) and "\x00" not in value and (length is None or len(value) <= length)


def _ref(contact: Contact, tenant: TenantInfo) -> ContactRef:
    return ContactRef(contact.id, tenant.slug, contact.name, contact.locale, contact.timezone)


def _more_specific(kind: str, stored: str, new: str) -> bool:
    """Whether `new` (same match key) says more than `stored`: an Argentine number now known to be a mobile."""
    return kind == "phone" and new.startswith("+549") and not stored.startswith("+549")


async def find_contact(session: AsyncSession, tenant: TenantInfo, kind: str, raw: str) -> Contact | None:
    """The contact owning this address, or None (raises InvalidAddress for a malformed one)."""
    key = _key(kind, raw, tenant.default_region)
    return await session.scalar(
        select(Contact)
        .join(Identity, Identity.contact_id == Contact.id)
        .where(Identity.tenant_id == tenant.id, Identity.kind == key.kind, Identity.match_key == key.match)
    )


async def link(
    session: AsyncSession,
    tenant: TenantInfo,
    addresses: Sequence[tuple[str, str]],
    *,
    profile: dict[str, Any] | None = None,
    reason: str = "shared identity",
    certain: bool = False,
) -> LinkOutcome:
    """Resolve (kind, raw address) pairs of one person to one contact, merging where the evidence is certain.

    `certain` says the source itself vouches that the addresses are one
    person's (WhatsApp sending a business-scoped id with its phone number):
    contacts they join are merged even when each holds an address of its own.
    """
    if not addresses:
        raise ValueError("link needs at least one address")
    unknown = [name for name in (profile or {}) if name not in PROFILE_FIELDS]
    if unknown:
        # Checked before anything is written, like the addresses below.
        raise ValueError(f"unknown profile field {unknown[0]!r}")
    keys: dict[tuple[str, str], Key] = {}
    for kind, raw in addresses:
        key = _key(kind, raw, tenant.default_region)
        known = keys.get((key.kind, key.match))
        if known is None or _more_specific(key.kind, known.value, key.value):
            keys[(key.kind, key.match)] = key
    if len(keys) == 1:
        key = next(iter(keys.values()))
        found, fast = await _known(session, tenant, key, profile or {})
        if not found:
            fast = await _create(session, tenant, key, profile or {})
        if fast is not None:
            return fast
    for _ in range(LINK_ATTEMPTS):
        outcome = await _link_once(session, tenant, list(keys.values()), profile or {}, reason, certain)
        if outcome is not None:
            return outcome
    raise RuntimeError("contact linking kept losing races; giving up")  # needs LINK_ATTEMPTS concurrent winners in a row


@dataclass(frozen=True)
class _FastPath:
    """The fast path's statements, built once: constructing a statement costs more CPU than running it.

    On PostgreSQL each case is one round trip (data-modifying CTEs); SQLite runs the plain pairs.
    """

    find: Any
    mark_seen: Any
    find_and_mark_seen: Any
    create: Any


def _fast_path() -> _FastPath:
    identity, contact = Identity.__table__, Contact.__table__
    find = (
        select(identity.c.id, identity.c.value, identity.c.last_seen_at, contact.c.id.label("contact_id"),
               *(contact.c[name] for name in PROFILE_FIELDS))
        .join(contact, contact.c.id == identity.c.contact_id)
        .where(identity.c.tenant_id == bindparam("p_tenant_id"), identity.c.kind == bindparam("p_kind"),
               identity.c.match_key == bindparam("p_match_key"))
    )
    mark_seen = update(identity).where(identity.c.id == bindparam("p_identity_id")).values(last_seen_at=bindparam("p_now"))
    found = find.cte("found")
    marked = (
        update(identity)
        .where(identity.c.id.in_(select(found.c.id)), identity.c.last_seen_at < bindparam("p_cutoff", type_=UTCDateTime()))
        .values(last_seen_at=bindparam("p_now", type_=UTCDateTime()))
        .returning(identity.c.id)
        .cte("marked")
    )
    now = bindparam("p_now", type_=UTCDateTime())
    new_contact = (
        insert(contact)
        .values(tenant_id=bindparam("p_tenant_id", type_=BigInteger()), attributes={}, created_at=now, updated_at=now,
                **{name: bindparam(f"p_{name}", type_=contact.c[name].type) for name in PROFILE_FIELDS})
        .returning(contact.c.id)
        .cte("new_contact")
    )
    columns = ("tenant_id", "contact_id", "kind", "value", "match_key", "phone_tail", "opted_out", "first_seen_at", "last_seen_at")
    new_identity = (
        pg_insert(identity)
        .from_select(columns, select(
            bindparam("p_tenant_id", type_=BigInteger()), new_contact.c.id, bindparam("p_kind", type_=String()),
            bindparam("p_value", type_=String()), bindparam("p_match_key", type_=String()),
            bindparam("p_phone_tail", type_=String()), bindparam("p_opted_out", type_=identity.c.opted_out.type), now, now,
        ))
        .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "match_key"])
        .returning(identity.c.id)
        .cte("new_identity")
    )
    create = select(new_contact.c.id.label("contact_id"), select(new_identity.c.id).scalar_subquery().label("identity_id"))
    return _FastPath(find, mark_seen, select(found).add_cte(marked), create)


_FAST = _fast_path()


async def _known(
    session: AsyncSession, tenant: TenantInfo, key: Key, profile: dict[str, Any]
) -> tuple[bool, LinkOutcome | None]:
    """The usual case (every further message from a known person) on Core rows: (whether a contact
    owns the address, the outcome when nothing is left to do, else None for the full path)."""
    connection = await session.connection()
    now = utcnow()
    params = {"p_tenant_id": tenant.id, "p_kind": key.kind, "p_match_key": key.match}
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        params |= {"p_now": now, "p_cutoff": now - SEEN_RESOLUTION}
    row = (await connection.execute(_FAST.find_and_mark_seen if postgresql else _FAST.find, params)).first()
    if row is None:
        return False, None
    if _more_specific(key.kind, row.value, key.value) or any(
        value and not getattr(row, name) and _storable(name, value) for name, value in profile.items()
    ):
        return True, None
    if not postgresql and row.last_seen_at < now - SEEN_RESOLUTION:
        await connection.execute(_FAST.mark_seen, {"p_identity_id": row.id, "p_now": now})
    ref = IdentityRef(row.id, key.kind, row.value)
    return True, LinkOutcome(ContactRef(row.contact_id, tenant.slug, row.name, row.locale, row.timezone), [ref])


async def _create(session: AsyncSession, tenant: TenantInfo, key: Key, profile: dict[str, Any]) -> LinkOutcome | None:
    """A first address of a new person: contact and identity; None when a concurrent link took the
    address first (then nothing is left behind and the full path resolves against the winner's rows)."""
    connection = await session.connection()
    now = utcnow()
    values = {name: value for name, value in profile.items() if value and _storable(name, value)}
    if connection.dialect.name == "postgresql":
        row = (await connection.execute(_FAST.create, {
            "p_tenant_id": tenant.id, "p_now": now, **{f"p_{name}": values.get(name) for name in PROFILE_FIELDS},
            "p_kind": key.kind, "p_value": key.value, "p_match_key": key.match, "p_phone_tail": _tail(key), "p_opted_out": {},
        })).one()
        contact_id, identity_id = int(row.contact_id), row.identity_id
    else:
        contact_id = int(await connection.scalar(
            insert(Contact.__table__).values(tenant_id=tenant.id, attributes={}, created_at=now, updated_at=now, **values)
            .returning(Contact.__table__.c.id)
        ))
        identity_id = (await _insert_identities(session, tenant, contact_id, [key], now)).get((key.kind, key.match))
    if identity_id is None:
        await connection.execute(delete(Contact.__table__).where(Contact.__table__.c.id == contact_id))
        return None
    ref = IdentityRef(int(identity_id), key.kind, key.value)
    contact = ContactRef(contact_id, tenant.slug, values.get("name"), values.get("locale"), values.get("timezone"))
    proposed = await propose_lookalikes(session, tenant, contact.id, contact.name, key.value) if key.kind == "phone" else []
    return LinkOutcome(contact, [ref], [ref], [], True, proposed)


async def _link_once(
    session: AsyncSession, tenant: TenantInfo, keys: list[Key], profile: dict[str, Any], reason: str, certain: bool
) -> LinkOutcome | None:
    """One resolution round; None when a concurrent link took one of the addresses first (then nothing is left behind)."""
    existing, owners = await _existing(session, tenant, keys)
    owner_ids = sorted(owners)
    created = False
    if owner_ids:
        contact = owners[owner_ids[0]]
    else:
        contact = Contact(tenant_id=tenant.id, attributes={})
        session.add(contact)
        await session.flush()
        created = True
    evidence = [f"{k.kind}:{k.value}" for k in keys]
    merged: list[int] = []
    proposed: list[int] = []
    for other_id in owner_ids[1:]:
        if await rejected_pair(session, tenant, contact.id, other_id):
            continue
        if certain or not await _conflicting(session, contact.id, other_id):
            await merge(session, tenant, keep=contact.id, other=other_id, reason=reason, evidence=evidence)
            merged.append(other_id)
        else:
            proposal = await propose(session, tenant, contact.id, other_id, CONFLICTING_IDENTITIES, {"identities": evidence})
            if proposal is not None:
                proposed.append(proposal)
    absorbed = set(merged) | {contact.id}
    now = utcnow()
    missing = [k for k in keys if (k.kind, k.match) not in existing]
    inserted = await _insert_identities(session, tenant, contact.id, missing, now)
    if len(inserted) < len(missing):
        # A concurrent link owns one of these addresses now: resolve again against its rows.
        if created:
            await session.execute(delete(Identity).where(Identity.contact_id == contact.id))
            await session.delete(contact)
            await session.flush()
        return None
    added: list[IdentityRef] = []
    refs: list[IdentityRef] = []
    seen: list[int] = []
    for key in keys:
        row = existing.get((key.kind, key.match))
        if row is None:
            ref = IdentityRef(inserted[(key.kind, key.match)], key.kind, key.value)
            added.append(ref)
        else:
            if row.contact_id in absorbed and row.contact_id != contact.id:
                row.contact_id = contact.id
            if row.last_seen_at < now - SEEN_RESOLUTION:
                seen.append(row.id)
            if _more_specific(key.kind, row.value, key.value):
                row.value = key.value
            ref = IdentityRef(row.id, key.kind, row.value)
        refs.append(ref)
    if seen:
        # A plain UPDATE, not the unit of work: this runs for nearly every inbound message.
        await session.execute(
            update(Identity).where(Identity.id.in_(seen)).values(last_seen_at=now).execution_options(synchronize_session=False)
        )
    for name, value in profile.items():
        # Evidence fills gaps; it never overwrites what an operator or earlier source set.
        if value and not getattr(contact, name) and _storable(name, value):
            setattr(contact, name, value)
    await session.flush()
    for ref in added:
        if ref.kind == "phone":
            proposed += await propose_lookalikes(session, tenant, contact.id, contact.name, ref.value)
    return LinkOutcome(_ref(contact, tenant), refs, added, merged, created, proposed)


async def _existing(
    session: AsyncSession, tenant: TenantInfo, keys: list[Key]
) -> tuple[dict[tuple[str, str], Identity], dict[int, Contact]]:
    """The identities these keys name, and their contacts (fetched in the same round trip)."""
    rows = await session.execute(
        select(Identity, Contact)
        .join(Contact, Contact.id == Identity.contact_id)
        .where(
            Identity.tenant_id == tenant.id,
            or_(*(and_(Identity.kind == k.kind, Identity.match_key == k.match) for k in keys)),
        )
    )
    found = rows.all()
    return {(row.kind, row.match_key): row for row, _ in found}, {owner.id: owner for _, owner in found}


async def _insert_identities(
    session: AsyncSession, tenant: TenantInfo, contact_id: int, keys: list[Key], now: dt.datetime
) -> dict[tuple[str, str], int]:
    """Insert what no one owns yet; (kind, match key) -> id of each row this call inserted."""
    if not keys:
        return {}
    # One order for every racer, so two links inserting the same pair never wait on each other in a
    # cycle; personal kinds first, in the order people and forms list them (ids follow it).
    ordered = sorted(keys, key=lambda k: (_INSERT_ORDER.get(k.kind, len(_INSERT_ORDER)), k.kind, k.match))
    values: list[dict[str, Any]] = [
        {
            "tenant_id": tenant.id, "contact_id": contact_id, "kind": k.kind, "value": k.value, "match_key": k.match,
            "phone_tail": _tail(k), "opted_out": {}, "first_seen_at": now, "last_seen_at": now,
        }
        for k in ordered
    ]
    dialect = session.get_bind().dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(Identity)
    statement = (
        insert.values(values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "match_key"])
        .returning(Identity.id, Identity.kind, Identity.match_key)
    )
    rows = (await session.execute(statement)).all()
    return {(kind, key): int(identity_id) for identity_id, kind, key in rows}


# Rows per multi-row statement of `link_many`: PostgreSQL takes at most 32,767 parameters in one.
LINK_CHUNK = 1000


@dataclass(frozen=True)
class LinkRequest:
    """One person's evidence for `link_many`: what `link` takes as arguments."""

    addresses: Sequence[tuple[str, str]]
    profile: dict[str, Any] | None = None
    reason: str = "shared identity"
    certain: bool = False


@dataclass
class _Group:
    """The requests of a batch that name one address (kind, match key), in batch order."""

    key: Key
    members: list[int] = field(default_factory=list)
    row: Any = None
    """The stored identity and its contact's profile, when one exists."""


async def link_many(session: AsyncSession, tenant: TenantInfo, requests: Sequence[LinkRequest]) -> list[LinkOutcome]:
    """`link` for a batch: each request's outcome, as linking them one by one in order would give.

    The usual cases (one address per request, either known or new) take a constant number of
    statements per chunk of the batch; a request with several addresses, one that fills a profile
    gap, refines a stored number, may need a proposal, or lost a race, goes through `link`, as do
    the requests that share an address or a contact with it (so their order still holds).
    """
    keyed: list[dict[tuple[str, str], Key]] = []
    for request in requests:
        # The same checks, in the same order, as `link`: nothing is written when one request is bad.
        if not request.addresses:
            raise ValueError("link needs at least one address")
        unknown = [name for name in (request.profile or {}) if name not in PROFILE_FIELDS]
        if unknown:
            raise ValueError(f"unknown profile field {unknown[0]!r}")
        keys: dict[tuple[str, str], Key] = {}
        for kind, raw in request.addresses:
            key = _key(kind, raw, tenant.default_region)
            known = keys.get((key.kind, key.match))
            if known is None or _more_specific(key.kind, known.value, key.value):
                keys[(key.kind, key.match)] = key
        keyed.append(keys)
    groups: dict[tuple[str, str], _Group] = {}
    for index, keys in enumerate(keyed):
        for match, key in keys.items():
            groups.setdefault(match, _Group(key)).members.append(index)
    for chunk in _chunks(list(groups.values())):
        for row in await _stored(session, tenant, [group.key for group in chunk]):
            groups[(row.kind, row.match_key)].row = row
    slow = {index for index, keys in enumerate(keyed) if len(keys) > 1}
    slow |= await _not_simple(session, tenant, keyed, groups, requests)
    _spread(slow, keyed, groups)
    outcomes: dict[int, LinkOutcome] = {}
    now = utcnow()
    fresh = [g for g in groups.values() if g.row is None and g.members[0] not in slow]
    lost = await _create_many(session, tenant, fresh, requests, now, outcomes)
    if lost:
        slow |= lost
        _spread(slow, keyed, groups)
        for index in lost:
            outcomes.pop(index, None)
    seen = [g.row.id for g in groups.values()
            if g.row is not None and g.members[0] not in slow and g.row.last_seen_at < now - SEEN_RESOLUTION]
    for part in _chunks(seen):
        await session.execute(
            update(Identity).where(Identity.id.in_(part)).values(last_seen_at=now).execution_options(synchronize_session=False)
        )
    for group in groups.values():
        if group.row is None or group.members[0] in slow:
            continue
        row = group.row
        contact = ContactRef(row.contact_id, tenant.slug, row.name, row.locale, row.timezone)
        for index in group.members:
            outcomes[index] = LinkOutcome(contact, [IdentityRef(row.id, group.key.kind, row.value)])
    for index in sorted(slow):
        request = requests[index]
        outcomes[index] = await link(session, tenant, request.addresses, profile=request.profile, reason=request.reason,
                                     certain=request.certain)
    return [outcomes[index] for index in range(len(requests))]


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[start:start + LINK_CHUNK] for start in range(0, len(items), LINK_CHUNK)]


async def _stored(session: AsyncSession, tenant: TenantInfo, keys: list[Key]) -> list[Any]:
    """The stored identities these keys name, with their contacts' profiles: one SELECT."""
    identity, contact = Identity.__table__, Contact.__table__
    by_kind: dict[str, list[str]] = {}
    for key in keys:
        by_kind.setdefault(key.kind, []).append(key.match)
    rows = await session.execute(
        select(identity.c.id, identity.c.kind, identity.c.match_key, identity.c.value, identity.c.last_seen_at,
               identity.c.contact_id, *(contact.c[name] for name in PROFILE_FIELDS))
        .join(contact, contact.c.id == identity.c.contact_id)
        .where(identity.c.tenant_id == tenant.id,
               or_(*(and_(identity.c.kind == kind, identity.c.match_key.in_(matches)) for kind, matches in by_kind.items())))
    )
    return list(rows.all())


def _fills_gap(have: Any, profile: dict[str, Any] | None) -> bool:
    """Whether `profile` would fill a field `have` (a row or a dict) leaves empty: `link` then writes it."""
    get = have.get if isinstance(have, dict) else (lambda name: getattr(have, name))
    return any(value and not get(name) and _storable(name, value) for name, value in (profile or {}).items())


def _profile_values(profile: dict[str, Any] | None) -> dict[str, Any]:
    if not profile:
        return {}
    return {name: value for name, value in profile.items() if value and _storable(name, value)}


async def _not_simple(
    session: AsyncSession, tenant: TenantInfo, keyed: list[dict[tuple[str, str], Key]], groups: dict[tuple[str, str], _Group],
    requests: Sequence[LinkRequest],
) -> set[int]:
    """Requests of single-address groups that `link` would not answer on its fast path."""
    slow: set[int] = set()
    phones: dict[str, list[_Group]] = {}
    for group in groups.values():
        first = group.members[0]
        if group.row is not None:
            stored, have = group.row.value, group.row
            later = group.members
        else:
            # The first request makes the contact; every later one must then find it as it is.
            stored, have = group.key.value, _profile_values(requests[first].profile)
            later = group.members[1:]
        if any(_more_specific(group.key.kind, stored, keyed[i][(group.key.kind, group.key.match)].value)
               or _fills_gap(have, requests[i].profile) for i in later):
            slow.update(group.members)
        if group.key.kind == "phone":
            phones.setdefault(group.key.value[-TAIL_DIGITS:], []).append(group)
    # A new phone may look like another contact's (`propose_lookalikes`): such requests go through
    # `link`, which records the proposal. Two numbers of the batch with one tail are handed on alike.
    new = [g for g in groups.values() if g.key.kind == "phone" and g.row is None]
    batch_keys = {g.key.match for g in groups.values() if g.key.kind == "phone"}
    for group in new:
        twin = brazil_twin(group.key.value)
        if len(phones[group.key.value[-TAIL_DIGITS:]]) > 1 or (twin is not None and twin in batch_keys):
            slow.update(group.members)
    named = [g for g in new if _profile_values(requests[g.members[0]].profile).get("name")]
    twins = {t: g for g in new if (t := brazil_twin(g.key.value)) is not None}
    for chunk in _chunks([g.key.value[-TAIL_DIGITS:] for g in named]):
        rows = await session.execute(
            select(Identity.phone_tail, func.lower(Contact.name))
            .join(Contact, Contact.id == Identity.contact_id)
            .where(Identity.tenant_id == tenant.id, Identity.kind == "phone", Identity.phone_tail.in_(chunk))
        )
        taken = {(tail, name) for tail, name in rows.all() if name}
        for group in named:
            name = str(_profile_values(requests[group.members[0]].profile)["name"]).lower()
            if (group.key.value[-TAIL_DIGITS:], name) in taken:
                slow.update(group.members)
    for part in _chunks(list(twins)):
        owned = await session.scalars(
            select(Identity.match_key).where(Identity.tenant_id == tenant.id, Identity.kind == "phone", Identity.match_key.in_(part))
        )
        for twin in owned.all():
            slow.update(twins[twin].members)
    return slow


def _spread(slow: set[int], keyed: list[dict[tuple[str, str], Key]], groups: dict[tuple[str, str], _Group]) -> None:
    """Add to `slow` every request sharing an address or a contact with one in it, so `link` sees them in order."""
    while True:
        matches = {match for index in slow for match in keyed[index]}
        contacts = {groups[m].row.contact_id for m in matches if groups[m].row is not None}
        more = {
            index for group in groups.values()
            if (group.key.kind, group.key.match) in matches or (group.row is not None and group.row.contact_id in contacts)
            for index in group.members
        } - slow
        if not more:
            return
        slow |= more


async def _create_many(
    session: AsyncSession, tenant: TenantInfo, fresh: list[_Group], requests: Sequence[LinkRequest], now: dt.datetime,
    outcomes: dict[int, LinkOutcome],
) -> set[int]:
    """A contact and its identity for each new address; the requests whose address a concurrent link took first
    (their contacts are deleted again, and `link` resolves them against the winner's rows)."""
    lost: set[int] = set()
    contact, identity = Contact.__table__, Identity.__table__
    dialect = session.get_bind().dialect.name
    for chunk in _chunks(fresh):
        profiles = [_profile_values(requests[group.members[0]].profile) for group in chunk]
        blank = dict.fromkeys(PROFILE_FIELDS)
        rows: list[dict[str, Any]] = [
            {"tenant_id": tenant.id, "attributes": {}, "created_at": now, "updated_at": now, **blank, **values} for values in profiles
        ]
        # New contacts differ only in their profile, so each takes an id returned for its own profile
        # (in batch order): no reliance on the order of RETURNING, which neither database promises.
        result = await session.execute(insert(contact).returning(contact.c.id, *(contact.c[name] for name in PROFILE_FIELDS)), rows)
        by_profile: dict[tuple[Any, ...], list[int]] = {}
        for row in sorted(result.all(), reverse=True):
            by_profile.setdefault(tuple(row[1:]), []).append(int(row[0]))
        ids = [by_profile[tuple(values.get(name) for name in PROFILE_FIELDS)].pop() for values in profiles]
        # One order for every racer, as in `_insert_identities`.
        ordered = sorted(zip(chunk, ids), key=lambda pair: (_INSERT_ORDER.get(pair[0].key.kind, len(_INSERT_ORDER)),
                                                             pair[0].key.kind, pair[0].key.match))
        values = [
            {"tenant_id": tenant.id, "contact_id": contact_id, "kind": g.key.kind, "value": g.key.value, "match_key": g.key.match,
             "phone_tail": _tail(g.key), "opted_out": {}, "first_seen_at": now, "last_seen_at": now}
            for g, contact_id in ordered
        ]
        statement = (
            (pg_insert if dialect == "postgresql" else sqlite_insert)(identity)
            .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "match_key"])
            .returning(identity.c.id, identity.c.kind, identity.c.match_key)
        )
        # Many parameter sets for one statement: sent as multi-row INSERTs without compiling thousands of parameters.
        inserted = {(kind, match): int(identity_id) for identity_id, kind, match in (await session.execute(statement, values)).all()}
        orphans: list[int] = []
        for (group, contact_id), values_of in zip(zip(chunk, ids), profiles):
            identity_id = inserted.get((group.key.kind, group.key.match))
            if identity_id is None:
                orphans.append(contact_id)
                lost.update(group.members)
                continue
            ref = IdentityRef(identity_id, group.key.kind, group.key.value)
            made = ContactRef(contact_id, tenant.slug, values_of.get("name"), values_of.get("locale"), values_of.get("timezone"))
            first, *later = group.members
            outcomes[first] = LinkOutcome(made, [ref], [ref], [], True, [])
            for index in later:
                outcomes[index] = LinkOutcome(made, [ref])
        if orphans:
            await session.execute(delete(contact).where(contact.c.id.in_(orphans)))
    return lost


def _tail(key: Key) -> str | None:
    return key.value[-TAIL_DIGITS:] if key.kind == "phone" else None


async def _kinds_of(session: AsyncSession, contact_id: int) -> set[str]:
    return set((await session.scalars(select(Identity.kind).where(Identity.contact_id == contact_id))).all())


async def _conflicting(session: AsyncSession, keep: int, other: int) -> bool:
    """Whether two contacts each hold an address of a kind people have one of (two emails, two phones)."""
    return bool((await _kinds_of(session, keep)) & (await _kinds_of(session, other)) & set(PERSONAL_KINDS))


async def set_opt_out(session: AsyncSession, tenant: TenantInfo, kind: str, raw: str, medium: str, opted_out: bool) -> bool:
    """Opt an address out of (or back into) one medium; True when that changed anything."""
    key = _key(kind, raw, tenant.default_region)

    async def find() -> Identity | None:
        return await session.scalar(
            select(Identity).where(Identity.tenant_id == tenant.id, Identity.kind == key.kind, Identity.match_key == key.match)
        )

    identity = await find()
    if identity is None:
        if not opted_out:
            return False
        await link(session, tenant, [(key.kind, key.value)], reason="opt-out")
        identity = await find()
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
