"""Fault trials for the scheduler, leases and storage, with real processes (issue 14, docs/scheduling.md).

Each trial builds a synthetic shop (tests/synthetic.py), a scheduled copy of ``weekly-picks`` that is due
when the scheduler starts (``once`` yesterday, ``max_lateness: 72h``), a real SMTP sink on loopback
(tests/smtp_sink.py) and runs ``python scheduler.py`` / ``retain send`` as separate processes:

- ``kill``: SIGKILL the scheduler once the sink has taken a random number of messages (kill by progress,
  not by clock), start another (``kills`` times in a row: each successor is killed while resuming); the
  run must be resumed and completed;
- ``lease``: ``retain send`` stuck on a silent server (its heartbeat must keep advancing), a rerun of
  the same run key must be refused and mark nothing failed; then the stuck process is killed and a
  rerun against the sink completes the run;
- ``lock``: once the sink has taken some messages, a foreign transaction holds the database's write
  lock for ``hold`` seconds (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE
  MODE`` on the ledger and the lock table) while the scheduler heartbeats; the scheduler must stay up
  and finish the run.

Every trial ends with :func:`audit`: duplicates at the sink, customers silently unmailed (no ledger row,
or a row left open), and the ledger's own consistency with the sink. From the project root::

    python -m tests.fault_trials_sched --repeat 20 --db sqlite,postgresql --trials kill,lease,lock [--kills 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text

from campaigns.models import Delivery, Run
from campaigns.store import Store
from campaigns.training import train_model

from .databases import fresh_database
from .fault_trials_send import wait_for
from .smtp_sink import FaultPlan, SinkProcess
from .synthetic import ROOT, cli_env, make_shop, shop_settings

CAMPAIGN = "weekly-picks"
TRIALS = ("kill", "lease", "lock")
#: a bound on every wait: a trial never hangs, whatever the machine's load
WAIT_SECONDS = 300


@dataclass
class TrialResult:
    trial: str
    db: str
    customers: int
    duplicates: int = 0  # extra copies at the sink
    unmailed: int = 0  # customers with no ledger row, or a row left open (claimed / sending / deferred)
    sent: int = 0
    unknown: int = 0  # in flight when a process died: counted, never re-sent
    holdout: int = 0
    other: dict[str, int] = field(default_factory=dict)
    inconsistent: int = 0  # sent rows missing at the sink + sink messages the ledger does not know
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.unmailed or self.inconsistent)


# ------------------------------------------------------------------------------------------ set-up


def scheduled_templates(tmp: Path, fire_day: datetime) -> Path:
    """The repository's templates with only ``weekly-picks``, due ``once`` on ``fire_day`` at 09:00 UTC."""
    root = tmp / "templates"
    shutil.copytree(ROOT / "templates", root)
    for path in (root / "emails").iterdir():
        if not path.name.startswith(CAMPAIGN + "."):
            path.unlink()
    mjml = root / "emails" / f"{CAMPAIGN}.mjml"
    source = mjml.read_text(encoding="utf-8")
    schedule = f"schedule: {{once: {fire_day:%Y-%m-%d}, timezone: UTC, max_lateness: 72h}}"
    mjml.write_text(source.replace('schedule: "0 9 * * MON"', schedule), encoding="utf-8")
    return root


@dataclass
class Shop:
    db_url: str
    tmp: Path
    customers: int
    templates: Path
    settings: Any

    def env(self, sender: str, db_url: str | None = None) -> dict[str, str]:
        s = self.settings.with_overrides(database_url=db_url or self.db_url, sender=sender)
        return cli_env(
            s, self.tmp, RETAIN_ALLOW_UNSAFE_SEND="1"
        )  # a loopback sink: the go-live guard would refuse

    def store(self) -> Store:
        return Store.open(self.db_url)


