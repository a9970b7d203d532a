"""tickets: SLA clock, escalation, the source an automatically opened ticket came from

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.add_column(sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("assignee_group", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("source_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("source_digest", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_tickets_source_key", ["source_key"])


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_constraint("uq_tickets_source_key", type_="unique")
        batch_op.drop_column("source_digest")
        batch_op.drop_column("source_key")
        batch_op.drop_column("assignee_group")
        batch_op.drop_column("escalation_level")
        batch_op.drop_column("responded_at")
        batch_op.drop_column("sla_due_at")
