"""Storage faults say what happened (campaigns/store/faults.py): real disk-full, locked, read-only,
timeout and schema errors from SQLite and PostgreSQL, each with its own advice; a database in a
read-only directory still reads; the outbox leaves no temp file behind a failed write."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from campaigns.cli import main
from campaigns.senders.base import OutgoingMessage, SendResult, SendStatus
from campaigns.senders.outbox import OutboxSender, safe_file_stem
from campaigns.store import Store
from campaigns.store.faults import classify, describe, is_transient, retry_transient

from .conftest import ROOT


def _sqlite_error(sql: str, db: Path, *, setup: str = "", timeout: float = 5) -> BaseException:
    store = Store.open(f"sqlite:///{db}?timeout={timeout}")
    try:
        with store.engine.begin() as conn:
            if setup:
                conn.exec_driver_sql(setup)
        with pytest.raises(OperationalError) as info, store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
        return info.value
    finally:
        store.close()


def test_sqlite_disk_full_is_its_own_fault(tmp_path: Path) -> None:
    # max_page_count makes SQLite itself report SQLITE_FULL, as on a full disk
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with pytest.raises(OperationalError) as info, store.engine.begin() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
            conn.exec_driver_sql("CREATE TABLE filler (x BLOB)")
            for _ in range(50):
                conn.exec_driver_sql("INSERT INTO filler VALUES (zeroblob(100000))")
    finally:
        store.close()
    fault = classify(info.value)
    assert fault.kind == "disk_full" and not fault.transient
    assert "free some space" in describe(info.value)
    assert "db upgrade" not in describe(info.value)


def test_sqlite_locked_is_transient_with_its_own_advice(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store.open(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        exc = _sqlite_error("INSERT INTO suppressions (email, reason) VALUES ('a@b.c', 'x')", db, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert classify(exc).kind == "locked" and is_transient(exc)
    assert "another process holds a write lock" in describe(exc)


def test_schema_fault_advises_the_upgrade(tmp_path: Path) -> None:
    exc = _sqlite_error("SELECT * FROM no_such_table", tmp_path / "r.db")
    assert classify(exc).kind == "schema"
    assert "retain db upgrade" in describe(exc)


@pytest.mark.postgres
def test_postgres_timeout_and_lock_faults(pg_url: str) -> None:
    store = Store.open(pg_url)
    try:
        with pytest.raises(OperationalError) as timeout, store.engine.begin() as conn:
            conn.execute(text("SET LOCAL statement_timeout = 50"))
            conn.execute(text("SELECT pg_sleep(2)"))
        assert classify(timeout.value).kind == "timeout" and is_transient(timeout.value)
        with store.engine.connect() as holder, store.engine.connect() as other:
            holder.execute(text("LOCK TABLE suppressions IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(OperationalError) as locked:
                other.execute(text("SET lock_timeout = 50"))
                other.execute(text("SELECT count(*) FROM suppressions"))
            holder.rollback()
            other.rollback()
        assert classify(locked.value).kind == "locked"
        with pytest.raises(Exception) as ro, store.engine.begin() as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text("INSERT INTO suppressions (email, reason) VALUES ('a@b.c', 'x')"))
        assert classify(ro.value).kind == "read_only"
    finally:
        store.close()


def test_cli_prints_the_fault_and_its_advice_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "r.db"
    Store.open(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        status = main(["--db", f"sqlite:///{db}?timeout=0.2", "schedule", "sync"])
        bad = main(["--db", f"sqlite:///{db}?timeout=soon", "runs"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert status == 1 and bad == 1
    assert "locked" in err and "another process holds a write lock" in err
    assert "invalid SQLite timeout 'soon'" in err
    assert "Traceback" not in err


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """A directory with a Retain database that the test's reader cannot write (nobody, when root)."""
    root = Path(tempfile.mkdtemp(prefix="retain-ro-", dir="/tmp"))
    os.chmod(root, 0o755)
    db_dir = root / "data"
    db_dir.mkdir()
    store = Store.open(f"sqlite:///{db_dir / 'r.db'}")
    with store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO suppressions (email, reason, created_at) VALUES ('a@b.c', 'x', '2024-01-01')")
        )
    store.close()
    os.chmod(db_dir / "r.db", 0o644)
    os.chmod(db_dir, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield db_dir
    finally:
        os.chmod(db_dir, 0o755)
        for p in db_dir.iterdir():
            p.unlink()
        db_dir.rmdir()
        root.rmdir()


_READER = """
import sys
from sqlalchemy import text
from campaigns.store import Store
from campaigns.store.faults import describe
store = Store.open(sys.argv[1])
with store.engine.connect() as conn:
    print("read", conn.execute(text("SELECT count(*) FROM suppressions")).scalar())
try:
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM suppressions"))
except Exception as exc:
    print("write:", describe(exc))
"""


def test_database_in_a_read_only_directory_can_still_be_read(read_only_dir: Path) -> None:
    prefix = (
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] if os.geteuid() == 0 else []
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [*prefix, sys.executable, "-c", _READER, f"sqlite:///{read_only_dir / 'r.db'}"],
        capture_output=True, text=True, timeout=120, env=env, cwd="/tmp",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "read 1" in out.stdout
    assert "write: read only:" in out.stdout and "reading commands still work" in out.stdout
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["r.db"]  # nothing created beside it


def _message(key: str) -> OutgoingMessage:
    return OutgoingMessage(key, "shop@example.com", "ann@example.com", b"Subject: hi\r\n\r\nhello\r\n")


def test_outbox_leaves_no_temp_file_after_a_failed_write(tmp_path: Path) -> None:
    sender = OutboxSender(tmp_path / "outbox")
    results: list[SendResult] = []
    # a real ENOSPC: the temp file is a link to /dev/full
    full = sender.directory / "tmp" / f"{safe_file_stem('d1')}.{os.getpid()}.eml"
    full.symlink_to("/dev/full")
    # a failed rename: new/ is not a directory any more for the second message
    sender.send_batch([_message("d1")], results.append)
    (sender.directory / "new").rmdir()
    (sender.directory / "new").write_text("")
    sender.send_batch([_message("d2")], results.append)
    assert [r.status for r in results] == [SendStatus.DEFERRED, SendStatus.DEFERRED]
    assert "No space left" in results[0].detail
    assert list((sender.directory / "tmp").iterdir()) == []


def test_a_write_retried_through_a_passing_lock_succeeds_and_other_faults_raise(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store.open(f"sqlite:///{db}?timeout=0.1")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(1.0, lambda: holder.execute("ROLLBACK"))
    released.start()
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO suppressions (email, reason, created_at) VALUES ('a@b.c', 'x', '2024-01-01')"
                )
            )

    try:
        retry_transient(write, what="test write", pauses=(0.3,) * 10)
        assert len(calls) > 1  # it met the lock, waited, and got through
        with pytest.raises(OperationalError, match="no such table"):
            retry_transient(lambda: _exec(store, "SELECT * FROM nope"), what="schema", pauses=(0.1,))
    finally:
        released.join()
        holder.close()
        store.close()


def _exec(store: Store, sql: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(sql)