def make_trial_shop(db_url: str, tmp: Path, customers: int, seed: int) -> Shop:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    templates = scheduled_templates(tmp, yesterday)
    settings = shop_settings(tmp, database_url=db_url, templates_dir=str(templates), holdout_share=0.1)
    store = Store.open(db_url)
    try:
        make_shop(store, customers=customers, products=60, seed=seed)
        train_model(store, settings, model="itemknn")
    finally:
        store.close()
    return Shop(db_url, tmp, customers, templates, settings)


def database(kind: str, tmp: Path) -> AbstractContextManager[str]:
    """A fresh SQLite file, or a fresh schema on the test PostgreSQL server (dropped afterwards)."""
    return fresh_database(kind, tmp, prefix="f_")


def start_scheduler(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py")], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )


def retain(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-c", "from campaigns.cli import run; run()", *args]


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_row(store: Store) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(Run).where(Run.campaign == CAMPAIGN).order_by(Run.id)).first()


def run_status(store: Store) -> str | None:
    row = run_row(store)
    return row.status if row is not None else None


# ------------------------------------------------------------------------------------------ the audit


def audit(shop: Shop, sink_counts: Counter[str], result: TrialResult) -> TrialResult:
    """Fill ``result`` from the ledger and the sink (see the module docstring)."""
    store = shop.store()
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.customer_id, Delivery.email, Delivery.status, Delivery.reason)
            ).all()
            customers = {int(x) for (x,) in conn.execute(text("SELECT id FROM customers"))}
    finally:
        store.close()
    per_customer = Counter(int(r.customer_id) for r in rows)
    by_status: dict[str, set[str]] = {}
    for r in rows:
        status = r.status
        if status == "failed" and r.reason == "in_flight_at_crash":
            status = "unknown"
        by_status.setdefault(status, set()).add(r.email)
    result.duplicates = sum(n - 1 for n in sink_counts.values() if n > 1)
    open_rows = sum(len(by_status.get(s, ())) for s in ("claimed", "sending", "deferred"))
    result.unmailed = (
        len(customers - set(per_customer)) + open_rows + sum(n - 1 for n in per_customer.values() if n > 1)
    )
    result.sent = len(by_status.get("sent", ()))
    result.unknown = len(by_status.get("unknown", ()))
    result.holdout = len(by_status.get("holdout", ()))
    result.other = {k: len(v) for k, v in by_status.items() if k not in {"sent", "unknown", "holdout"}}
    arrived = set(sink_counts)
    result.inconsistent = len(by_status.get("sent", set()) - arrived) + len(
        arrived - by_status.get("sent", set()) - by_status.get("unknown", set())
    )
    return result


# ------------------------------------------------------------------------------------------ the trials


