"""The scheduler finishes what it started: resume scheduled runs a dead process left open.

APScheduler moves a job to its next fire time *before* running it, so a scheduler killed mid-fire
leaves its run ``running`` under a dead owner and nothing in the job store to finish it. On start
(which is also the takeover of a dead scheduler's lock) and at every re-sync, :func:`resume_open_runs`
looks at every scheduled run (key ``sched:...``) still ``running`` or ``paused``:

- held by a live process (the pid on this host, a fresh heartbeat elsewhere): left alone;
- its fire older than the campaign's ``max_lateness``: left alone, logged (``retain send NAME
  --run-key KEY`` resumes it by hand);
- (``paused`` runs only on start: while the scheduler runs, their own retry jobs resume them; runs of the
  Celery dispatcher are left to its supervisor, which re-enqueues batches of dead workers)
- otherwise its ``sending`` rows are resolved first — every one of a provably dead process at once,
  another host's after the final-reply timeout (the sender DSN's ``final_reply_timeout``, default
  ``FINAL_REPLY_TIMEOUT``) — as ``unknown`` (reason ``in_flight_at_crash``: handed
  to the server, outcome unknown, never re-sent), then a one-off resume job (the same run key) is
  added for now, unless a retry of that fire is already waiting in the job store.

The resumed run skips every customer already final in its ledger, so each eligible customer ends
with exactly one row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from campaigns.definition import DEFAULT_MAX_LATENESS, find_campaign
from campaigns.errors import RetainError
from campaigns.leases import may_take_over, on_this_host
from campaigns.scheduling.plan import run_key
from campaigns.store.base import utcnow
from campaigns.store.ledger import LEASE_SECONDS
from campaigns.store.scheduling import OpenScheduledRun

log = logging.getLogger("campaigns.scheduling")

#: how long a message may wait for its final reply (RFC 5321 §4.5.3.2.6: 10 minutes; the SMTP sender's
#: ``final_reply_timeout`` default): a ``sending`` row older than this cannot still be in progress
FINAL_REPLY_TIMEOUT = timedelta(seconds=600)


def final_reply_timeout(sender: str) -> timedelta:
    """The sender DSN's ``final_reply_timeout=SECONDS`` (the SMTP sender's option), else the default."""
    values = parse_qs(urlsplit(sender).query).get("final_reply_timeout")
    try:
        return timedelta(seconds=float(values[-1])) if values else FINAL_REPLY_TIMEOUT
    except ValueError:
        return FINAL_REPLY_TIMEOUT


class OpenRunStore(Protocol):
    def open_scheduled_runs(self) -> list[OpenScheduledRun]: ...

    def resolve_stale_sending(self, run_id: int, older_than: datetime) -> int: ...


@dataclass
class ResumeReport:
    """What :func:`resume_open_runs` did: run keys resumed, left to a live owner, too late; rows resolved."""

    resumed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    too_late: list[str] = field(default_factory=list)
    unknown_rows: int = 0


def zone_of(key: str) -> str | None:
    """The zone of a recipient-local run key (``sched:...@Europe/Paris``), else None."""
    return key.split("@", 1)[1] if "@" in key else None


def resume_open_runs(ctx: Any, *, now: datetime | None = None, include_paused: bool = True) -> ResumeReport:
    """Resume every scheduled run a dead owner left open (see the module docstring).

    ``ctx`` is the scheduler's :class:`~campaigns.scheduling.jobs.SchedulerContext`; ``now`` aware UTC.
    ``include_paused``: also ``paused`` runs (on start; the periodic pass leaves them to their retries).
    """
    from campaigns.scheduling.jobs import schedule_resume

    store: OpenRunStore = ctx.store
    now = now or ctx.clock()
    # leases and row times are the database's wall clock; lateness is judged on the scheduler's clock
    naive_now = utcnow()
    report = ResumeReport()
    lease = timedelta(seconds=LEASE_SECONDS)
    for run in store.open_scheduled_runs():
        if run.status == "paused" and not include_paused:
            continue
        if run.dispatcher != "local":
            continue  # a distributed run has no single owner: its batches' supervisor re-enqueues them
        if run.owner and not may_take_over(run.owner, run.heartbeat_at, naive_now, lease):
            report.busy.append(run.key)
            continue
        fire = run.scheduled_for.replace(tzinfo=UTC)
        zone = zone_of(run.key)
        if run_key(fire, zone) != run.key:
            log.warning("run %s/%s: key does not match its fire time; not resumed", run.campaign, run.key)
            continue
        # the dead process held these rows' connections: their final replies can no longer arrive
        dead_here = run.owner is not None and on_this_host(run.owner)
        cutoff = naive_now if dead_here else naive_now - final_reply_timeout(ctx.settings.resolved_sender())
        resolved = store.resolve_stale_sending(run.id, cutoff + timedelta(seconds=1))
        report.unknown_rows += resolved
        lateness = _max_lateness(ctx, run.campaign)
        if now - fire > lateness:
            report.too_late.append(run.key)
            log.warning(
                "run %s/%s (due %s) was left %s by %s, beyond max_lateness: not resumed; "
                "`retain send %s --run-key %s` resumes it",
                run.campaign, run.key, fire.isoformat(), run.status, run.owner or "a stopped process",
                run.campaign, run.key,
            )  # fmt: skip
            continue
        if schedule_resume(ctx, run.campaign, zone, fire, at=now):
            report.resumed.append(run.key)
            log.warning(
                "run %s/%s was left %s by %s (%d in-flight rows marked unknown): resuming it now",
                run.campaign, run.key, run.status, run.owner or "a stopped process", resolved,
            )  # fmt: skip
    return report


def _max_lateness(ctx: Any, campaign: str) -> timedelta:
    try:
        definition = find_campaign(Path(ctx.settings.templates_dir), campaign)
    except RetainError:
        return DEFAULT_MAX_LATENESS
    return definition.schedule.max_lateness if definition.schedule else DEFAULT_MAX_LATENESS


__all__ = ["FINAL_REPLY_TIMEOUT", "ResumeReport", "final_reply_timeout", "resume_open_runs", "zone_of"]
