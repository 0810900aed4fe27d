"""The Alembic revisions build exactly the tables campaigns/models.py declares, and keep data on upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from campaigns.models import Base
from campaigns.store.engine import create_db_engine, current_revision, head_revision, upgrade


def test_migrations_match_the_models(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_orders_and_defaults_new_columns(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customers (id, external_id, marketing_consent, is_demo, created_at) "
                    "VALUES (1, 'c1', false, false, '2024-01-01 00:00:00')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO products (id, sku, name, price, currency, in_stock) "
                    "VALUES (1, 'SKU1', 'Mug', 4.5, 'GBP', true)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO orders (id, external_id, customer_id, ordered_at, currency, total, source) "
                    "VALUES (1, 'o1', 1, '2024-01-02 00:00:00', 'GBP', 9.0, 'generic')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO order_lines (id, order_id, line_no, product_id, quantity, unit_price) "
                    "VALUES (1, 1, 1, 1, 2, 4.5)"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT total FROM orders")).scalar_one() == 9.0
            assert conn.execute(text("SELECT unit_price FROM order_lines")).scalar_one() == 4.5
            status, published = conn.execute(text("SELECT status, published FROM products")).one()
            assert (status, bool(published)) == ("active", True)
    finally:
        engine.dispose()
