"""Celery dispatch with real processes: worker subprocesses, a real broker, the loopback SMTP sink.

Every trial checks exactly-once the same way (:func:`check_exactly_once`): each ``sent`` ledger row's
recipient was accepted by the sink exactly once, nobody was accepted twice, and a recipient the sink
has without a ``sent`` row can only be a row resolved ``in_flight_at_crash`` (the documented at-most-once
window: the message left before the crash, its result was never recorded).

Workers run ``--pool solo`` (one process each: the machine has 2 shared cores); each trial uses its own
queue and PostgreSQL schema (or SQLite file), so leftovers of one trial never reach another.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from campaigns.config import Settings, postgres_test_url
from campaigns.definition import find_campaign
from campaigns.dispatch.celery import CeleryDispatcher
from campaigns.models import Delivery
from campaigns.runner import RunRequest
from campaigns.store import Store
from campaigns.training import train_model

from .conftest import need_server
from .smtp_sink import FaultPlan, SinkProcess
from .synthetic import cli_env, make_shop, shop_settings

ROOT = Path(__file__).resolve().parent.parent
RETAIN = [sys.executable, "-c", "from campaigns.cli import run; run()"]
REDIS = "redis://127.0.0.1:6379/3"
RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
#: a cheap campaign (one product, no layout) on the real pipeline: segment, model, render, ledger, SMTP
CHEAP_TEMPLATE = """---
name: quick-note
kind: recommendation
subject: "{{ customer.greeting }}, a quick note"
preheader: "Short and cheap to render."
segment: active-buyers
recommend: {blocks: [buy_again], count: 1}
---
<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ customer.greeting }}{% for b in blocks %}{% for p in b.products %}, {{ p.name }}{% endfor %}{% endfor %}.</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def worker_env(settings: Settings, tmp: Path) -> dict[str, str]:
    """The child processes' environment: every setting as RETAIN_*, and an empty retain.toml."""
    return cli_env(settings, tmp)


@dataclass
class Trial:
    """A shop, a sink and worker processes for one test; ``stop()`` cleans everything up."""

    tmp: Path
    db_url: str
    broker: str
    customers: int
    sink_delay_ms: float = 0.0
    concurrency: int = 16
    worker_db_url: str = ""
    queue: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:10])
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        templates = self.tmp / "templates" / "emails"
        templates.mkdir(parents=True)
        (templates / "quick-note.mjml").write_text(CHEAP_TEMPLATE)
        self.sink = SinkProcess(self.tmp / "sink.log", FaultPlan(delay_ms=self.sink_delay_ms)).start()
        self.settings = shop_settings(
            self.tmp, database_url=self.db_url, broker_url=self.broker, sender=self.sink.dsn,
            templates_dir=str(self.tmp / "templates"), dispatcher="celery", batch_size=500,
            send_concurrency=self.concurrency,
        )  # fmt: skip
        self.store = Store.open(self.db_url)
        make_shop(self.store, customers=self.customers)
        train_model(self.store, self.settings)
        self.definition = find_campaign(self.tmp / "templates", "quick-note")

    def start_worker(self, name: str, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        settings = self.settings
        if self.worker_db_url:
            settings = settings.with_overrides(database_url=self.worker_db_url)
        argv = command or [
            sys.executable, "-m", "celery", "-A", "campaigns.dispatch.celery", "worker", "--pool", "solo",
            "-Q", self.queue, "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "info",
        ]  # fmt: skip
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.log_files.append(log)
        proc = subprocess.Popen(
            argv, env=worker_env(settings, self.tmp), cwd=self.tmp, stdout=log, stderr=log
        )
        self.workers.append(proc)
        return proc

    def send(self, run_key: str = "r1", **options: Any) -> Any:
        options.setdefault("stall_seconds", 5.0)
        options.setdefault("timeout", 150.0)
        dispatcher = CeleryDispatcher(queue=self.queue, poll_seconds=0.5, **options)
        return dispatcher.send(self.store, self.settings, RunRequest(self.definition, run_key=run_key))

    def sink_total(self) -> int:
        return sum(self.sink.counts().values())

    def wait_for_sink(self, at_least: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sink_total() < at_least:
            assert time.monotonic() < deadline, f"the sink never reached {at_least} messages"
            time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("w*.log")))

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.log_files:
            log.close()
        self.sink.stop()
        self.store.close()


def in_background(action: Callable[[], None]) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # surfaced by join_checked
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_checked(thread: threading.Thread) -> None:
    thread.join(timeout=120)
    for exc in thread.errors:  # type: ignore[attr-defined]
        raise exc


