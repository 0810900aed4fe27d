"""Build the APScheduler 3 scheduler on the store's database, and run it in the foreground.

The job store is APScheduler's ``SQLAlchemyJobStore`` on the store's own engine (table
``apscheduler_jobs``), so jobs survive restarts. ``run_forever`` is what ``retain schedule run``
and ``python scheduler.py`` do: take the single-scheduler lock, sync the jobs, start, renew the
lock every ``HEARTBEAT_SECONDS`` and re-sync every ``RESYNC_SECONDS`` (new timezones, edited
templates); SIGINT/SIGTERM stop it cleanly: no new fires, in-flight runs stop at their next batch
and are re-queued to resume (same run key) on the next start; a second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from campaigns.config import Settings
from campaigns.errors import RetainError, SchedulerError
from campaigns.scheduling.jobs import (
    Clock,
    FireTimesExecutor,
    SchedulerContext,
    bind,
    queue_train_if_stale,
    utc_now,
)
from campaigns.scheduling.lock import HEARTBEAT_SECONDS, SchedulerLock
from campaigns.scheduling.resume import resume_open_runs
from campaigns.scheduling.sync import SyncReport, sync_jobs
from campaigns.store.faults import describe

log = logging.getLogger("campaigns.scheduling")

JOBS_TABLE = "apscheduler_jobs"
RESYNC_SECONDS = 300
MAX_WORKERS = 4
#: how long a clean stop waits for in-flight runs to reach their next batch boundary
STOP_GRACE_SECONDS = 120


class _TrackingExecutor(FireTimesExecutor):
    """Counts in-flight jobs so a stop can wait for them before shutting the scheduler down."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self._busy = 0
        self._idle = threading.Condition()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        with self._idle:
            self._busy += 1
        super()._do_submit_job(job, run_times)

    def _run_job_success(self, job_id: str, events: list[Any]) -> None:
        try:
            super()._run_job_success(job_id, events)
        finally:
            self._done()

    def _run_job_error(self, job_id: str, exc: BaseException, traceback: Any = None) -> None:
        try:
            super()._run_job_error(job_id, exc, traceback)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy <= 0, timeout)


class _ResilientScheduler(BackgroundScheduler):
    """APScheduler's scheduler whose loop survives a job-store error after a job was submitted.

    APScheduler 3 retries a failing ``get_due_jobs`` but lets an error from ``update_job`` (a locked
    or unreachable database) end its loop thread: the process would live on and never fire again.
    """

    def _process_jobs(self) -> float | None:
        try:
            return super()._process_jobs()  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - logged with its storage advice, retried
            log.error("job store error (%s); retrying in %s s", describe(exc), self.jobstore_retry_interval)
            return float(self.jobstore_retry_interval)


class _StoreJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store on the store's engine, which the store (not the job store) disposes."""

    def shutdown(self) -> None:
        pass


def build_scheduler(context: SchedulerContext, *, max_workers: int = MAX_WORKERS) -> BackgroundScheduler:
    """A (not started) scheduler whose job store lives in the store's database."""
    scheduler = _ResilientScheduler(
        jobstores={"default": _StoreJobStore(engine=context.store.engine, tablename=JOBS_TABLE)},
        executors={"default": _TrackingExecutor(max_workers)},
        # coalescing and lateness are Retain's policy (campaigns/scheduling/policy.py): APScheduler
        # hands every due fire time over; max_instances=1 drops a fire while the previous one runs
        job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1},
        timezone=context.settings.zone(),
    )
    context.scheduler = scheduler
    return scheduler


@contextmanager
def open_scheduler(store: Any, settings: Settings) -> Iterator[BackgroundScheduler]:
    """A started but paused scheduler, for reading and editing the job store (sync, list)."""
    scheduler = build_scheduler(SchedulerContext(settings, store))
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


@dataclass(frozen=True)
class JobRow:
    id: str
    name: str
    next_run_time: datetime | None


def list_jobs(scheduler: Any) -> list[JobRow]:
    """Every job with its next fire time (aware, in the job's zone), soonest first."""
    rows = [JobRow(j.id, j.name, j.next_run_time) for j in scheduler.get_jobs()]
    return sorted(
        rows, key=lambda r: (r.next_run_time is None, r.next_run_time and r.next_run_time.timestamp(), r.id)
    )


