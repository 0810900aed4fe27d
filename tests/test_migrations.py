"""The Alembic revisions build exactly the tables campaigns/models.py declares, and keep data on upgrade."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from campaigns.models import Base
from campaigns.store import engine as engine_module
from campaigns.store.engine import create_db_engine, current_revision, head_revision, upgrade
from tests.conftest import ROOT


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


_OPENER = """
import sys
from campaigns.store import Store
print("ready", flush=True)
sys.stdin.readline()  # the parent writes a line once every process is ready
try:
    Store.open(sys.argv[1]).close()
    print("opened", flush=True)
except Exception as exc:
    print(f"failed: {exc}", flush=True)
"""


def test_processes_opening_an_empty_database_together_migrate_it_once(db_url: str) -> None:
    # a scheduler and its workers starting at once on a new database: before the migration lock,
    # all but one failed with "table customers already exists" / "duplicate key ... alembic_version"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # release them together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert outcomes == ["opened"] * 4, outcomes
    engine = create_db_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()


_FAILING_REVISION = """
revision = "9999_fails"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise RuntimeError("this revision fails on purpose")


def downgrade() -> None:
    pass
"""


def test_a_migration_failing_midway_leaves_the_database_as_it_was(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one transaction from the first table to the last revision: on SQLite, before BEGIN IMMEDIATE,
    # a failure left 13 tables and no alembic_version behind
    scripts = tmp_path / "migrations"
    shutil.copytree(engine_module.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_fails.py").write_text(_FAILING_REVISION.format(head=head_revision()))
    monkeypatch.setattr(engine_module, "MIGRATIONS_DIR", scripts)
    engine = create_db_engine(db_url)
    try:
        with pytest.raises(RuntimeError, match="fails on purpose"):
            upgrade(engine)
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
