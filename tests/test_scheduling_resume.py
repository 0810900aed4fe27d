"""The scheduler finishes what it started (campaigns/scheduling/resume.py) and a killed ``schedule sync``
blocks nothing: resume of runs a dead owner left open, their in-flight rows counted ``unknown``, runs of
live owners and runs beyond ``max_lateness`` left alone; a killed sync's lock taken over at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.leases import LeaseKeeper, process_identity
from campaigns.models import Delivery, Run
from campaigns.scheduling import jobs
from campaigns.scheduling.jobs import SchedulerContext, run_scheduled
from campaigns.scheduling.plan import run_key
from campaigns.scheduling.resume import resume_open_runs
from campaigns.senders import memory
from campaigns.status import DeliveryStatus
from campaigns.store import Store
from campaigns.store.base import utcnow
from campaigns.store.ledger import LedgerRow
from tests.scheduling_fixtures import ROOT, follow_up, make_templates, settings_for, write_people

FIRE = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
ZONE = "Europe/Paris"


class FakeScheduler:
    """Records the jobs added; answers get_job like APScheduler."""

    def __init__(self) -> None:
        self.added: dict[str, dict[str, Any]] = {}

    def add_job(self, func: str, trigger: Any, **kw: Any) -> None:
        self.added[kw["id"]] = {"func": func, "trigger": trigger, **kw}

    def get_job(self, job_id: str) -> Any:
        return self.added.get(job_id)


@pytest.fixture
def ctx(tmp_path: Path, db_url: str) -> Iterator[SchedulerContext]:
    templates = make_templates(tmp_path, {"thanks": follow_up("thanks")})
    store = Store.open(db_url)
    write_people(store)
    memory.clear()
    context = SchedulerContext(
        settings_for(tmp_path, db_url, templates), store, clock=lambda: FIRE + timedelta(hours=1),
        scheduler=FakeScheduler(),
    )  # fmt: skip
    jobs.bind(context)
    try:
        yield context
    finally:
        jobs.bind(None)
        store.close()


def _dead_owner() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:dead"


def _left_open(store: Any, fire: datetime, owner: str) -> tuple[int, int]:
    """A run of ``thanks`` for ``fire`` left running by ``owner`` with Paris's row in flight."""
    run = store.start_run("thanks", run_key(fire, ZONE), owner=owner, scheduled_for=fire.replace(tzinfo=None))
    paris = store.get_customer("paris").id
    got = store.record_deliveries(
        run.id, "thanks", [LedgerRow(paris, DeliveryStatus.SENDING, email="paris@example.test")]
    )
    return run.id, got[paris]


def test_a_dead_owners_run_is_resumed_and_its_in_flight_row_counted_unknown(ctx: SchedulerContext) -> None:
    store: Any = ctx.store
    run_id, _ = _left_open(store, FIRE, _dead_owner())
    report = resume_open_runs(ctx)
    key = run_key(FIRE, ZONE)
    assert report.resumed == [key] and report.unknown_rows == 1
    job = ctx.scheduler.added[f"retry:thanks@{ZONE}:{FIRE.isoformat()}"]  # type: ignore[union-attr]
    assert job["trigger"].run_date == FIRE + timedelta(hours=1)
    # a second pass adds nothing: the resume job is already waiting
    assert resume_open_runs(ctx).resumed == []
    out = run_scheduled("thanks", ZONE, **job["kwargs"])
    assert out.run_key == key and out.summary.status == "completed"
    with store.engine.connect() as conn:
        rows = conn.execute(select(Delivery.status, Delivery.reason).where(Delivery.run_id == run_id)).all()
    # Paris was in flight when its process died: never re-sent, counted; nobody else in Paris's zone
    assert [tuple(r) for r in rows] == [("unknown", "in_flight_at_crash")]
    assert memory.outbox() == []


def test_live_owners_and_runs_beyond_lateness_are_left_alone(ctx: SchedulerContext) -> None:
    store: Any = ctx.store
    me = process_identity()
    with LeaseKeeper(lambda: True, 30, owner=me + "x"):
        _left_open(store, FIRE, me + "x")  # a live attempt of this very process
        report = resume_open_runs(ctx)
    assert report.busy == [run_key(FIRE, ZONE)] and report.resumed == [] and report.unknown_rows == 0
    old = FIRE - timedelta(days=2)
    _, did = _left_open(store, old, _dead_owner())
    report = resume_open_runs(ctx)
    assert report.too_late == [run_key(old, ZONE)]
    assert run_key(old, ZONE) not in report.resumed
    assert (
        store.delivery_states(
            store.get_run(run_key(old, ZONE), "thanks").id, [store.get_customer("paris").id]
        )[store.get_customer("paris").id].status
        == "unknown"
    )


