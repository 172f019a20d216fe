"""An operator's decisions on merges, as one use case each: accept a proposal, reject it, undo a merge.

The CLI (`hub contacts merge / reject / unmerge`) and the console call these,
so both announce the same effects: `on_contact_linked` and the tenant's
`contact.merged` webhooks after an accepted proposal.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.events import ContactRef, IdentityRef
from hub.merges import accept_proposal, reject_proposal, unmerge
from hub.models import Contact, ContactMerge, Identity, MergeProposal
from hub.outbound_webhooks import emit as emit_webhooks
from hub.tenants import TenantInfo

if TYPE_CHECKING:
    from hub.core import Hub


async def accept(hub: Hub, tenant: TenantInfo, proposal_id: int) -> ContactMerge:
    """Merge the pair a proposal names (raises `hub.merges.MergeError`); hooks and webhooks follow the commit."""
    async with hub.unit_of_work() as uow:
        session = uow.session
        record = await accept_proposal(session, tenant, proposal_id)
        kept = await session.get_one(Contact, record.kept_contact_id)
        identity = await session.scalar(
            select(Identity).where(Identity.id.in_(record.moved.get("identities") or [0])).order_by(Identity.id).limit(1)
        )
        if identity is not None:
            ref = ContactRef(kept.id, tenant.slug, kept.name, kept.locale, kept.timezone)
            uow.after_commit("on_contact_linked", partial(
                hub.call, "on_contact_linked", hub=hub, contact=ref, identity=IdentityRef(identity.id, identity.kind, identity.value),
            ))
        await emit_webhooks(session, tenant, "contact.merged", {"contact_id": kept.id, "merged_contact_ids": [record.merged_contact_id]})
        hub.wake_dispatcher(uow)
    return record


async def reject(hub: Hub, tenant: TenantInfo, proposal_id: int) -> MergeProposal:
    """Keep the pair apart for good (raises `hub.merges.MergeError`)."""
    async with hub.db.sessions.begin() as session:
        return await reject_proposal(session, tenant, proposal_id)


async def undo(hub: Hub, tenant: TenantInfo, merged_contact_id: int) -> ContactMerge:
    """Undo the merge that absorbed a contact (raises `hub.merges.MergeError`)."""
    async with hub.db.sessions.begin() as session:
        return await unmerge(session, tenant, merged_contact_id)
