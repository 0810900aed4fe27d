"""A run's summary: what one ``retain send`` (or scheduled fire) did, read back from the ledger.

Every dispatcher returns a :class:`RunSummary`; :func:`summarise_run` is the one place that turns a
run's ledger rows into one, whichever process did the sending (this one, or Celery workers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from campaigns.status import DeliveryStatus, RunStatus
from campaigns.store.protocols import Ledger

#: the summary's reason when a rerun finds its key already done
ALREADY_DONE = "this run key already completed; nothing was sent again"


@dataclass
class RunSummary:
    campaign: str
    run_key: str
    status: RunStatus
    dry_run: bool
    sent: int = 0
    would_send: int = 0
    holdout: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    unknown_reasons: dict[str, int] = field(default_factory=dict)
    unknown: int = 0  # handed to the transport, no final reply: may have arrived, never re-sent
    in_flight_resolved: int = 0
    resent_unknown: int = 0  # unknown rows an --at-least-once run sent again
    retry_later: int = 0  # temporary failures left claimed for the next run of this key
    audience: int = 0
    seconds: float = 0.0
    sender: str | None = None
    report_path: str | None = None
    reason: str | None = None
    next_attempt_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "campaign": self.campaign,
            "run_key": self.run_key,
            "status": str(self.status),
            "dry_run": self.dry_run,
            "holdout": self.holdout,
            "failed": self.failed,
            "deferred": self.deferred,
            "skipped": dict(sorted(self.skipped.items())),
            "failures": dict(sorted(self.failures.items())),
            "unknown": self.unknown,
            "unknown_reasons": dict(sorted(self.unknown_reasons.items())),
            "in_flight_resolved": self.in_flight_resolved,
            "resent_unknown": self.resent_unknown,
            "retry_later": self.retry_later,
            "audience": self.audience,
            "seconds": round(self.seconds, 2),
        }
        data["would_send" if self.dry_run else "sent"] = self.would_send if self.dry_run else self.sent
        for key in ("sender", "report_path", "reason", "next_attempt_at"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


def summarise_run(
    store: Ledger,
    summary: RunSummary,
    run_id: int,
    status: RunStatus,
    *,
    started: float,
    reason: str | None = None,
    counted_here: bool = True,
) -> RunSummary:
    """Fill ``summary`` from the run's ledger rows: counts by status, skip and failure reasons.

    ``counted_here``: this process processed the audience and counted its size, the in-flight rows it
    resolved and the messages left for a retry; otherwise (a distributed run's enqueuer) those come
    from the ledger too. ``reason`` (when given) replaces the summary's; quiet-hours skips are only
    listed while deferred rows remain.
    """
    counts = store.run_counts(run_id)
    summary.status = status
    summary.sent = counts.get(DeliveryStatus.SENT)
    summary.holdout = counts.get(DeliveryStatus.HOLDOUT)
    summary.failed = counts.get(DeliveryStatus.FAILED)
    summary.deferred = counts.get(DeliveryStatus.DEFERRED)
    summary.skipped = {
        k: v for k, v in counts.skipped.items() if k != "quiet_hours" or counts.get(DeliveryStatus.DEFERRED)
    }
    summary.failures = dict(counts.failed)
    summary.unknown = counts.get(DeliveryStatus.UNKNOWN)
    summary.unknown_reasons = dict(counts.unknown)
    if not counted_here:
        summary.audience = counts.total
        summary.in_flight_resolved = counts.unknown.get("in_flight_at_crash", 0)
        summary.retry_later = counts.get(DeliveryStatus.CLAIMED)
    if reason is not None:
        summary.reason = reason
    if summary.deferred and summary.next_attempt_at is None:
        _, first = store.pending_deferred(run_id)
        if first is not None:
            summary.next_attempt_at = first.isoformat(sep=" ", timespec="minutes")
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["ALREADY_DONE", "RunSummary", "summarise_run"]
