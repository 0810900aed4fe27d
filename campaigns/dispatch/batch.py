"""One batch of a distributed run, on a worker: lease it, render + claim + send it, close the run if last.

Broker-agnostic (the Celery task in :mod:`campaigns.dispatch.celery` is a thin wrapper), so the
protocol is testable without a broker:

1. the run must still be ``running`` (a paused or failed run stops every other batch);
2. the batch is leased with a compare-and-swap (:meth:`BatchStore.take_batch`): free, lease older
   than :data:`BATCH_LEASE_SECONDS`, or held by a holder judged gone — a dead process on this host
   (SIGKILL, OOM) or this very process (an earlier attempt of this task, e.g. after a dropped database
   connection). Otherwise the batch is ``busy`` and the caller retries later;
3. :class:`campaigns.runner.RunProcessor` does the work; the ledger's unique claims and atomic
   ``claimed -> sending`` step make a batch processed twice send nothing twice, and a row left
   ``sending`` by a killed worker is resolved at most once (``in_flight_at_crash``);
4. the batch is marked done; **the last-batch check**: when no batch of the run is open, one worker
   wins :meth:`BatchStore.claim_run_close` and closes the run with :func:`campaigns.runner.close_run`.

The pool must run one task per process at a time (``prefork`` or ``solo``): "held by this process"
means "held by an earlier attempt of mine".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, find_campaign
from campaigns.errors import NotFoundError, RenderError, SenderPausedError
from campaigns.factory import BuildOptions, EmailFactory, Recommends
from campaigns.kinds import Member, ModelUse
from campaigns.leases import holder_is_gone, process_identity
from campaigns.render import CampaignRenderer
from campaigns.runner import RunProcessor, close_run
from campaigns.senders import Sender, resolve_sender
from campaigns.status import RunStatus
from campaigns.store.base import utcnow
from campaigns.store.batches import BatchRecord
from campaigns.store.protocols import DistributedStore
from campaigns.summary import RunSummary

log = logging.getLogger(__name__)

#: a batch lease not renewed for this long may be taken over by another worker (another machine's
#: worker died); on the same host a dead holder is recognised at once by its process id
BATCH_LEASE_SECONDS = 60
#: how often a worker renews its batch lease while results come in
BATCH_HEARTBEAT_SECONDS = 2.0


@dataclass
class WorkerRuntime:
    """What a worker process keeps between batches: the store, campaign renderers, the model, senders.

    Built lazily in the process that uses it (after a prefork fork), from ``settings``.
    """

    settings: Settings
    _store: Any = None
    _definitions: dict[str, tuple[float, CampaignDefinition, CampaignRenderer]] = field(default_factory=dict)
    _model: tuple[float, Recommends] | None = None
    _senders: dict[str, Sender] = field(default_factory=dict)

    def store(self) -> DistributedStore:
        if self._store is None:
            from campaigns.store import Store

            self._store = Store.open(self.settings.resolved_database_url())
        return self._store

    def reset_store(self) -> None:
        """Drop pooled connections (after the database dropped them)."""
        if self._store is not None:
            self._store.engine.dispose()

    def campaign(self, name: str) -> tuple[CampaignDefinition, CampaignRenderer]:
        """The campaign and its compiled renderer, recompiled when the template file changes."""
        cached = self._definitions.get(name)
        if cached is not None:
            mtime = _mtime(cached[1].path)
            if mtime == cached[0]:
                return cached[1], cached[2]
        definition = find_campaign(Path(self.settings.templates_dir), name)
        renderer = CampaignRenderer(definition, self.settings)
        self._definitions[name] = (_mtime(definition.path), definition, renderer)
        return definition, renderer

    def recommender(self, definition: CampaignDefinition) -> Recommends | None:
        """The trained model when the campaign's kind uses one (reloaded when the model file changes);
        None for a kind that can do without it when there is none."""
        use = definition.kind_plugin.needs.model
        if use is ModelUse.NONE:
            return None
        from campaigns.training import load_recommender

        path = self.settings.resolved_model_path()
        mtime = max((_mtime(p) for p in path.parent.glob(path.name + "*")), default=0.0)
        if self._model is None or self._model[0] != mtime:
            try:
                self._model = (mtime, load_recommender(self.settings, self.store()))
            except NotFoundError:
                if use is ModelUse.REQUIRED:
                    raise
                return None
        return self._model[1]

    def sender(self, spec: str | None) -> Sender:
        """One sender per DSN per process: SMTP connections are reused across batches."""
        dsn = spec or self.settings.resolved_sender()
        if dsn not in self._senders:
            self._senders[dsn] = resolve_sender(dsn, self.settings)
        return self._senders[dsn]

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one delivery of a batch message.

    ``status``: done | already_done | busy (leased by a live worker: retry later) | stopped (the run
    is paused, failed or finished) | missing (no such run/batch in this database: a stale message) |
    paused | failed. ``closed`` is the run's summary when this batch closed the run.
    """

    status: str
    sent: int = 0
    in_flight_resolved: int = 0
    closed: RunSummary | None = None


class _LeasedProcessor(RunProcessor):
    """RunProcessor whose heartbeat renews the batch lease (the run itself has no single owner)."""

    batch_id: int = 0
    batches: DistributedStore | None = None

    def heartbeat(self) -> None:
        if time.monotonic() - self._last_beat > BATCH_HEARTBEAT_SECONDS and self.batches is not None:
            self.batches.batch_heartbeat(self.batch_id, self.owner)
            self._last_beat = time.monotonic()


