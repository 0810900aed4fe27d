"""measure: tracked clicks, the variant of each delivery, test-then-winner phases, coupon codes

Revision ID: 0004_measure
Revises: 0003_secops
Create Date: 2026-11-30 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_measure"
down_revision = "0003_secops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("run_key", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=40), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("clicked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_clicks_campaign_customer", "clicks", ["campaign", "customer_id"])
    op.create_index("ix_clicks_run_customer_at", "clicks", ["run_key", "customer_id", "clicked_at"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("variant", sa.String(length=40), nullable=True))
    op.create_table(
        "coupon_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run_key", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("variant", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("campaign", "run_key", "customer_id"),
    )
    op.create_index("ix_coupon_codes_campaign_free", "coupon_codes", ["campaign", "customer_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("decision", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_coupon_codes_campaign_free", table_name="coupon_codes")
    op.drop_table("coupon_codes")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("decision")
        batch.drop_column("phase")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("variant")
    op.drop_index("ix_clicks_run_customer_at", table_name="clicks")
    op.drop_index("ix_clicks_campaign_customer", table_name="clicks")
    op.drop_table("clicks")