def _install_signals(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.error("second signal: exiting now (rows in flight are resolved at most once on the next run)")
            os._exit(130)
        log.warning(
            "signal %d: finishing in-flight batches, then stopping (send it again to exit now)", signum
        )
        stop.set()

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def run_forever(
    settings: Settings,
    *,
    store: Any | None = None,
    clock: Clock = utc_now,
    stop: threading.Event | None = None,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_ready: Callable[[BackgroundScheduler], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    resync_seconds: float = RESYNC_SECONDS,
    install_signals: bool = True,
) -> None:
    """Run the scheduler until ``stop`` is set (or SIGINT/SIGTERM); see the module docstring.

    Raises SchedulerError when another scheduler holds the lock, or when the lock is lost.
    """
    from campaigns.leases import new_owner
    from campaigns.store import Store

    own_store = store is None
    store = store or Store.open(settings.resolved_database_url())
    stop = stop or threading.Event()
    owner = new_owner()
    lock = SchedulerLock(store, owner)
    previous: dict[int, Any] = {}
    try:
        lock.acquire()
        context = SchedulerContext(settings, store, clock=clock, owner=owner)
        scheduler = build_scheduler(context)
        bind(context)
        scheduler.start(paused=True)
        executor: _TrackingExecutor = scheduler._lookup_executor("default")
        try:
            report = sync_jobs(scheduler, store, settings)
            if on_sync:
                on_sync(report)
            # a dead scheduler's fires: APScheduler already moved their jobs on (campaigns/scheduling/resume.py)
            resume_open_runs(context)
            _guarded("train check", lambda: queue_train_if_stale(context))
            if install_signals and threading.current_thread() is threading.main_thread():
                previous = _install_signals(stop)
            scheduler.resume()
            log.info("scheduler %s started on %s", owner, store.url)
            if on_ready:
                on_ready(scheduler)
            last_sync = clock()
            beat = _Heartbeat(lock, heartbeat_seconds)
            while not stop.wait(beat.delay):
                if not beat.renew():
                    raise SchedulerError(
                        f"scheduler {owner} lost its lock on {store.url} (another scheduler took over); stopping"
                    )
                if beat.failures:
                    continue
                if (clock() - last_sync).total_seconds() >= resync_seconds:
                    last_sync = clock()
                    _resync(scheduler, store, settings, on_sync)
                    _guarded("resume", lambda: resume_open_runs(context, include_paused=False))
                    _guarded("train check", lambda: queue_train_if_stale(context))
        finally:
            context.stopping.set()
            scheduler.pause()
            if not executor.wait_idle(STOP_GRACE_SECONDS):
                log.error("in-flight runs did not stop within %d s; exiting anyway", STOP_GRACE_SECONDS)
            scheduler.shutdown(wait=False)
            bind(None)
            log.info("scheduler %s stopped", owner)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        lock.release()
        if own_store:
            store.close()


#: the longest wait between two heartbeat attempts while the database keeps failing
MAX_BACKOFF_SECONDS = 60.0


class _Heartbeat:
    """Renews the scheduler lock; a transient database error is logged and retried with backoff."""

    def __init__(self, lock: SchedulerLock, interval: float) -> None:
        self.lock = lock
        self.interval = interval
        self.delay = interval
        self.failures = 0

    def renew(self) -> bool:
        """False only when the lock was provably lost; database errors keep the scheduler alive."""
        try:
            held = self.lock.heartbeat()
        except Exception as exc:  # noqa: BLE001 - the scheduler must outlive a locked or flaky database
            self.failures += 1
            self.delay = min(
                self.interval * 2 ** (self.failures - 1), max(MAX_BACKOFF_SECONDS, self.interval)
            )
            log.error(
                "heartbeat failed (%s, attempt %d); the scheduler stays up and retries in %.0f s",
                describe(exc), self.failures, self.delay,
            )  # fmt: skip
            return True
        if self.failures:
            log.warning("heartbeat recovered after %d failed attempts", self.failures)
        self.failures, self.delay = 0, self.interval
        return held


def _guarded(what: str, action: Callable[[], object]) -> None:
    """Run a periodic chore; a failure is logged (with storage advice), never raised."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - a chore must never stop the scheduler
        log.error("%s failed: %s", what, describe(exc))


def _resync(
    scheduler: Any, store: Any, settings: Settings, on_sync: Callable[[SyncReport], None] | None
) -> None:
    try:
        report = sync_jobs(scheduler, store, settings)
    except RetainError as exc:
        log.error("re-sync failed (jobs unchanged): %s", exc)
        return
    except Exception:  # noqa: BLE001 - a re-sync must never stop the scheduler
        log.exception("re-sync failed (jobs unchanged)")
        return
    if report.has_changes or report.problems:
        for line in report.lines():
            log.warning("sync: %s", line)
        if on_sync:
            on_sync(report)
        scheduler.wakeup()
