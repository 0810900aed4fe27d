"""go-live guard: a run sent with --allow-unsafe-send records what it overrode

Revision ID: 0003_secops
Revises: 0002_data
Create Date: 2026-11-30 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_secops"
down_revision = "0002_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("unsafe_send", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("unsafe_send")
