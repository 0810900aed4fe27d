"""Test then winner: one run, three phases, stored on the run (``runs.phase`` + ``runs.decision``).

::

    test     the test share of the eligible audience gets the variants (by weight); when every test
             message is out, the run is left ``deferred`` with ``decide_after = now + test.wait``
    waiting  a rerun (``retain send`` with the same --run-key) or the scheduler's retry at
             ``decide_after`` computes the test's figures (campaigns/report.py, this run only) and
             picks the winner (campaigns/winner.py); the decision is stored before anything else is sent
    winner   everyone else in the audience gets the winner; the run completes

Exactly once holds across the phases because they share one run and its ledger (one row per customer);
a crash in any phase resumes that phase. The wait is measured on the wall clock (clicks and orders happen
in real time), not on the reference clock ``as_of``. Only the local dispatcher runs the phases; a Celery
run of a campaign with ``test:`` is refused (campaigns/dispatch/celery.py) rather than sent without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.config import Settings
from campaigns.kinds import Member
from campaigns.report import ATTRIBUTION_DAYS, campaign_report
from campaigns.status import DeliveryStatus, RunStatus
from campaigns.summary import RunSummary, summarise_run
from campaigns.variants import TEST, WAITING, WINNER, default_variant
from campaigns.winner import arms_from_report, pick_winner


def wall_clock() -> datetime:
    """Now, aware UTC (tests move it)."""
    return datetime.now(UTC)


def _naive(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def drive_test_then_winner(
    store: Any,
    settings: Settings,
    request: Any,
    run: Any,
    processor: Any,
    members: Iterator[list[Member]] | None,
    now: datetime,
    drive: Callable[..., RunSummary],
) -> RunSummary:
    """Run whichever phase the run is in (see the module docstring); returns the run's summary."""
    definition = request.definition
    test = definition.ab_test
    assert test is not None and run.run_id is not None
    run_id = run.run_id
    phase, stored = store.run_phase(run_id)
    decision: dict[str, Any] = dict(stored or {})
    if phase in (None, TEST):
        store.set_run_phase(run_id, TEST, decision or None)
        processor.phase = TEST

        def close_test() -> RunSummary:
            open_rows = store.customers_in_state(
                run_id, (DeliveryStatus.CLAIMED, DeliveryStatus.SENDING), limit=1
            )
            pending, _ = store.pending_deferred(run_id)
            if open_rows or pending:  # paused or quiet hours: a rerun finishes the test phase first
                from campaigns.runner import close_run

                return close_run(store, run.summary, run_id, run.owner, run.started)
            sent_at = wall_clock()
            after = sent_at + test.wait
            decision.update(test_sent_at=_naive(sent_at), decide_after=_naive(after), metric=test.metric)
            store.set_run_phase(run_id, WAITING, decision)
            return _waiting(store, run, test.share, after)

        return drive(store, settings, request, run, processor, members, now, close_test)
    if phase == WAITING:
        after = datetime.fromisoformat(decision["decide_after"]).replace(tzinfo=UTC)
        if wall_clock() < after:
            return _waiting(store, run, test.share, after)
        days = ATTRIBUTION_DAYS
        report = campaign_report(
            store, definition.name, days=days, currency=settings.currency, run_key=run.summary.run_key
        )
        default = default_variant(definition)
        assert default is not None
        picked = (
            pick_winner(
                arms_from_report(report.variants),
                metric=test.metric,
                confidence=test.confidence,
                default=default,
            )
            if report.variants
            else None
        )
        if picked is None:
            decision.update(
                winner=default,
                decided=False,
                reason=f"no test message was sent: sending the default variant {default}",
            )
        else:
            decision.update(picked.to_json())
        decision["decided_at"] = _naive(wall_clock())
        decision["test_recipients"] = {name: v.recipients for name, v in report.variants.items()}
        store.set_run_phase(run_id, WINNER, decision)
        phase = WINNER
    processor.phase = WINNER
    processor.winner = str(decision["winner"])
    return drive(store, settings, request, run, processor, members, now)


def _waiting(store: Any, run: Any, share: float, after: datetime) -> RunSummary:
    reason = (
        f"A/B test phase sent to {share:.0%} of the audience; the winner is picked after "
        f"{_naive(after)} UTC (the scheduler retries then; or rerun the same --run-key)"
    )
    store.finish_run(run.run_id, run.owner, RunStatus.DEFERRED, reason)
    summary = summarise_run(
        store, run.summary, run.run_id, RunStatus.DEFERRED, started=run.started, reason=reason
    )
    # rounded up to the next minute, so the scheduler's retry never comes a few seconds early
    retry = (after + timedelta(minutes=1)).astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)
    summary.next_attempt_at = retry.isoformat(sep=" ", timespec="minutes")
    return summary


__all__ = ["drive_test_then_winner", "wall_clock"]
