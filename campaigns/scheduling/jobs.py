"""The functions the job store refers to by text, and the context they run in.

Jobs are stored as ``"campaigns.scheduling.jobs:run_scheduled"`` with args ``(campaign, zone)``;
the scheduler process binds a :class:`SchedulerContext` (settings, store, clock, the scheduler for
retries) before starting, and each job looks it up. :class:`FireTimesExecutor` hands a job **all**
its due fire times in one call (``fire_times=``) so the missed-run policy (campaigns/scheduling/
policy.py) sees them, instead of APScheduler dropping late ones on its own real-time clock.

What one fire does (``run_scheduled``):

1. reload the campaign from its template (an edited subject applies without a re-sync; a removed
   or broken campaign is logged with what to do, never raised into the scheduler);
2. decide: send the latest fire within ``max_lateness``; record the others as skipped runs;
3. run it through the configured dispatcher (``settings.dispatcher``: in this process, or on Celery
   workers) with run key ``plan.run_key(fire, zone)``, the audience restricted to the zone for
   recipient-local jobs; a shutdown request stops it between batches (the run stays resumable: same
   key, ledger rows kept);
4. a failure is logged with its reason and retried after ``RETRY_DELAYS`` (a one-off job in the
   job store, so a restart keeps it) — after ``TRANSIENT_RETRY`` when the database was locked or
   unreachable; past the last delay, or beyond the lateness, it is left for `retain send` / recorded
   as skipped.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.triggers.date import DateTrigger

from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.definition import DEFAULT_MAX_LATENESS, CampaignDefinition, find_campaign
from campaigns.errors import (
    LeaseLostError,
    ModelError,
    NotFoundError,
    RetainError,
    RunBusyError,
    SchedulerError,
    TemplateError,
)
from campaigns.kinds import ModelUse
from campaigns.scheduling.plan import FUNC_RUN, run_key
from campaigns.scheduling.policy import decide_fires
from campaigns.status import CLOSED_RUN, RunStatus
from campaigns.store.faults import describe, is_database_error, is_transient
from campaigns.store.protocols import PipelineStore
from campaigns.summary import RunSummary

log = logging.getLogger("campaigns.scheduling")

#: waits before retrying a failed (or paused) run: attempt 1, 2, 3
RETRY_DELAYS = (timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=45))
TRAIN_MAX_LATENESS = timedelta(hours=6)
#: wait before retrying a run that failed on a transient database fault (locked, timeout, unreachable)
TRANSIENT_RETRY = timedelta(seconds=30)
#: waits between attempts to store a retry job while the database is locked (about a minute in all)
STORE_RETRY_PAUSES = (1, 2, 4, 8, 16, 32)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ShutdownRequested(SchedulerError):
    """Raised between batches when the scheduler is stopping; the run is left resumable."""


@dataclass
class SchedulerContext:
    """What jobs need: the process's settings and store, an aware-UTC clock, and the scheduler."""

    settings: Settings
    store: PipelineStore
    clock: Clock = utc_now
    scheduler: Any | None = None  # a started APScheduler scheduler: retries are added to it
    owner: str = "scheduler"
    stopping: threading.Event = field(default_factory=threading.Event)
    retry_delays: tuple[timedelta, ...] = RETRY_DELAYS
    transient_retry: timedelta = TRANSIENT_RETRY


_context: SchedulerContext | None = None


def bind(context: SchedulerContext | None) -> None:
    """Make ``context`` the one jobs of this process use (None unbinds)."""
    global _context
    _context = context


def current() -> SchedulerContext:
    if _context is None:
        raise SchedulerError("scheduled jobs run inside `retain schedule run` (no scheduler context bound)")
    return _context


@dataclass(frozen=True)
class FireOutcome:
    """What one call did: ``status`` is sent | skipped | failed | missing | busy | stopped | nothing."""

    campaign: str
    status: str
    run_key: str | None = None
    reason: str | None = None
    skipped: int = 0
    summary: RunSummary | None = None


# ------------------------------------------------------------------------------------------ campaign runs


