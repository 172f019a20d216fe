"""Conversations as the console lists them (the hand-off itself is the responders' port methods)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import Contact, Conversation
from hub.tenants import TenantInfo


async def open_conversations(session: AsyncSession, tenant: TenantInfo, limit: int = 100) -> list[tuple[Conversation, str | None]]:
    """The tenant's conversations with an inbound message, most recent first, with the contact's name."""
    rows = await session.execute(
        select(Conversation, Contact.name)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.tenant_id == tenant.id, Conversation.last_inbound_at.is_not(None))
        .order_by(Conversation.last_inbound_at.desc())
        .limit(limit)
    )
    return [(c, n) for c, n in rows.all()]
