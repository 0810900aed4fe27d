"""Alembic environment: runs on the engine handed over in ``config.attributes``.

SQLite changes a column by copying its table (batch mode); with foreign keys enforced, dropping the old
``orders`` table would fail while ``order_lines`` points at it, so enforcement is off while migrating
(the copy keeps every row and id, so the references still hold afterwards).

Processes that start together on an empty database (a scheduler and its workers) must migrate it once:
the migration transaction first takes the database's write lock — ``BEGIN IMMEDIATE`` on SQLite (which
also makes its DDL one transaction, so a crash mid-way leaves nothing half-built), a transaction-level
advisory lock for this database and schema on PostgreSQL — and only then reads the current revision,
so the others wait and then find the schema at head.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from campaigns.models import Base
from campaigns.store.engine import advisory_lock_key

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
        connection.commit()
    try:
        with connection.begin():
            if dialect == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif dialect == "postgresql":
                key = advisory_lock_key(connection, "migrate")
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
            context.run_migrations()
    finally:
        if dialect == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
