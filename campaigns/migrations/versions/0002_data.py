"""real shops' data: catalogue fields, product events, customer tags, order money details, unknown prices

Revision ID: 0002_data
Revises: 0001
Create Date: 2026-11-30 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_data"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("region", sa.String(length=100), nullable=True))
    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "tag"),
    )
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("handle", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("image_alt", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("compare_at_price", sa.Float(), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=16), server_default="active", nullable=False))
        batch.add_column(sa.Column("published", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column("vendor", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("tags", sa.Text(), nullable=True))
        batch.add_column(sa.Column("inventory_qty", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("catalog_source", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("catalog_updated_at", sa.DateTime(), nullable=True))
    op.create_table(
        "product_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.Float(), nullable=True),
        sa.Column("new_value", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_product_events_kind_at", "product_events", ["kind", "created_at"])
    op.create_index(op.f("ix_product_events_product_id"), "product_events", ["product_id"])
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("total", existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("financial_status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("discount_codes", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("discount_amount", sa.Float(), nullable=True))
        batch.add_column(sa.Column("refunded_amount", sa.Float(), nullable=True))
    with op.batch_alter_table("order_lines") as batch:
        batch.alter_column("unit_price", existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("discount", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_column("discount")
        batch.alter_column("unit_price", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("refunded_amount")
        batch.drop_column("discount_amount")
        batch.drop_column("discount_codes")
        batch.drop_column("financial_status")
        batch.alter_column("total", existing_type=sa.Float(), nullable=False)
    op.drop_index(op.f("ix_product_events_product_id"), table_name="product_events")
    op.drop_index("ix_product_events_kind_at", table_name="product_events")
    op.drop_table("product_events")
    with op.batch_alter_table("products") as batch:
        for name in (
            "catalog_updated_at", "catalog_source", "inventory_qty", "tags", "vendor", "published", "status",
            "compare_at_price", "image_alt", "handle",
        ):  # fmt: skip
            batch.drop_column(name)
    op.drop_table("customer_tags")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("region")