def run_scheduled(
    campaign: str,
    zone: str | None = None,
    *,
    fire_times: Sequence[datetime] = (),
    retry_of: str | None = None,
    attempt: int = 0,
) -> FireOutcome:
    """One fire (or several coalesced) of a campaign's job; see the module docstring. Never raises RetainError."""
    ctx = current()
    now = ctx.clock()
    if retry_of:
        fire_times = [datetime.fromisoformat(retry_of)]
    fires = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in fire_times] or [now]
    try:
        definition = find_campaign(Path(ctx.settings.templates_dir), campaign)
    except NotFoundError:
        reason = f"campaign {campaign!r} no longer exists in {ctx.settings.templates_dir}; run `retain schedule sync`"
        log.error("%s", reason)
        return FireOutcome(campaign, "missing", reason=reason)
    except TemplateError as exc:
        reason = f"template invalid, not sent: {exc}"
        log.error("campaign %s: %s", campaign, reason)
        for t in fires:
            _record_skipped(ctx, campaign, run_key(t, zone), t, reason)
        return FireOutcome(campaign, "skipped", reason=reason, skipped=len(fires))
    if not definition.enabled:  # disabled after the last `schedule sync`
        reason = f"campaign {campaign!r} has enabled: false; not sent (run `retain schedule sync`)"
        log.warning("%s", reason)
        return FireOutcome(campaign, "skipped", reason=reason)
    lateness = definition.schedule.max_lateness if definition.schedule else DEFAULT_MAX_LATENESS
    decision = decide_fires(fires, now, lateness)
    for t, reason in decision.skipped:
        _record_skipped(ctx, campaign, run_key(t, zone), t, reason)
    if decision.run_at is None:
        return FireOutcome(campaign, "skipped", reason=decision.skipped[-1][1], skipped=len(decision.skipped))
    return _execute(ctx, definition, zone, decision.run_at, attempt, len(decision.skipped))


run_scheduled.accepts_fire_times = True  # type: ignore[attr-defined]


def _execute(
    ctx: SchedulerContext,
    definition: CampaignDefinition,
    zone: str | None,
    fire: datetime,
    attempt: int,
    skipped: int,
) -> FireOutcome:
    from campaigns.dispatch import resolve_dispatcher
    from campaigns.factory import campaign_recommender
    from campaigns.runner import RunRequest

    name, key = definition.name, run_key(fire, zone)
    dispatcher = resolve_dispatcher(ctx.settings)
    recommender = None
    try:
        # a kind that requires the model is skipped without one; Celery workers load their own copy
        if dispatcher.loads_model or definition.kind_plugin.needs.model is ModelUse.REQUIRED:
            recommender = campaign_recommender(definition, ctx.settings, ctx.store)
    except (NotFoundError, ModelError) as exc:
        reason = f"no usable recommender model: {exc}"
        log.error("campaign %s (%s): %s", name, key, reason)
        _record_skipped(ctx, name, key, fire, reason)
        return FireOutcome(name, "skipped", key, reason, skipped + 1)
    request = RunRequest(
        definition, run_key=key, now=reference_now(ctx.settings, ctx.store), scheduled_for=_naive_utc(fire),
        zone=zone, checkpoint=functools.partial(_stop_if_shutting_down, ctx),
    )  # fmt: skip
    try:
        summary = dispatcher.send(ctx.store, ctx.settings, request, recommender=recommender)
    except ShutdownRequested:
        log.warning("campaign %s (%s) stopped by shutdown; it resumes when the scheduler restarts", name, key)
        _schedule_retry(ctx, name, zone, fire, attempt, at=ctx.clock(), count_attempt=False)
        return FireOutcome(name, "stopped", key, "scheduler shutdown", skipped)
    except RunBusyError as exc:
        log.info("campaign %s (%s): %s", name, key, exc)
        return FireOutcome(name, "busy", key, str(exc), skipped)
    except LeaseLostError as exc:
        log.error("campaign %s (%s): %s", name, key, exc)
        return FireOutcome(name, "lost", key, str(exc), skipped)
    except Exception as exc:  # noqa: BLE001 - one campaign's failure must not stop the scheduler
        reason = str(exc) if isinstance(exc, RetainError) else f"{type(exc).__name__}: {exc}"
        if is_database_error(exc):
            reason = describe(exc)
        log.error(
            "campaign %s run %s failed: %s", name, key, reason,
            exc_info=not isinstance(exc, RetainError) and not is_database_error(exc),
        )  # fmt: skip
        if is_database_error(exc) and is_transient(exc):
            # a locked or unreachable database passes: try again soon (the run resumes where it stopped)
            _schedule_retry(ctx, name, zone, fire, attempt, at=ctx.clock() + ctx.transient_retry)
        else:
            _schedule_retry(ctx, name, zone, fire, attempt)
        return FireOutcome(name, "failed", key, reason, skipped)
    log.info("campaign %s run %s (%s): %s", name, key, dispatcher.name, summary.to_json())
    if summary.status == RunStatus.PAUSED:
        _schedule_retry(ctx, name, zone, fire, attempt)
    elif summary.status == RunStatus.DEFERRED and summary.next_attempt_at:
        later = datetime.fromisoformat(summary.next_attempt_at).replace(tzinfo=UTC)
        _schedule_retry(ctx, name, zone, fire, attempt, at=max(later, ctx.clock() + timedelta(minutes=1)))
    return FireOutcome(name, "sent", key, summary.reason, skipped, summary)


