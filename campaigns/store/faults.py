"""Storage faults as messages that say what happened: one kind, and one piece of advice, per fault.

A database error reaches the user (the CLI) or the log (the scheduler) through :func:`describe`,
never as "run `retain db upgrade`" for everything:

| kind | SQLite | PostgreSQL | transient |
| --- | --- | --- | --- |
| ``disk_full`` | database or disk is full | SQLSTATE 53100, "No space left on device" | no |
| ``locked`` | database is locked | 55P03 lock not available, 40P01 deadlock | yes |
| ``read_only`` | attempt to write a readonly database | 25006 read-only transaction | no |
| ``timeout`` | (busy timeout: reported as locked) | 57014 statement timeout, "timed out" | yes |
| ``unreachable`` | unable to open database file | connection refused / closed | yes |
| ``schema`` | no such table / column | 42P01 / 42703 | no |
| ``corrupt`` | file is not a database, malformed | — | no |

``transient`` faults are the ones the scheduler retries with backoff instead of stopping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
#: waits between attempts of a write that met a transient fault (about half a minute in all)
RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 16.0)

#: kind -> what to do about it
ADVICE = {
    "disk_full": "the disk holding the database is full: free some space (or move the database), then "
    "rerun; the failed transaction was rolled back, nothing is half-written",
    "locked": "another process holds a write lock on the database (a long transaction, a backup, an open "
    "sqlite3 shell): let it finish or stop it, then rerun; a running scheduler retries by itself",
    "read_only": "the database is read-only (for SQLite: the file or its directory is not writable — SQLite "
    "writes its journal beside the file): fix the permissions or point --db at a writable copy; reading "
    "commands still work",
    "timeout": "the database did not answer in time: check the server's load and the network, then rerun",
    "unreachable": "cannot reach the database: check --db / RETAIN_DATABASE_URL, that the server runs and "
    "that the file's directory exists and is readable",
    "schema": "the database schema is not what this version of Retain expects: run `retain db upgrade`",
    "corrupt": "the database file is damaged or is not a SQLite database: restore it from a backup",
    "other": "check --db / RETAIN_DATABASE_URL",
}
TRANSIENT = frozenset({"locked", "timeout", "unreachable"})

_SQLSTATES = {
    "53100": "disk_full",
    "53200": "disk_full",  # out of memory: same remedy class (server resources)
    "55P03": "locked",
    "40P01": "locked",
    "40001": "locked",  # serialization failure: retrying is the remedy
    "25006": "read_only",
    "57014": "timeout",
    "08000": "unreachable",
    "08001": "unreachable",
    "08003": "unreachable",
    "08006": "unreachable",
    "57P01": "unreachable",
    "42P01": "schema",
    "42703": "schema",
}
_TEXTS = (
    ("disk is full", "disk_full"),
    ("no space left", "disk_full"),
    ("could not extend file", "disk_full"),
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("deadlock detected", "locked"),
    ("readonly database", "read_only"),
    ("read-only", "read_only"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("unable to open database file", "unreachable"),
    ("connection refused", "unreachable"),
    ("could not connect", "unreachable"),
    ("server closed the connection", "unreachable"),
    ("connection is closed", "unreachable"),
    ("terminating connection", "unreachable"),
    ("no such table", "schema"),
    ("no such column", "schema"),
    ("file is not a database", "corrupt"),
    ("malformed", "corrupt"),
)


@dataclass(frozen=True)
class StorageFault:
    """A classified database error: ``kind`` (see the module table), the driver's first line, advice."""

    kind: str
    detail: str

    @property
    def advice(self) -> str:
        return ADVICE[self.kind]

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    def message(self) -> str:
        return f"{self.kind.replace('_', ' ')}: {self.detail} — {self.advice}"


def classify(exc: BaseException) -> StorageFault:
    """The fault behind ``exc`` (a SQLAlchemy error, or the driver's own)."""
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _SQLSTATES:
        return StorageFault(_SQLSTATES[state], detail)
    lowered = detail.lower()
    for needle, kind in _TEXTS:
        if needle in lowered:
            return StorageFault(kind, detail)
    if "does not exist" in lowered and ("relation" in lowered or "column" in lowered):
        return StorageFault("schema", detail)
    return StorageFault("other", detail)


def is_database_error(exc: BaseException) -> bool:
    """True for SQLAlchemy's errors and the drivers' own (sqlite3, psycopg)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("sqlite3", "psycopg"))


def describe(exc: BaseException) -> str:
    """One line for the user or the log: what happened, and what to do (other errors: their text)."""
    if not is_database_error(exc):
        return str(exc) or type(exc).__name__
    return classify(exc).message()


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying (locked, timeout, unreachable)."""
    return classify(exc).transient


def retry_transient(action: Callable[[], T], *, what: str, pauses: Sequence[float] = RETRY_PAUSES) -> T:
    """``action()``, tried again after each pause while it fails on a transient fault (then raised)."""
    for pause in (*pauses, None):
        try:
            return action()
        except Exception as exc:
            if pause is None or not (is_database_error(exc) and is_transient(exc)):
                raise
            log.warning("%s: %s; trying again in %.0f s", what, describe(exc), pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


__all__ = [
    "ADVICE",
    "StorageFault",
    "classify",
    "describe",
    "is_database_error",
    "is_transient",
    "retry_transient",
]