def check_exactly_once(trial: Trial, summary: Any) -> dict[str, int]:
    """The exactly-once assertions (see the module docstring); returns the ledger's counts."""
    run = trial.store.get_run(summary.run_key, summary.campaign)
    assert run.status == "completed", (run.status, run.reason, trial.logs())
    with trial.store.engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.email, Delivery.status, Delivery.reason).where(Delivery.run_id == run.id)
        ).all()
    counts = trial.sink.counts()
    sent = {e for e, s, _ in rows if s == "sent"}
    in_flight = {e for e, s, r in rows if s == "unknown" and r == "in_flight_at_crash"}
    assert len(rows) == trial.customers  # every customer has exactly one ledger row
    assert not counts or max(counts.values()) == 1, counts.most_common(3)  # nobody twice
    assert all(counts[e] == 1 for e in sent)  # every sent row reached the sink
    assert set(counts) - sent <= in_flight  # anything else was in flight at a crash
    eligible = len(rows) - sum(1 for _, s, _ in rows if s in ("holdout", "skipped"))
    assert len(sent) + len(in_flight) == eligible
    assert {s for _, s, _ in rows} <= {"sent", "holdout", "skipped", "failed", "unknown"}
    return {"sent": len(sent), "in_flight": len(in_flight), "eligible": eligible}


@pytest.fixture
def pg_trial(pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Trial]]:
    trials: list[Trial] = []

    def make(customers: int, broker: str = REDIS, **kwargs: Any) -> Trial:
        trial = Trial(tmp_path, pg_url, broker, customers, **kwargs)
        trials.append(trial)
        return trial

    yield make
    for t in trials:
        t.stop()


# ---------------------------------------------------------------------------- end to end (fast)


