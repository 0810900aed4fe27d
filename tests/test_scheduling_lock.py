"""One scheduler per database: the lock row on SQLite, the advisory lock on PostgreSQL, takeover
when the holder died, and ``python scheduler.py`` refusing a second instance and stopping on SIGINT."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from campaigns.config import postgres_test_url
from campaigns.errors import SchedulerError
from campaigns.scheduling.lock import SchedulerLock
from campaigns.store import Store
from campaigns.store.engine import advisory_key
from tests.scheduling_fixtures import ROOT, follow_up, make_templates

T0 = datetime(2024, 3, 20, 9, 0)


def test_lock_row_on_both_databases(store: Store) -> None:
    assert store.acquire_lock_row("s", "A", stale_after=timedelta(seconds=60), now=T0) is None
    holder = store.acquire_lock_row(
        "s", "B", stale_after=timedelta(seconds=60), now=T0 + timedelta(seconds=10)
    )
    assert holder is not None and holder.owner == "A"
    assert store.heartbeat_lock_row("s", "A", T0 + timedelta(seconds=50))
    assert store.acquire_lock_row(
        "s", "B", stale_after=timedelta(seconds=60), now=T0 + timedelta(seconds=100)
    )
    # A went silent at +50 s: at +111 s B takes over, and A learns it lost the lock
    assert (
        store.acquire_lock_row("s", "B", stale_after=timedelta(seconds=60), now=T0 + timedelta(seconds=111))
        is None
    )
    assert not store.heartbeat_lock_row("s", "A", T0 + timedelta(seconds=112))
    store.release_lock_row("s", "A")  # not A's any more: no effect
    assert store.lock_holder("s").owner == "B"  # type: ignore[union-attr]
    store.release_lock_row("s", "B")
    assert store.lock_holder("s") is None


def test_sqlite_scheduler_lock_refuses_then_takes_over_a_dead_holder(sqlite_store: Store) -> None:
    a = SchedulerLock(sqlite_store, "host:111:a")
    b = SchedulerLock(sqlite_store, "host:222:b")
    a.acquire(now=T0)
    with pytest.raises(
        SchedulerError, match=r"another scheduler is already running .*host:111:a.*takes over 60 s"
    ):
        b.acquire(now=T0 + timedelta(seconds=30))
    b.acquire(now=T0 + timedelta(seconds=61))  # a died (no heartbeat for 61 s)
    assert not a.heartbeat(T0 + timedelta(seconds=62))
    assert b.heartbeat(T0 + timedelta(seconds=62))
    b.release()
    assert sqlite_store.lock_holder("scheduler") is None


_HOLDER = """
import sys, time
from campaigns.scheduling.lock import SchedulerLock
from campaigns.store import Store
store = Store.open(sys.argv[1])
SchedulerLock(store, "holder-process").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.postgres
def test_postgres_advisory_lock_refuses_and_frees_when_the_holder_dies(pg_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, pg_url], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    store = Store.open(pg_url)
    other_schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_test_url(), isolation_level="AUTOCOMMIT")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        mine = SchedulerLock(store, "me")
        with pytest.raises(SchedulerError, match="another scheduler is already running .*holder-process"):
            mine.acquire()
        # another schema on the same server is another database for the lock
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{other_schema}"'))
        other = Store.open(f"{postgres_test_url()}?options=-csearch_path%3D{other_schema}")
        with SchedulerLock(other, "elsewhere"):
            pass
        other.close()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                mine.acquire()
                break
            except SchedulerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert mine.heartbeat()
        assert store.lock_holder("scheduler").owner == "me"  # type: ignore[union-attr]
        mine.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout:
            holder.stdout.close()
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE'))
        admin.dispose()


def test_advisory_key_depends_on_database_and_schema() -> None:
    keys = {advisory_key("test", s, "scheduler") for s in ("public", "t_a", "t_b")} | {
        advisory_key("prod", "public", "scheduler")
    }
    assert len(keys) == 4 and all(-(2**63) <= k < 2**63 for k in keys)


def _lines(stream: object) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], needle: str, timeout: float = 30) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen in {seen}")


def test_scheduler_py_refuses_a_second_instance_and_stops_on_sigint(tmp_path: Path) -> None:
    templates = make_templates(tmp_path, {"thanks": follow_up("thanks")})
    env = {
        **os.environ,
        "RETAIN_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
        "RETAIN_TEMPLATES_DIR": str(templates),
        "RETAIN_VAR_DIR": str(tmp_path / "var"),
        "RETAIN_SENDER": "memory://",
    }
    cmd = [sys.executable, str(ROOT / "scheduler.py")]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = _wait_for(_lines(first.stderr), "scheduler running")
        assert any("+ campaign:thanks@Europe/London" in line for line in seen)
        second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "error: another scheduler is already running" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGINT)
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        assert first.stderr is not None
        first.stderr.close()
    store = Store.open(env["RETAIN_DATABASE_URL"])
    try:
        assert store.lock_holder("scheduler") is None
    finally:
        store.close()
