"""The Dispatcher protocol: how a campaign run gets from its audience to the workers that send it.

Two implementations, chosen by one setting (``dispatcher``, env ``RETAIN_DISPATCHER``):

- ``local`` (:mod:`campaigns.dispatch.local`, the default): the in-process pipeline of
  :func:`campaigns.runner.run_campaign`;
- ``celery`` (:mod:`campaigns.dispatch.celery`, extra ``retain[celery]``): the audience is split into
  batches registered in the database and enqueued on the broker (``settings.broker_url``); workers
  (``retain worker``) send them through the same ledger.

Both return a :class:`campaigns.runner.RunSummary` and leave the same rows in ``runs`` and
``deliveries``, so ``retain runs`` shows either kind of run the same way::

    dispatcher = resolve_dispatcher(settings)
    summary = dispatcher.send(store, settings, definition, run_key="weekly:2024-06-03")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.errors import ConfigError
from campaigns.runner import RunSummary

#: the dispatcher names ``settings.dispatcher`` accepts
DISPATCHERS = ("local", "celery")


@runtime_checkable
class Dispatcher(Protocol):
    """Runs (or resumes) one campaign run, exactly once per run key, and summarises it."""

    name: str

    def send(
        self,
        store: Any,
        settings: Settings,
        definition: CampaignDefinition,
        *,
        recommender: Any | None = None,
        run_key: str | None = None,
        now: datetime | None = None,
        sender: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RunSummary: ...


def resolve_dispatcher(spec: str | Settings | Dispatcher) -> Dispatcher:
    """A dispatcher from its name (``local`` / ``celery``), from settings, or an object passed through.

    Raises ConfigError for an unknown name, or when the Celery extra is not installed.
    """
    if isinstance(spec, Dispatcher):
        return spec
    name = spec.dispatcher if isinstance(spec, Settings) else spec
    if name == "local":
        from campaigns.dispatch.local import LocalDispatcher

        return LocalDispatcher()
    if name == "celery":
        try:
            from campaigns.dispatch.celery import CeleryDispatcher
        except ImportError as exc:  # pragma: no cover - the extra is installed in development
            raise ConfigError(
                f"dispatcher 'celery' needs the Celery extra: pip install 'retain[celery]' ({exc})"
            ) from None
        return CeleryDispatcher()
    raise ConfigError(f"unknown dispatcher {name!r}: expected one of {', '.join(DISPATCHERS)}")


def summary_from_ledger(store: Any, run: Any, *, started: float, sender: str | None = None) -> RunSummary:
    """A run's summary read back from the ledger (what a distributed run reports to its enqueuer)."""
    counts = store.run_counts(run.id)
    summary = RunSummary(run.campaign, run.key, run.status, False, sender=sender)
    summary.sent = counts.get("sent")
    summary.holdout = counts.get("holdout")
    summary.failed = counts.get("failed")
    summary.deferred = counts.get("deferred")
    summary.audience = counts.total
    summary.skipped = {
        k: v for k, v in counts.skipped.items() if k != "quiet_hours" or counts.get("deferred")
    }
    summary.failures = dict(counts.failed)
    summary.in_flight_resolved = counts.failed.get("in_flight_at_crash", 0)
    summary.retry_later = counts.get("claimed")
    if run.status == "deferred":
        pending, first = store.pending_deferred(run.id)
        if first is not None:
            summary.next_attempt_at = first.isoformat(sep=" ", timespec="minutes")
    summary.reason = run.reason
    summary.seconds = time.perf_counter() - started
    return summary