def test_a_distributed_run_is_left_to_its_supervisor(ctx: SchedulerContext) -> None:
    store: Any = ctx.store
    run = store.start_run(
        "thanks",
        run_key(FIRE, ZONE),
        owner=None,
        dispatcher="celery",
        scheduled_for=FIRE.replace(tzinfo=None),
    )
    paris = store.get_customer("paris").id
    store.record_deliveries(
        run.id, "thanks", [LedgerRow(paris, DeliveryStatus.SENDING, email="p@example.test")]
    )
    report = resume_open_runs(ctx)
    assert report.resumed == [] and report.unknown_rows == 0
    assert store.delivery_states(run.id, [paris])[paris].status == "sending"  # a live worker may hold it


def test_another_hosts_in_flight_rows_wait_the_final_reply_timeout(ctx: SchedulerContext) -> None:
    from campaigns.scheduling.resume import final_reply_timeout

    assert final_reply_timeout("smtp://127.0.0.1:25?final_reply_timeout=900") == timedelta(seconds=900)
    assert final_reply_timeout("smtp://127.0.0.1:25?tls=none") == timedelta(seconds=600)
    store: Any = ctx.store
    run_id, did = _left_open(store, FIRE, "elsewhere:77:gone")
    with store.transaction() as conn:  # its heartbeat went silent long ago, its row 5 minutes ago
        conn.execute(Run.__table__.update().values(heartbeat_at=datetime(2000, 1, 1)))
        conn.execute(Delivery.__table__.update().values(updated_at=utcnow() - timedelta(minutes=5)))
    report = resume_open_runs(ctx)
    # taken over (resumed), but its row may still get its final reply: not resolved yet
    assert report.resumed == [run_key(FIRE, ZONE)] and report.unknown_rows == 0
    with store.transaction() as conn:
        conn.execute(Delivery.__table__.update().values(updated_at=utcnow() - timedelta(minutes=11)))
    assert resume_open_runs(ctx).unknown_rows == 1


_SYNC_HOLDER = """
import sys, time
from campaigns.leases import new_owner
from campaigns.scheduling.lock import SchedulerLock
from campaigns.store import Store
SchedulerLock(Store.open(sys.argv[1]), "sync:" + new_owner()).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_killed_sync_blocks_nothing_and_a_live_one_is_reported(tmp_path: Path, db_url: str) -> None:
    templates = make_templates(tmp_path, {"thanks": follow_up("thanks")})
    env = {
        **os.environ,
        "RETAIN_DATABASE_URL": db_url,
        "RETAIN_TEMPLATES_DIR": str(templates),
        "RETAIN_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(ROOT),
    }
    sync = [sys.executable, "-c", "from campaigns.cli import run; run()", "schedule", "sync", "--json"]
    holder = subprocess.Popen(
        [sys.executable, "-c", _SYNC_HOLDER, db_url], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        busy = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert busy.returncode == 1, busy.stderr
        assert "another `retain schedule sync` is running" in busy.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    done = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["applied"] and any(a.startswith("campaign:thanks@") for a in report["added"])
    store = Store.open(db_url)
    try:
        assert store.lock_holder("scheduler") is None
    finally:
        store.close()


def test_the_scheduler_outlives_a_foreign_write_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A foreign transaction holds SQLite's write lock across several heartbeats (busy timeout 0.1 s): the
    scheduler logs, backs off, stays up, and its heartbeat resumes once the lock is gone."""
    import sqlite3
    import threading
    import time

    from campaigns.scheduling.service import run_forever

    db = tmp_path / "r.db"
    templates = make_templates(tmp_path, {"thanks": follow_up("thanks")})
    settings = settings_for(tmp_path, f"sqlite:///{db}?timeout=0.1", templates)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            run_forever(settings, stop=stop, on_ready=lambda _s: ready.set(), heartbeat_seconds=0.1,
                        install_signals=False)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    store = Store.open(f"sqlite:///{db}")  # migrated before the scheduler opens it
    t = threading.Thread(target=scheduler)
    t.start()
    try:
        assert ready.wait(30), errors
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        def failed_beats() -> int:
            return sum("heartbeat failed" in r.getMessage() for r in caplog.records)

        deadline = time.monotonic() + 30
        while failed_beats() < 3:  # several failed beats while the lock is held, not just one
            assert time.monotonic() < deadline and t.is_alive(), errors
            time.sleep(0.05)
        assert t.is_alive(), errors
        holder.execute("ROLLBACK")
        holder.close()
        held_at = store.lock_holder("scheduler").heartbeat_at  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while store.lock_holder("scheduler").heartbeat_at <= held_at:  # type: ignore[union-attr]
            assert time.monotonic() < deadline and t.is_alive(), errors
            time.sleep(0.05)
        assert any(
            "stays up and retries" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records
        )
    finally:
        stop.set()
        t.join(60)
        store.close()
    assert not t.is_alive() and errors == []
