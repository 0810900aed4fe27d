"""Engines and migrations: open a database URL, and keep its schema at Alembic's head.

SQLite gets WAL, foreign keys and a busy timeout (30 s, or ``?timeout=SECONDS`` in the URL), so a
scheduler, a preview server and a CLI command can share one file; a file in a read-only directory is
still readable (the WAL switch is skipped when it cannot be made). PostgreSQL uses psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import DatabaseError as SADatabaseError

from campaigns.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: seconds a SQLite connection waits for another writer's lock before "database is locked"
SQLITE_BUSY_TIMEOUT = 30.0


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; raises DatabaseError for an invalid URL or missing driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"invalid database URL {url!r}: expected e.g. sqlite:///var/retain.db") from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            busy = _busy_timeout(parsed.query.get("timeout"))
            parsed = _read_only_if_needed(parsed.difference_update_query(["timeout"]))
            engine = create_engine(parsed, connect_args={"timeout": busy}, **kwargs)
            event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy))
        else:
            kwargs.setdefault("pool_pre_ping", True)
            engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"cannot open {safe_url(url)}: {exc}") from None
    return engine


def _read_only_if_needed(parsed: URL) -> URL:
    """A SQLite file whose directory cannot be written is opened read-only.

    SQLite keeps its WAL index (``-shm``) beside the file: where it cannot create one, a normal open
    fails even to read. Read-only (``mode=ro``), and ``immutable`` when no WAL files exist (nobody can
    be writing: they could not create them either), it reads; a write then fails as "read-only".
    """
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:") or parsed.query.get("uri"):
        return parsed
    path = Path(name)
    if not path.exists() or os.access(path.parent, os.W_OK):
        return parsed
    busy = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    query = {"mode": "ro", "uri": "true"}
    if not any(p.exists() for p in busy):
        query["immutable"] = "1"
    return parsed.set(database=f"file:{path.resolve()}").update_query_dict(query)


def _busy_timeout(value: object) -> float:
    """Seconds SQLite waits for another writer's lock (``?timeout=`` in the URL; default 30)."""
    if value is None:
        return SQLITE_BUSY_TIMEOUT
    try:
        seconds = float(value if isinstance(value, str) else str(value))
    except ValueError:
        raise DatabaseError(
            f"invalid SQLite timeout {value!r} in the database URL: expected seconds, e.g. ?timeout=30"
        ) from None
    return max(seconds, 0.0)


def _sqlite_pragmas(busy: float, dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"):
        try:
            cur.execute(pragma)
        except sqlite3.Error:
            # a file in a read-only directory (or a read-only file) cannot switch its journal: it is
            # still read in the mode it has; a write fails with a "read-only" message (store/faults.py)
            break
    cur.close()


def advisory_key(database: str, schema: str, name: str) -> int:
    """A signed 64-bit PostgreSQL advisory-lock key for (database, schema, lock name)."""
    digest = hashlib.blake2b(f"retain:{database}:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_lock_key(conn: Connection, name: str) -> int:
    """The advisory-lock key of ``name`` in this connection's database and schema (PostgreSQL): the
    scheduler's lock and the migration lock (campaigns/migrations/env.py)."""
    database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
    return advisory_key(database, schema or "public", name)


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    try:
        command.upgrade(_alembic_config(engine), revision)
    except (OperationalError, SADatabaseError) as exc:
        raise DatabaseError(f"cannot migrate {safe_url(str(engine.url))}: {exc.orig}") from None


def ensure_schema(engine: Engine) -> None:
    """Upgrade an empty database; refuse to work on one whose schema is behind head.

    Raises DatabaseError when the server is unreachable or the schema needs ``retain db upgrade``.
    """
    try:
        tables = set(inspect(engine).get_table_names())
        current = current_revision(engine) if "alembic_version" in tables else None
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to {safe_url(str(engine.url))}: {exc.orig}") from None
    if current is None:
        if tables - {"alembic_version"}:
            raise DatabaseError(
                f"{safe_url(str(engine.url))} holds tables that Retain did not create; "
                "point --db at an empty database"
            )
        upgrade(engine)
        return
    if current != head_revision():
        raise DatabaseError(
            f"the database schema is at revision {current}, Retain needs {head_revision()}: "
            "run `retain db upgrade`"
        )
