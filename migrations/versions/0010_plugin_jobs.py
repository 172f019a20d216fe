"""plugin jobs: durable, coalesced plugin work (hub/plugin_jobs.py)

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.models

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plugin_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("due_at", hub.models.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", hub.models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("done_at", hub.models.UTCDateTime(), nullable=True),
        sa.Column("failed_at", hub.models.UTCDateTime(), nullable=True),
        sa.Column("created_at", hub.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", hub.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_plugin_jobs_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_jobs")),
        sa.UniqueConstraint("tenant_id", "plugin", "key", name=op.f("uq_plugin_jobs_tenant_id_plugin_key")),
    )
    op.create_index("ix_plugin_jobs_due", "plugin_jobs", ["done_at", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_plugin_jobs_due", table_name="plugin_jobs")
    op.drop_table("plugin_jobs")
