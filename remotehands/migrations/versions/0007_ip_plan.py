"""the built-in IP plan: prefixes and reserved ranges seeded from the inventory, and assignments

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_prefixes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("in_plan", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site", "prefix"),
    )
    op.create_index("ix_ip_prefixes_site", "ip_prefixes", ["site"])
    op.create_table(
        "ip_reserved",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.String(length=64), nullable=False),
        sa.Column("end", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["prefix_id"], ["ip_prefixes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix_id", "start", "end"),
    )
    op.create_index("ix_ip_reserved_prefix_id", "ip_reserved", ["prefix_id"])
    op.create_table(
        "ip_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("active_address", sa.String(length=64), nullable=True),
        sa.Column("prefix_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(length=128), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("allocation_key", sa.String(length=128), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=True),
        sa.Column("assigned_by", sa.String(length=128), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_ticket", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["prefix_id"], ["ip_prefixes.id"]),
        sa.PrimaryKeyConstraint("id"),
        # The no-double-assignment guard: NULL (released) never collides.
        sa.UniqueConstraint("site", "active_address"),
    )
    for column in ("site", "address", "prefix_id", "customer", "ticket_id", "allocation_key"):
        op.create_index(f"ix_ip_assignments_{column}", "ip_assignments", [column])


def downgrade() -> None:
    op.drop_table("ip_assignments")
    op.drop_table("ip_reserved")
    op.drop_table("ip_prefixes")