@pytest.mark.redis
def test_retain_worker_sends_a_run_that_retain_runs_shows(tmp_path: Path) -> None:
    need_server("Redis", 6379)
    trial = Trial(tmp_path, f"sqlite:///{tmp_path / 'retain.db'}", REDIS, customers=300)
    try:
        trial.start_worker("w1", [*RETAIN, "worker", "--pool", "solo",
                                  "--concurrency", "1", "--queues", trial.queue])  # fmt: skip
        summary = trial.send()
        assert summary.status == "completed" and summary.sent > 0
        result = check_exactly_once(trial, summary)
        assert result["in_flight"] == 0 and result["sent"] == summary.sent
        # the same key again: the run is complete, nothing is sent twice
        again = trial.send()
        assert again.sent == summary.sent and trial.sink_total() == summary.sent
        out = subprocess.run(
            [*RETAIN, "runs", "--json"], env=worker_env(trial.settings, tmp_path),
            cwd=tmp_path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        (row,) = json.loads(out.stdout)
        assert (row["dispatcher"], row["status"], row["sent"], row["in_flight"]) == (
            "celery", "completed", summary.sent, 0,
        )  # fmt: skip
    finally:
        trial.stop()


@pytest.mark.redis
def test_a_scheduled_fire_runs_on_the_celery_workers(tmp_path: Path) -> None:
    """dispatcher = "celery" applies to schedules too: the fire is split and sent by a real worker."""
    from datetime import UTC, datetime, timedelta

    from campaigns.scheduling import jobs
    from campaigns.scheduling.jobs import SchedulerContext, run_scheduled

    need_server("Redis", 6379)
    trial = Trial(tmp_path, f"sqlite:///{tmp_path / 'retain.db'}", REDIS, customers=120)
    trial.settings = trial.settings.with_overrides(celery_queue=trial.queue)
    fire = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    ctx = SchedulerContext(trial.settings, trial.store, clock=lambda: fire + timedelta(minutes=5))
    jobs.bind(ctx)
    try:
        trial.start_worker("w1", [*RETAIN, "worker", "--pool", "solo", "--concurrency", "1"])
        outcome = run_scheduled("quick-note", None, fire_times=[fire])
        assert outcome.status == "sent" and outcome.summary is not None, outcome
        run = trial.store.get_run(outcome.run_key, "quick-note")
        assert run.dispatcher == "celery" and run.scheduled_for is not None
        result = check_exactly_once(trial, outcome.summary)
        assert result["sent"] == outcome.summary.sent > 0
        assert "batch" in trial.logs()  # the worker, not this process, sent it
    finally:
        jobs.bind(None)
        trial.stop()


# ---------------------------------------------------------------------------- reliability (slow)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_worker_killed_mid_batch_every_recipient_exactly_once(pg_trial: Callable[..., Trial]) -> None:
    need_server("Redis", 6379)
    trial = pg_trial(20_000, sink_delay_ms=1.0)
    victim = trial.start_worker("w1")
    trial.start_worker("w2")

    def kill_mid_run() -> None:
        trial.wait_for_sink(5_000)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    killer = in_background(kill_mid_run)
    summary = trial.send()
    join_checked(killer)
    assert victim.returncode == -signal.SIGKILL
    result = check_exactly_once(trial, summary)
    assert result["eligible"] > 17_000
    # at most one send window (RunProcessor moves max(2 x concurrency, 64) rows to `sending` at a time)
    assert summary.in_flight_resolved == result["in_flight"] <= max(2 * trial.concurrency, 64)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_rabbitmq_redelivers_a_killed_workers_batch(pg_trial: Callable[..., Trial]) -> None:
    need_server("RabbitMQ", 5672)
    trial = pg_trial(3_000, broker=RABBIT, sink_delay_ms=3.0, concurrency=4)
    victim = trial.start_worker("w1")
    trial.start_worker("w2")

    def kill_mid_run() -> None:
        trial.wait_for_sink(600)
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    killer = in_background(kill_mid_run)
    summary = trial.send(requeue=False)  # no supervisor help: the broker redelivers the unacked batch
    join_checked(killer)
    check_exactly_once(trial, summary)


def _redis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", *args], capture_output=True, text=True, timeout=10)


def _start_redis() -> None:
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
         "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
        check=True, timeout=10,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while _redis("ping").stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "redis-server did not come back"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_redis_restarted_mid_run_the_run_completes(pg_trial: Callable[..., Trial]) -> None:
    need_server("Redis", 6379)
    trial = pg_trial(4_000, sink_delay_ms=3.0, concurrency=4)
    trial.start_worker("w1")
    trial.start_worker("w2")

    def restart_redis() -> None:
        trial.wait_for_sink(800)
        try:
            _redis("shutdown", "nosave")  # the queue is lost with it
            time.sleep(2)
        finally:
            _start_redis()

    restarter = in_background(restart_redis)
    try:
        summary = trial.send()
    finally:
        restarter.join(timeout=30)
        if _redis("ping").stdout.strip() != "PONG":
            _start_redis()
    join_checked(restarter)
    check_exactly_once(trial, summary)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_database_connections_dropped_mid_batch_are_retried_cleanly(pg_trial: Callable[..., Trial]) -> None:
    need_server("Redis", 6379)
    app_name = "retain_w_" + uuid.uuid4().hex[:8]
    trial = pg_trial(3_000, sink_delay_ms=3.0, concurrency=4)
    trial.worker_db_url = f"{trial.db_url}&application_name={app_name}"
    trial.start_worker("w1")
    admin = create_engine(postgres_test_url(), isolation_level="AUTOCOMMIT")
    killed: list[int] = []
    worker_log = trial.tmp / "w1.log"

    def batch_failed() -> bool:
        return "database error, retrying" in worker_log.read_text(errors="replace")

    def write_retried() -> bool:
        # a result write hit by the kill is retried in place (campaigns/store/faults.retry_transient)
        return "recording results:" in worker_log.read_text(errors="replace")

    def terminate_worker_connections() -> None:
        # kill connections caught inside a statement or transaction (an idle pooled one would just be
        # replaced by the pool's pre-ping): that is what makes a batch fail half way. A connection can
        # finish its statement between the lookup and the kill, so go on until the worker reports a
        # failed batch or an in-place retried write — by progress: until one, or the run is nearly through (2,900 of 3,000 at the
        # sink), bounded by 40 kills and a 120 s safety limit for a stuck run
        trial.wait_for_sink(500)
        deadline = time.monotonic() + 120
        with admin.connect() as conn:
            while (
                len(killed) < 40
                and time.monotonic() < deadline
                and trial.sink_total() < 2_900
                and not (batch_failed() or write_retried())
            ):
                hit = [
                    pid
                    for pid, ok in conn.execute(
                        text(
                            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = :n AND state <> 'idle'"
                        ),
                        {"n": app_name},
                    )
                    if ok
                ]
                killed.extend(hit)
                time.sleep(0.3 if hit else 0.002)  # after a kill, give the worker time to log it

    terminator = in_background(terminate_worker_connections)
    try:
        summary = trial.send()
    finally:
        terminator.join(timeout=60)
        admin.dispose()
    join_checked(terminator)
    assert killed, "no worker connection was terminated"
    check_exactly_once(trial, summary)
    run = trial.store.get_run(summary.run_key, summary.campaign)
    retried = [b for b in (trial.store.get_batch(run.id, n) for n in range(6)) if b and b.attempts > 1]
    # the drop was seen and recovered from: the batch failed and was re-run, or the write was retried in place
    assert batch_failed() or write_retried(), worker_log.read_text(errors="replace")[-2000:]
    if batch_failed():
        assert retried
