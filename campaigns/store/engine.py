"""Engines and migrations: open a database URL, and keep its schema at Alembic's head.

SQLite gets WAL, foreign keys and a busy timeout, so a scheduler, a preview server and a CLI
command can share one file. PostgreSQL uses psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import DatabaseError as SADatabaseError

from campaigns.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


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
            engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"cannot open {safe_url(url)}: {exc}") from None
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


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
