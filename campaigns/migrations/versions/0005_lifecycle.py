"""lifecycle predictions: customer_predictions, prediction_fits

Revision ID: 0005_lifecycle
Revises: 0004_measure
Create Date: 2026-11-30 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_lifecycle"
down_revision = "0004_measure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_predictions",
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("p_alive", sa.Float(), nullable=False),
        sa.Column("expected_orders_30d", sa.Float(), nullable=False),
        sa.Column("expected_orders_90d", sa.Float(), nullable=False),
        sa.Column("expected_orders_90d_low", sa.Float(), nullable=True),
        sa.Column("expected_orders_90d_high", sa.Float(), nullable=True),
        sa.Column("next_order_at", sa.DateTime(), nullable=True),
        sa.Column("spend_per_order", sa.Float(), nullable=True),
        sa.Column("clv_12m", sa.Float(), nullable=True),
        sa.Column("clv_12m_low", sa.Float(), nullable=True),
        sa.Column("clv_12m_high", sa.Float(), nullable=True),
        sa.Column("preferred_hour", sa.Integer(), nullable=True),
        sa.Column("preferred_weekday", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index(op.f("ix_customer_predictions_p_alive"), "customer_predictions", ["p_alive"])
    op.create_index(
        op.f("ix_customer_predictions_expected_orders_90d"), "customer_predictions", ["expected_orders_90d"]
    )
    op.create_index(op.f("ix_customer_predictions_next_order_at"), "customer_predictions", ["next_order_at"])
    op.create_index(op.f("ix_customer_predictions_clv_12m"), "customer_predictions", ["clv_12m"])
    op.create_table(
        "prediction_fits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("prediction_fits")
    op.drop_index(op.f("ix_customer_predictions_clv_12m"), table_name="customer_predictions")
    op.drop_index(op.f("ix_customer_predictions_next_order_at"), table_name="customer_predictions")
    op.drop_index(op.f("ix_customer_predictions_expected_orders_90d"), table_name="customer_predictions")
    op.drop_index(op.f("ix_customer_predictions_p_alive"), table_name="customer_predictions")
    op.drop_table("customer_predictions")