def run_batch(
    runtime: WorkerRuntime,
    *,
    run_id: int,
    batch_no: int,
    campaign: str,
    run_key: str,
    now: datetime,
    sender: str | None = None,
) -> BatchOutcome:
    """Process one batch of a Celery run; see the module docstring for the protocol.

    Raises database errors (the caller retries the message; the lease is this process's, so the
    retry takes it back) and anything unexpected (the batch is released first).
    """
    store = runtime.store()
    leased = _lease(store, run_id, batch_no, campaign, run_key)
    if isinstance(leased, BatchOutcome):
        return leased
    batch, me = leased
    started = time.perf_counter()
    summary = RunSummary(campaign, run_key, RunStatus.RUNNING, False)
    try:
        definition, renderer = runtime.campaign(campaign)
        the_sender = runtime.sender(sender)
        summary.sender = the_sender.name
        factory = EmailFactory(
            runtime.settings, definition, catalogue=store, recommender=runtime.recommender(definition),
            options=BuildOptions(run_key=run_key, track_clicks=True), renderer=renderer,
        )  # fmt: skip
        processor = _LeasedProcessor(
            store, runtime.settings, factory,
            run_id=run_id, owner=me, now=now, sender=the_sender, report=None, summary=summary,
        )  # fmt: skip
        processor.batch_id, processor.batches = batch.id, store
        processor.process(load_members(store, batch.members))
    except (RenderError, SenderPausedError) as exc:
        return _stop_run(store, batch, me, exc, campaign, run_key)
    except BaseException:
        _release_quietly(store, batch.id, me)
        raise
    store.finish_batch(batch.id, me)
    log.info(
        "run %s/%s batch %d: %d members in %.1f s",
        campaign, run_key, batch_no, len(batch.members), time.perf_counter() - started,
    )  # fmt: skip
    return BatchOutcome(
        "done",
        sent=summary.sent,
        in_flight_resolved=summary.in_flight_resolved,
        closed=close_if_last(store, run_id, campaign, run_key),
    )


def _lease(
    store: DistributedStore, run_id: int, batch_no: int, campaign: str, run_key: str
) -> tuple[BatchRecord, str] | BatchOutcome:
    """Steps 1-2 of the protocol: the batch and this process's identity once leased, or why not."""
    try:
        run = store.get_run(run_key, campaign)
    except NotFoundError:
        return BatchOutcome("missing")
    if run.id != run_id:
        return BatchOutcome("missing")
    if run.status != RunStatus.RUNNING:
        return BatchOutcome("stopped")
    batch = store.get_batch(run_id, batch_no)
    if batch is None:
        return BatchOutcome("missing")
    if batch.status == "done":  # a batch's own status vocabulary: queued | running | done
        return BatchOutcome("already_done", closed=close_if_last(store, run_id, campaign, run_key))
    me = process_identity()
    expected = batch.owner if batch.owner and holder_is_gone(batch.owner, me) else None
    stale = utcnow() - timedelta(seconds=BATCH_LEASE_SECONDS)
    if not store.take_batch(batch.id, me, expected_owner=expected, stale_before=stale):
        return BatchOutcome("busy")
    return batch, me


def _stop_run(
    store: DistributedStore, batch: BatchRecord, me: str, exc: Exception, campaign: str, run_key: str
) -> BatchOutcome:
    """A template error fails the whole run; a sender that gave up pauses it (every batch stops)."""
    store.release_batch(batch.id, me)
    if isinstance(exc, RenderError):
        store.finish_run(batch.run_id, None, RunStatus.FAILED, str(exc))
        log.error("run %s/%s failed on batch %d: %s", campaign, run_key, batch.batch_no, exc)
        return BatchOutcome("failed")
    store.finish_run(batch.run_id, None, RunStatus.PAUSED, f"{exc} — rerun the same `retain send` to resume")
    log.warning("run %s/%s paused on batch %d: %s", campaign, run_key, batch.batch_no, exc)
    return BatchOutcome("paused")


def _release_quietly(store: DistributedStore, batch_id: int, owner: str) -> None:
    try:
        store.release_batch(batch_id, owner)
    except Exception:  # the database may be what failed; the lease is ours and the retry retakes it
        log.debug("could not release batch %d", batch_id, exc_info=True)


def load_members(store: DistributedStore, refs: list[tuple[int, int | None]]) -> list[Member]:
    """The batch's members as of now (a customer deleted since the split is left out)."""
    customers = store.customers_by_ids([c for c, _ in refs])
    order_ids = [o for _, o in refs if o is not None]
    orders = store.orders_by_ids(order_ids) if order_ids else {}  # one query per chunk, not per order
    members: list[Member] = []
    for customer_id, order_id in refs:
        customer = customers.get(customer_id)
        if customer is None:
            continue
        if order_id is None:
            members.append(Member(customer))
            continue
        order = orders.get(order_id)
        if order is not None:
            members.append(Member(customer, order))
    return members


def close_if_last(store: DistributedStore, run_id: int, campaign: str, run_key: str) -> RunSummary | None:
    """The last-batch check: close the run when no batch is open; exactly one caller does it."""
    if store.batch_progress(run_id).open:
        return None
    if not store.claim_run_close(run_id):
        return None
    summary = RunSummary(campaign, run_key, RunStatus.RUNNING, False)
    return close_run(store, summary, run_id, "closing", time.perf_counter(), counted_here=False)