def _stop_if_shutting_down(ctx: SchedulerContext) -> None:
    if ctx.stopping.is_set():
        raise ShutdownRequested("the scheduler is stopping")


def _record_skipped(ctx: SchedulerContext, campaign: str, key: str, fire: datetime, reason: str) -> None:
    """A run row with status ``skipped`` and the reason (left alone when it already completed)."""
    try:
        run = ctx.store.start_run(campaign, key, owner=ctx.owner, scheduled_for=_naive_utc(fire))
    except RunBusyError as exc:
        log.info("campaign %s (%s): not marked skipped: %s", campaign, key, exc)
        return
    if run.status in CLOSED_RUN:
        return
    ctx.store.finish_run(run.id, ctx.owner, RunStatus.SKIPPED, reason[:1000])
    log.warning("campaign %s run %s skipped: %s", campaign, key, reason)


def _schedule_retry(
    ctx: SchedulerContext,
    campaign: str,
    zone: str | None,
    fire: datetime,
    attempt: int,
    *,
    at: datetime | None = None,
    count_attempt: bool = True,
) -> None:
    if count_attempt and attempt >= len(ctx.retry_delays):
        log.error(
            "campaign %s run %s: giving up after %d retries; `retain send %s --run-key %s` resumes it",
            campaign, run_key(fire, zone), attempt, campaign, run_key(fire, zone),
        )  # fmt: skip
        return
    when = at or ctx.clock() + ctx.retry_delays[attempt]
    if ctx.scheduler is None:
        log.warning("campaign %s: would retry at %s (not running under a scheduler)", campaign, when)
        return
    job_id = retry_job_id(campaign, zone, fire)
    for pause in (*STORE_RETRY_PAUSES, None):
        try:
            ctx.scheduler.add_job(
                FUNC_RUN,
                DateTrigger(when),
                args=(campaign, zone),
                kwargs={"retry_of": fire.isoformat(), "attempt": attempt + 1 if count_attempt else attempt},
                id=job_id,
                name=f"{campaign}: retry {attempt + 1 if count_attempt else 'resume'} of {run_key(fire, zone)}",
                replace_existing=True,
            )
            break
        except Exception as exc:  # noqa: BLE001 - a locked database must not lose the retry silently
            if pause is None or not is_transient(exc):
                log.error(
                    "campaign %s: could not store the retry of %s (%s); the next scheduler start resumes it",
                    campaign, run_key(fire, zone), describe(exc),
                )  # fmt: skip
                return
            log.warning(
                "campaign %s: storing the retry failed (%s); again in %d s", campaign, describe(exc), pause
            )
            time.sleep(pause)
    log.warning("campaign %s: retry of %s scheduled at %s", campaign, run_key(fire, zone), when.isoformat())


def retry_job_id(campaign: str, zone: str | None, fire: datetime) -> str:
    return f"retry:{campaign}@{zone or '-'}:{fire.isoformat()}"


def schedule_resume(
    ctx: SchedulerContext, campaign: str, zone: str | None, fire: datetime, *, at: datetime
) -> bool:
    """Add a one-off job resuming the run of ``fire`` at ``at``; False when a retry of it already waits."""
    if ctx.scheduler is None:
        return False
    if ctx.scheduler.get_job(retry_job_id(campaign, zone, fire)) is not None:
        return False
    _schedule_retry(ctx, campaign, zone, fire, 0, at=at, count_attempt=False)
    return True


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------ nightly training


def train_scheduled(*, fire_times: Sequence[datetime] = ()) -> FireOutcome:
    """Retrain the recommender (the nightly ``train`` job); a missing data set is logged, not raised."""
    from campaigns.training import train_model

    ctx = current()
    now = ctx.clock()
    decision = decide_fires(list(fire_times) or [now], now, TRAIN_MAX_LATENESS)
    if decision.run_at is None:
        log.warning("train skipped: %s", decision.skipped[-1][1])
        return FireOutcome("train", "skipped", reason=decision.skipped[-1][1])
    try:
        path = train_model(ctx.store, ctx.settings)
    except RetainError as exc:
        log.error("train failed: %s", exc)
        return FireOutcome("train", "failed", reason=str(exc))
    log.info("train: model saved to %s", path)
    _refresh_predictions(ctx)
    return FireOutcome("train", "sent", reason=str(path))


