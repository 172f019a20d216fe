"""responder cursor: conversations.answered_through, messages.address

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("answered_through", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("address", sa.String(length=320), nullable=True))
    # Messages that arrived before the responders kept a cursor were answered then (or never will be).
    op.execute(
        "UPDATE conversations SET answered_through = "
        "(SELECT max(messages.id) FROM messages WHERE messages.conversation_id = conversations.id AND messages.direction = 'in')"
    )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("address")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("answered_through")
