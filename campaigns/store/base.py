"""What every part of the store shares: the engine, transactions, dialect-aware upserts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from campaigns.store.engine import create_db_engine, ensure_schema, safe_url

T = TypeVar("T")

#: rows per multi-row statement; SQLite allows 32,766 bound parameters per statement
CHUNK = 2_000


def utcnow() -> datetime:
    """Naive UTC now: the store keeps naive UTC datetimes."""
    return datetime.now(UTC).replace(tzinfo=None)


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StoreBase:
    """Holds the engine. Open with :meth:`open` (migrates an empty database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, **engine_kwargs: Any) -> Any:
        engine = create_db_engine(url, **engine_kwargs)
        if migrate:
            ensure_schema(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return safe_url(str(self.engine.url))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        """A dialect-specific INSERT that supports ``on_conflict_do_nothing/update``."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