def _refresh_predictions(ctx: SchedulerContext) -> None:
    """The nightly retrain also refreshes the lifecycle predictions (segments and send hours read them)."""
    from campaigns.clock import reference_now
    from campaigns.lifecycle import refresh_predictions

    try:
        result = refresh_predictions(ctx.store, ctx.settings, reference_now(ctx.settings, ctx.store))
    except RetainError as exc:
        log.warning("lifecycle predictions not refreshed: %s", exc)
        return
    log.info("lifecycle predictions refreshed for %d customers", result.details["customers"])


train_scheduled.accepts_fire_times = True  # type: ignore[attr-defined]

#: the one-off job the scheduler adds when purchase history changed since the model was trained
TRAIN_AFTER_IMPORT_JOB = "train:after-import"
FUNC_TRAIN_AFTER_IMPORT = "campaigns.scheduling.jobs:train_after_import"


def train_after_import() -> FireOutcome:
    """Retrain when an import changed the purchase history since the model was trained (or there is none)."""
    from campaigns.training import model_is_stale, train_model

    ctx = current()
    why = model_is_stale(ctx.store, ctx.settings)
    if why is None:
        return FireOutcome("train", "nothing", reason="the model is up to date")
    log.info("train: %s; retraining", why)
    try:
        path = train_model(ctx.store, ctx.settings)
    except NotFoundError as exc:  # nothing to learn from yet
        log.info("train after import skipped: %s", exc)
        return FireOutcome("train", "skipped", reason=str(exc))
    except RetainError as exc:
        log.error("train after import failed: %s", exc)
        return FireOutcome("train", "failed", reason=str(exc))
    log.info("train: model saved to %s (after an import)", path)
    return FireOutcome("train", "sent", reason=str(path))


def queue_train_if_stale(ctx: SchedulerContext) -> bool:
    """Add the one-off retrain job when the model is older than the data (cheap: signature vs metadata).

    Only while some campaign is scheduled (the nightly ``train`` job exists); True when queued.
    """
    from campaigns.scheduling.plan import TRAIN_JOB_ID
    from campaigns.training import model_is_stale

    scheduler = ctx.scheduler
    if scheduler is None or scheduler.get_job(TRAIN_JOB_ID) is None:
        return False
    if scheduler.get_job(TRAIN_AFTER_IMPORT_JOB) is not None:
        return False
    why = model_is_stale(ctx.store, ctx.settings)
    if why is None:
        return False
    scheduler.add_job(
        FUNC_TRAIN_AFTER_IMPORT, DateTrigger(ctx.clock()), id=TRAIN_AFTER_IMPORT_JOB,
        name=f"train: {why}", replace_existing=True,
    )  # fmt: skip
    log.info("train queued: %s", why)
    return True


# ------------------------------------------------------------------------------------------ the executor


class FireTimesExecutor(ThreadPoolExecutor):
    """A thread pool that passes every due fire time to jobs marked ``accepts_fire_times``.

    APScheduler's own ``run_job`` judges misfires on the real clock and calls the job once per
    fire; Retain's jobs apply the missed-run policy themselves (deterministic with an injected clock).
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        if not getattr(job.func, "accepts_fire_times", False):
            super()._do_submit_job(job, run_times)
            return

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        self._pool.submit(_call_with_fire_times, job, list(run_times)).add_done_callback(done)


def _call_with_fire_times(job: Any, run_times: list[datetime]) -> list[JobExecutionEvent]:
    alias = job._jobstore_alias
    try:
        retval = job.func(*job.args, fire_times=run_times, **job.kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to listeners like APScheduler's run_job does
        log.exception("job %s raised", job.id)
        return [JobExecutionEvent(EVENT_JOB_ERROR, job.id, alias, run_times[-1], exception=exc, traceback="")]
    return [JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, alias, run_times[-1], retval=retval)]


__all__ = [
    "FireOutcome",
    "FireTimesExecutor",
    "SchedulerContext",
    "ShutdownRequested",
    "bind",
    "current",
    "run_scheduled",
    "queue_train_if_stale",
    "train_after_import",
    "train_scheduled",
]
