"""Alembic environment: runs on the engine handed over in ``config.attributes``.

SQLite changes a column by copying its table (batch mode); with foreign keys enforced, dropping the old
``orders`` table would fail while ``order_lines`` points at it, so enforcement is off while migrating
(the copy keeps every row and id, so the references still hold afterwards).
"""

from __future__ import annotations

from alembic import context

from campaigns.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
        connection.commit()
    try:
        with connection.begin():
            context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
            context.run_migrations()
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
