"""Celery dispatch: the enqueuer splits a run into batches, workers send them through the same ledger.

Start workers with ``retain worker`` or ``celery -A campaigns.dispatch.celery worker`` (settings from
the environment / retain.toml, as for every entry point; the broker is ``settings.broker_url``, Redis
or RabbitMQ). Delivery guarantees:

- tasks are acknowledged late (``acks_late``), rejected back to the queue when the pool process dies
  (``task_reject_on_worker_lost``), and a worker holds one unacknowledged message (prefetch 1);
- a message names only ``(run_id, batch_no)``; the members, and a lease on the batch, live in the
  database (:mod:`campaigns.store.batches`), so redelivery and duplicate messages are harmless;
- **closing**: the worker that finishes the last open batch closes the run (:func:`close_if_last`);
  the enqueuer registers a *sentinel* batch (number -1) first and finishes it only after every real
  batch is registered, so the run cannot close while it is still being split;
- **supervision**: :meth:`CeleryDispatcher.send` waits (by default) and re-enqueues batches whose
  holder died, whose lease expired, or — when the run made no progress for ``stall_seconds`` — every
  open batch (a broker restarted without persistence loses its queue). ``retain send`` again with the
  same run key does the same for a run whose enqueuer is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_shutdown
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError

from campaigns.clock import reference_now
from campaigns.config import Settings, load_settings
from campaigns.dispatch.batch import BATCH_LEASE_SECONDS, WorkerRuntime, close_if_last, run_batch
from campaigns.errors import ConfigError, DatabaseError
from campaigns.factory import Recommends
from campaigns.leases import holder_is_gone, process_identity
from campaigns.runner import RunRequest, default_run_key, iter_audience
from campaigns.status import CLOSED_RUN, DeliveryStatus, RunStatus
from campaigns.store.base import utcnow
from campaigns.store.protocols import DistributedStore
from campaigns.summary import ALREADY_DONE, RunSummary, summarise_run

log = logging.getLogger(__name__)

TASK_NAME = "retain.send_batch"
DEFAULT_QUEUE = "retain"
SENTINEL = -1  # the batch number that keeps a run open while the enqueuer is still splitting it
BUSY_RETRY_SECONDS = 5
DB_RETRY_SECONDS = 1

#: Celery settings shared by the worker app and the enqueuer's producer app
CELERY_CONFIG: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_default_queue": DEFAULT_QUEUE,
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_ignore_result": True,
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    # Redis redelivers a message unacked this long (a worker that died with it); the batch lease and the
    # supervisor recover faster, so this only needs to exceed the longest batch
    "broker_transport_options": {"visibility_timeout": 3600},
}

# ---------------------------------------------------------------------------- the worker side

app = Celery("retain")
app.conf.update(CELERY_CONFIG)
_runtime: WorkerRuntime | None = None


def configure_worker(settings: Settings) -> None:
    """Use these settings in this worker (``retain worker`` calls it; ``celery -A`` loads settings itself)."""
    global _runtime
    _runtime = WorkerRuntime(settings)
    app.conf.broker_url = settings.broker_url


@app.on_configure.connect
def _configure_from_settings(sender: Celery, **_: Any) -> None:
    if _runtime is None:
        configure_worker(load_settings())
    sender.conf.broker_url = runtime().settings.broker_url


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime(load_settings())
    return _runtime


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    if _runtime is not None:
        _runtime.close()


@app.task(name=TASK_NAME, bind=True, max_retries=None)
def send_batch(
    self: Task, run_id: int, batch_no: int, campaign: str, run_key: str, now: str, sender: str | None = None
) -> str:
    """Process one batch (see :func:`campaigns.dispatch.batch.run_batch`); returns the outcome status.

    A dropped database connection retries the message after a second; a batch leased by a live worker
    is retried after BUSY_RETRY_SECONDS (it is then done, or its holder has died).
    """
    rt = runtime()
    try:
        outcome = run_batch(
            rt, run_id=run_id, batch_no=batch_no, campaign=campaign, run_key=run_key,
            now=datetime.fromisoformat(now), sender=sender,
        )  # fmt: skip
    except (DBAPIError, DatabaseError) as exc:
        # the first line of the driver's message: SQLAlchemy's own text carries every bound parameter
        detail = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
        log.warning("batch %d of run %d: database error, retrying: %s", batch_no, run_id, detail)
        rt.reset_store()
        raise self.retry(countdown=DB_RETRY_SECONDS, exc=exc) from None
    if outcome.status == "busy":
        raise self.retry(countdown=BUSY_RETRY_SECONDS)
    if outcome.closed is not None:
        log.info("run %s/%s closed: %s", campaign, run_key, outcome.closed.status)
    return outcome.status


# ---------------------------------------------------------------------------- the enqueuer side


class CeleryDispatcher:
    """Splits a run into batches, enqueues them, and (``wait=True``) supervises it to the end.

    ``queue``: the broker queue (workers consume it with ``--queues``; default: ``settings.celery_queue``). ``stall_seconds``: no batch
    finished or heartbeated for this long while some are open -> re-enqueue the open ones.
    ``timeout``: stop waiting after this many seconds (the run goes on; its summary says ``running``).
    ``requeue=False`` only waits (no re-enqueuing): recovery is then the broker's redelivery alone.
    """

    name = "celery"
    loads_model = False

    def __init__(
        self,
        *,
        queue: str | None = None,
        wait: bool = True,
        stall_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        requeue: bool = True,
    ) -> None:
        self.queue = queue
        self.requeue = requeue
        self.wait = wait
        self.stall_seconds = stall_seconds
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._producer: Celery | None = None
        self._requeued_at: dict[int, float] = {}

    def producer(self, settings: Settings) -> Celery:
        if self._producer is None or self._producer.conf.broker_url != settings.broker_url:
            self._producer = Celery("retain-enqueuer", broker=settings.broker_url, set_as_current=False)
            self._producer.conf.update(CELERY_CONFIG)
        return self._producer

    def send(
        self,
        store: DistributedStore,  # type: ignore[override]
        settings: Settings,
        request: RunRequest,
        *,
        recommender: Recommends | None = None,
    ) -> RunSummary:
        """Start or resume the run on the workers; returns its summary (when ``wait``: the final one).

        ``recommender`` is ignored (workers load the model). ``request.sender`` overrides the workers'
        sender for this run: it travels in the broker messages, so give a DSN without a password.
        ``request.checkpoint`` is called while splitting and while waiting (a scheduler shutdown stops
        waiting; the workers finish the run).
        """
        started = time.perf_counter()
        definition = request.definition
        if definition.ab_test is not None and not request.dry_run:
            raise ConfigError(
                f"campaign {definition.name} has an A/B 'test:' (test then winner), which runs on the local "
                'dispatcher only: send it with dispatcher = "local" (campaigns/abtest.py)'
            )
        now = request.now or reference_now(settings, store)
        key = request.run_key or default_run_key(now)
        run = store.start_run(
            definition.name, key, owner=None, dispatcher="celery", scheduled_for=request.scheduled_for
        )
        summary = RunSummary(definition.name, key, run.status, False)
        if run.status in CLOSED_RUN:
            return summarise_run(
                store, summary, run.id, run.status, started=started, reason=ALREADY_DONE, counted_here=False
            )
        if run.status != RunStatus.RUNNING:
            store.reopen_run(run.id)
        message: dict[str, Any] = {
            "run_id": run.id, "campaign": definition.name, "run_key": key, "now": now.isoformat()
        }  # fmt: skip
        if isinstance(request.sender, str) and request.sender:
            message["sender"] = request.sender
        planned = self._plan(store, settings, request, run.id, now, message)
        self._enqueue_open(store, settings, run.id, message, everything=True, skip=planned)
        close_if_last(store, run.id, definition.name, key)  # an empty audience closes at once
        if self.wait:
            self._supervise(store, settings, run.id, message, request)
        final = store.get_run(key, definition.name)
        return summarise_run(
            store, summary, final.id, final.status, started=started, reason=final.reason, counted_here=False
        )

    # -- splitting

    def _plan(
        self,
        store: DistributedStore,
        settings: Settings,
        request: RunRequest,
        run_id: int,
        now: datetime,
        message: dict[str, Any],
    ) -> set[int]:
        """Register the run's batches (idempotent); a resumed run whose batches are all done gets its
        leftovers (temporary failures left claimed, deferred rows now due) as new batches.

        Batches are enqueued as they are registered (50 at a time), so workers start while the rest
        of the audience is still being split; returns the numbers enqueued here."""
        enqueued: set[int] = set()
        sentinel = store.get_batch(run_id, SENTINEL)
        if sentinel is None or sentinel.status != "done":
            store.add_batches(run_id, [(SENTINEL, [])])
            pending: list[tuple[int, list[tuple[int, int | None]]]] = []
            for no, refs in enumerate(_member_refs(store, settings, request, now)):
                pending.append((no, refs))
                if len(pending) >= 50:
                    enqueued.update(self._register(store, settings, run_id, pending, message))
                    pending = []
            enqueued.update(self._register(store, settings, run_id, pending, message))
            self._finish_sentinel(store, run_id)
            return enqueued
        if store.batch_progress(run_id).open:
            return enqueued
        leftovers = store.customers_in_state(run_id, (DeliveryStatus.CLAIMED,), limit=1_000_000)
        leftovers += [
            c for c in store.due_deferred_customers(run_id, now, limit=1_000_000) if c not in leftovers
        ]
        size = settings.batch_size
        first = store.next_batch_no(run_id)
        store.add_batches(
            run_id,
            [
                (first + i // size, [(c, None) for c in leftovers[i : i + size]])
                for i in range(0, len(leftovers), size)
            ],
        )
        return enqueued

    def _register(
        self,
        store: DistributedStore,
        settings: Settings,
        run_id: int,
        batches: list[tuple[int, list[tuple[int, int | None]]]],
        message: dict[str, Any],
    ) -> list[int]:
        """Register batches and enqueue the ones this call created (a re-split after a crash adds
        nothing twice; the batches it had registered are enqueued after the split if still open)."""
        new = store.register_batches(run_id, batches)
        for no in new:
            self._enqueue(settings, message, no)
        return new

    def _enqueue(self, settings: Settings, message: dict[str, Any], batch_no: int) -> None:
        """One broker message for the batch, remembered for the requeue throttle."""
        self.producer(settings).send_task(
            TASK_NAME, kwargs={**message, "batch_no": batch_no}, queue=self.queue or settings.celery_queue
        )
        self._requeued_at[batch_no] = time.monotonic()

    @staticmethod
    def _finish_sentinel(store: DistributedStore, run_id: int) -> None:
        batch = store.get_batch(run_id, SENTINEL)
        if batch is None:  # registered by _plan before this is called
            return
        me = process_identity()
        stale = utcnow() - timedelta(seconds=BATCH_LEASE_SECONDS)
        if store.take_batch(batch.id, me, expected_owner=batch.owner, stale_before=stale):
            store.finish_batch(batch.id, me)

    # -- enqueuing and supervision

    def _enqueue_open(
        self,
        store: DistributedStore,
        settings: Settings,
        run_id: int,
        message: dict[str, Any],
        *,
        everything: bool,
        skip: set[int] | None = None,
    ) -> int:
        """Send a message for each open batch that needs one; returns how many were sent.

        ``everything``: every open batch not held by a live worker (start, resume, stall), except the
        numbers in ``skip`` (just enqueued by the split). Otherwise only batches whose holder died or
        whose lease expired: only held batches are read (a handful per poll, whatever the run's size).
        """
        stale = utcnow() - timedelta(seconds=BATCH_LEASE_SECONDS)
        sent = 0
        for b in store.open_batches(run_id, held_only=not everything):
            if b.batch_no == SENTINEL or (skip and b.batch_no in skip):
                continue
            held = b.owner is not None
            gone = b.owner is not None and (
                holder_is_gone(b.owner) or (b.heartbeat_at is not None and b.heartbeat_at < stale)
            )
            if not (gone or (everything and not held)):
                continue
            last = self._requeued_at.get(b.batch_no)
            if not everything and last is not None and time.monotonic() - last < self.stall_seconds:
                continue
            self._enqueue(settings, message, b.batch_no)
            sent += 1
        return sent

    def _supervise(
        self,
        store: DistributedStore,
        settings: Settings,
        run_id: int,
        message: dict[str, Any],
        request: RunRequest,
    ) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        campaign, key = message["campaign"], message["run_key"]
        last_seen: tuple[int, datetime | None] | None = None
        last_change = time.monotonic()
        reported = 0
        progress = request.progress
        while deadline is None or time.monotonic() < deadline:
            if request.checkpoint is not None:
                request.checkpoint()
            run = store.get_run(key, campaign)
            if run.status != RunStatus.RUNNING:
                return
            prog = store.batch_progress(run_id)
            if prog.open == 0:
                close_if_last(store, run_id, campaign, key)
                time.sleep(self.poll_seconds)
                continue
            if progress is not None and prog.done_members > reported:
                progress(prog.done_members - reported)
                reported = prog.done_members
            seen = (prog.done, prog.last_activity)
            if seen != last_seen:
                last_seen, last_change = seen, time.monotonic()
            stalled = time.monotonic() - last_change > self.stall_seconds
            if not self.requeue:
                time.sleep(self.poll_seconds)
                continue
            try:
                n = self._enqueue_open(store, settings, run_id, message, everything=stalled)
            except BrokerError as exc:
                log.warning("broker unavailable, will retry: %s", exc)
                n = 0
            if n:
                log.warning(
                    "re-enqueued %d batch(es) of run %s/%s%s",
                    n,
                    campaign,
                    key,
                    " (stalled)" if stalled else "",
                )
            if stalled:
                last_change = time.monotonic()
            time.sleep(self.poll_seconds)


def _member_refs(
    store: DistributedStore, settings: Settings, request: RunRequest, now: datetime
) -> Iterator[list[tuple[int, int | None]]]:
    for members in iter_audience(store, settings, request, now=now):
        if members:
            yield [(m.customer.id, m.order.id if m.order else None) for m in members]
