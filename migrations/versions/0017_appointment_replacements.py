"""Appointment replacements: the external ids a booking took over, found by index instead of a JSON text scan

Revision ID: 0017
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appointment_replacements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=300), nullable=False),
        sa.Column("appointment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointments.id"], name=op.f("fk_appointment_replacements_appointment_id_appointments"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_appointment_replacements_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_replacements")),
        sa.UniqueConstraint("tenant_id", "source", "external_id", name=op.f("uq_appointment_replacements_tenant_id_source_external_id")),
    )
    op.create_index(op.f("ix_appointment_replacements_appointment_id"), "appointment_replacements", ["appointment_id"])
    # The ids replaced so far were only kept in appointments.data["replaced_ids"]; copy them over.
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, tenant_id, source, data FROM appointments WHERE CAST(data AS TEXT) LIKE '%replaced_ids%'"
    )).fetchall()
    table = sa.table("appointment_replacements", sa.column("tenant_id"), sa.column("source"), sa.column("external_id"),
                     sa.column("appointment_id"))
    seen: set[tuple[int, str, str]] = set()
    for appointment_id, tenant_id, source, data in rows:
        values = json.loads(data) if isinstance(data, str) else (data or {})
        for external_id in values.get("replaced_ids", []):
            if (tenant_id, source, external_id) not in seen:
                seen.add((tenant_id, source, external_id))
                bind.execute(table.insert().values(tenant_id=tenant_id, source=source, external_id=external_id,
                                                   appointment_id=appointment_id))


def downgrade() -> None:
    op.drop_index(op.f("ix_appointment_replacements_appointment_id"), table_name="appointment_replacements")
    op.drop_table("appointment_replacements")
