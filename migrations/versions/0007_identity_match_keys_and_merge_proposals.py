"""identity match keys, phone tails, merge proposals, undoable merges

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "merge_proposals",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("tenant_id", BIG_ID, nullable=False),
        sa.Column("contact_id", BIG_ID, nullable=False),
        sa.Column("other_contact_id", BIG_ID, nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", hub.models.UTCDateTime(), nullable=False),
        sa.Column("decided_at", hub.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_merge_proposals_contact_id_contacts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["other_contact_id"], ["contacts.id"], name=op.f("fk_merge_proposals_other_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_merge_proposals_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_proposals")),
        sa.UniqueConstraint(
            "tenant_id", "contact_id", "other_contact_id", name=op.f("uq_merge_proposals_tenant_id_contact_id_other_contact_id")
        ),
    )

    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("match_key", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("phone_tail", sa.String(length=8), nullable=True))
    op.execute("UPDATE identities SET match_key = value")
    # Argentine numbers were all stored with the mobile 9; their match key is the number without it.
    op.execute(
        "UPDATE identities SET match_key = '+54' || substr(value, 5) "
        "WHERE kind = 'phone' AND value LIKE '+549%' AND length(value) = 14"
    )
    op.execute("UPDATE identities SET phone_tail = substr(value, length(value) - 7) WHERE kind = 'phone'")
    with op.batch_alter_table("identities") as batch:
        batch.alter_column("match_key", existing_type=sa.String(length=320), nullable=False)
        batch.drop_constraint("uq_identities_tenant_id_kind_value", type_="unique")
        batch.create_unique_constraint(op.f("uq_identities_tenant_id_kind_match_key"), ["tenant_id", "kind", "match_key"])
        batch.create_index("ix_identities_phone_tail", ["tenant_id", "phone_tail"], unique=False)

    with op.batch_alter_table("contact_merges") as batch:
        batch.add_column(sa.Column("moved", JSON, nullable=True))
        batch.add_column(sa.Column("proposal_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("undone_at", hub.models.UTCDateTime(), nullable=True))
    op.execute("UPDATE contact_merges SET moved = '{}'")
    with op.batch_alter_table("contact_merges") as batch:
        batch.alter_column("moved", existing_type=JSON, nullable=False)
        batch.create_foreign_key(
            op.f("fk_contact_merges_proposal_id_merge_proposals"), "merge_proposals", ["proposal_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(op.f("ix_contact_merges_merged_contact_id"), ["merged_contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contact_merges") as batch:
        batch.drop_index(op.f("ix_contact_merges_merged_contact_id"))
        batch.drop_constraint(op.f("fk_contact_merges_proposal_id_merge_proposals"), type_="foreignkey")
        batch.drop_column("undone_at")
        batch.drop_column("proposal_id")
        batch.drop_column("moved")
    with op.batch_alter_table("identities") as batch:
        batch.drop_index("ix_identities_phone_tail")
        batch.drop_constraint(op.f("uq_identities_tenant_id_kind_match_key"), type_="unique")
        batch.create_unique_constraint("uq_identities_tenant_id_kind_value", ["tenant_id", "kind", "value"])
        batch.drop_column("phone_tail")
        batch.drop_column("match_key")
    op.drop_table("merge_proposals")