def trial_kill(
    db: str, db_url: str, tmp: Path, rng: random.Random, customers: int = 1200, kills: int = 1
) -> TrialResult:
    """SIGKILL the scheduler mid-fire (after a random number of messages), start another — ``kills``
    times, each successor killed in turn while resuming — then one more: the run must complete."""
    started = time.monotonic()
    shop = make_trial_shop(db_url, tmp, customers, rng.randint(1, 10_000))
    result = TrialResult("kill", db, customers)
    notes: list[str] = []
    with SinkProcess(tmp / "sink.log", FaultPlan(delay_ms=2)) as sink:
        env = shop.env(sink.dsn)
        store = shop.store()
        try:
            for i in range(kills):
                target = sum(sink.counts().values()) + rng.randint(50, max(51, customers // (2 * kills)))
                proc = start_scheduler(env, tmp / f"scheduler-{i + 1}.log")
                reached = wait_for(lambda t=target: sum(sink.counts().values()) >= t, proc, WAIT_SECONDS)
                proc.kill()
                proc.wait()
                notes.append(
                    f"kill {i + 1} after {sum(sink.counts().values())} messages (target {target}, "
                    f"reached={reached}, run {run_status(store)})"
                )
            last = start_scheduler(env, tmp / f"scheduler-{kills + 1}.log")
            try:
                done = wait_for(lambda: run_status(store) == "completed", last, WAIT_SECONDS)
            finally:
                stop(last)
        finally:
            store.close()
        counts = sink.counts()
    result.note = "; ".join(notes) + f"; resumed run completed={done}"
    if not done:
        result.unmailed = customers
    result.seconds = time.monotonic() - started
    audited = audit(shop, counts, result)
    if not done:
        audited.note += " — NOT COMPLETED"
    return audited


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never says a word (a stuck SMTP server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def trial_lease(db: str, db_url: str, tmp: Path, rng: random.Random, customers: int = 400) -> TrialResult:
    """A sender stuck on a silent server and a rerun of its key: refused, nothing failed; then finished."""
    started = time.monotonic()
    shop = make_trial_shop(db_url, tmp, customers, rng.randint(1, 10_000))
    result = TrialResult("lease", db, customers)
    silent = SilentServer()
    store = shop.store()
    problems: list[str] = []
    try:
        env = shop.env(f"smtp://127.0.0.1:{silent.port}?tls=none&timeout=90")
        args = ["send", CAMPAIGN, "--run-key", "lease-trial", "--json"]
        stuck = subprocess.Popen(
            retain(env, *args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def sending() -> bool:
            with store.engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM deliveries WHERE status = 'sending'")).scalar()
            return bool(n)

        if not wait_for(sending, stuck, WAIT_SECONDS):
            problems.append("the stuck sender never reached the server")
        first_beat = run_row(store).heartbeat_at
        # its heartbeat runs on its own thread: it advances while the sender waits on the silent server
        if not wait_for(lambda: run_row(store).heartbeat_at > first_beat, stuck, 60):
            problems.append("the stuck sender's heartbeat did not advance")
        rerun = subprocess.run(
            retain(env, *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_SECONDS
        )
        if rerun.returncode == 0 or "being sent by" not in rerun.stderr:
            problems.append(f"the rerun was not refused (exit {rerun.returncode}): {rerun.stderr[-300:]}")
        with store.engine.connect() as conn:
            failed = conn.execute(text("SELECT count(*) FROM deliveries WHERE status = 'failed'")).scalar()
        if failed:
            problems.append(f"{failed} rows marked failed while their owner was alive")
        if stuck.poll() is not None:
            problems.append("the stuck sender exited early")
        stuck.kill()
        stuck.wait()
        assert stuck.stderr is not None
        stuck.stderr.close()
    finally:
        silent.close()
    try:
        with SinkProcess(tmp / "sink.log", FaultPlan(delay_ms=1)) as sink:
            env = shop.env(sink.dsn)
            final = subprocess.run(
                retain(env, "send", CAMPAIGN, "--run-key", "lease-trial", "--json"),
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_SECONDS,
            )  # fmt: skip
            if final.returncode != 0:
                problems.append(f"the final rerun failed: {final.stderr[-300:]}")
            counts = sink.counts()
    finally:
        store.close()
    result.note = (
        "; ".join(problems) or "rerun refused while the owner lived; heartbeat advanced; no row failed"
    )
    result.seconds = time.monotonic() - started
    audited = audit(shop, counts, result)
    if problems:
        audited.inconsistent += len(problems)
    return audited


@contextmanager
def foreign_write_lock(db_url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection (a long foreign transaction)."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(
            db_url.removeprefix("sqlite:///").split("?")[0], timeout=60, isolation_level=None
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE deliveries, scheduler_locks, runs IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


def trial_lock(
    db: str, db_url: str, tmp: Path, rng: random.Random, customers: int = 800, hold: float = 12.0
) -> TrialResult:
    """A foreign transaction holds the write lock for ``hold`` s mid-fire: the scheduler lives and finishes."""
    started = time.monotonic()
    shop = make_trial_shop(db_url, tmp, customers, rng.randint(1, 10_000))
    result = TrialResult("lock", db, customers)
    # a busy timeout shorter than the hold, so the scheduler meets "database is locked" (the default 30 s
    # with a 40 s hold does the same, slower)
    sched_url = f"{db_url}?timeout=2" if db.startswith("sqlite") else db_url
    problems: list[str] = []
    log = tmp / "scheduler.log"
    with SinkProcess(tmp / "sink.log", FaultPlan(delay_ms=3)) as sink:
        env = shop.env(sink.dsn, db_url=sched_url)
        sched = start_scheduler(env, log)
        store = shop.store()
        try:
            target = rng.randint(20, customers // 3)
            wait_for(lambda: sum(sink.counts().values()) >= target, sched, WAIT_SECONDS)
            with foreign_write_lock(db_url):
                deadline = time.monotonic() + hold
                while time.monotonic() < deadline:
                    if sched.poll() is not None:
                        problems.append(f"the scheduler exited during the lock (code {sched.returncode})")
                        break
                    time.sleep(0.1)
            done = wait_for(lambda: run_status(store) == "completed", sched, WAIT_SECONDS)
            if not done:
                problems.append(f"the run did not complete after the lock (status {run_status(store)})")
            if sched.poll() is not None:
                problems.append(f"the scheduler exited (code {sched.returncode})")
        finally:
            stop(sched)
            store.close()
        counts = sink.counts()
    text_log = log.read_text(errors="replace")
    errors = text_log.count("locked")
    result.note = (
        "; ".join(problems) or f"scheduler stayed up through a {hold:g} s lock ({errors} 'locked' log lines)"
    )
    result.seconds = time.monotonic() - started
    audited = audit(shop, counts, result)
    if problems:
        audited.inconsistent += len(problems)
    return audited


RUNNERS: dict[str, Callable[..., TrialResult]] = {
    "kill": trial_kill,
    "lease": trial_lease,
    "lock": trial_lock,
}


def run_trial(name: str, db: str, seed: int, **kwargs: Any) -> TrialResult:
    tmp = Path(tempfile.mkdtemp(prefix=f"trial-{name}-{db}-"))
    try:
        with database(db, tmp) as url:
            return RUNNERS[name](db, url, tmp, random.Random(seed), **kwargs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fault_trials_sched", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--repeat", type=int, default=1, help="repeats of each trial on each database")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--trials", default=",".join(TRIALS), help=f"comma-separated: {', '.join(TRIALS)}")
    parser.add_argument(
        "--hold", type=float, default=40.0, help="seconds the lock trial holds the write lock"
    )
    parser.add_argument(
        "--kills", type=int, default=1, help="schedulers SIGKILLed in a row in the kill trial"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--budget", type=float, default=0, help="stop starting repeats after this many seconds"
    )
    parser.add_argument("--json", help="append one JSON line per trial to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results: list[TrialResult] = []
    started = time.monotonic()
    for i in range(args.repeat):
        if args.budget and time.monotonic() - started > args.budget:
            print(f"budget of {args.budget:g} s spent: stopping after {i} repeats", flush=True)
            break
        for name in args.trials.split(","):
            for db in args.db.split(","):
                extra: dict[str, Any] = {"hold": args.hold} if name == "lock" else {}
                if name == "kill":
                    extra["kills"] = args.kills
                r = run_trial(name, db, args.seed * 1000 + i, **extra)
                results.append(r)
                print(
                    f"[{i + 1}/{args.repeat}] {name:5} {db:10} {'ok ' if r.ok else 'BAD'} dup={r.duplicates} "
                    f"unmailed={r.unmailed} sent={r.sent} unknown={r.unknown} holdout={r.holdout} "
                    f"other={r.other} inconsistent={r.inconsistent} {r.seconds:.0f}s — {r.note}",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(asdict(r)) + "\n")
    print("\ntotals per trial and database:")
    keys = sorted({(r.trial, r.db) for r in results})
    for trial, db in keys:
        rs = [r for r in results if r.trial == trial and r.db == db]
        print(
            f"  {trial:5} {db:10} runs={len(rs)} bad={sum(not r.ok for r in rs)} "
            f"duplicates={sum(r.duplicates for r in rs)} unmailed={sum(r.unmailed for r in rs)} "
            f"unknown={sum(r.unknown for r in rs)} sent={sum(r.sent for r in rs)}"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
