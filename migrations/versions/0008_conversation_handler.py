"""conversation handler (bot or human), responder state, conversation events, appointment confirmation

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("handler", sa.String(length=16), server_default="bot", nullable=False))
        batch.add_column(sa.Column("handler_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("handler_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("responder_state", JSON, server_default="{}", nullable=False))
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "conversation_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("tenant_id", BIG_ID, nullable=False),
        sa.Column("conversation_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], name=op.f("fk_conversation_events_conversation_id_conversations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_conversation_events_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_events")),
    )
    op.create_index(op.f("ix_conversation_events_conversation_id"), "conversation_events", ["conversation_id"], unique=False)
    op.create_index("ix_conversation_events_tenant_time", "conversation_events", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_conversation_events_tenant_time", table_name="conversation_events")
    op.drop_index(op.f("ix_conversation_events_conversation_id"), table_name="conversation_events")
    op.drop_table("conversation_events")
    with op.batch_alter_table("appointments") as batch:
        batch.drop_column("confirmed_at")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("responder_state")
        batch.drop_column("handler_reason")
        batch.drop_column("handler_since")
        batch.drop_column("handler")
