"""Fresh databases for tests and fault trials: a SQLite file, or a PostgreSQL schema dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from campaigns.config import postgres_test_url


@contextmanager
def postgres_schema(prefix: str = "t_") -> Iterator[str]:
    """A URL on the test PostgreSQL server whose search_path is a fresh schema, dropped afterwards."""
    schema = prefix + uuid.uuid4().hex[:12]
    base = postgres_test_url()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def fresh_database(kind: str, tmp: Path, prefix: str = "t_") -> Iterator[str]:
    """``sqlite``: a file under ``tmp``; ``postgresql``: :func:`postgres_schema`."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'trial.db'}"
        return
    with postgres_schema(prefix) as url:
        yield url
