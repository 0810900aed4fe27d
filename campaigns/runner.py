"""The one pipeline: audience -> recommend -> render -> claim -> send -> record.

:func:`run_campaign` takes a campaign to delivered messages for every eligible customer, exactly once per
run key. It is what the local dispatcher runs; a Celery worker runs the same :class:`RunProcessor` on
its batch. The steps, each a named method below:

1. **audience** (:func:`iter_audience`): the kind's own audience (post-purchase: due orders) or the
   campaign's segment, streamed in batches of ``settings.batch_size``;
2. **open rows** (:meth:`RunProcessor._open_rows`): a resumed run skips customers already final; a row
   found ``sending`` was in flight when a process died: resolved **at most once** (``unknown``,
   ``in_flight_at_crash``), never re-sent (docs/sending.md) — unless the run is ``at_least_once``,
   which re-opens its ``unknown`` rows;
3. **judge** (:func:`campaigns.eligibility.judge_batch`): consent, suppression, frequency cap, quiet hours,
   address, holdout;
4. **build** (:class:`campaigns.factory.EmailFactory`): recommend -> context -> render -> wire message;
5. **ledger rows** (:meth:`RunProcessor._ledger_rows`): one row per customer per run (skipped + reason,
   holdout, deferred, or to send);
6. **send** (:meth:`RunProcessor._send_fresh` / :meth:`RunProcessor._send_resumed`): a row to send is
   claimed per send window directly as ``sending`` (with its frequency-cap slot, atomically), just before
   the sender sees it; the suppression list is read again for each window right before it is handed over,
   and while it is sent (unstarted messages of newly suppressed addresses are withdrawn);
   each result is recorded as it arrives (:meth:`RunProcessor._on_result`);
7. **close** (:func:`close_run`): completed, deferred (quiet hours) or paused (temporary failures).

A template error stops the run before anything else is sent; a sender that keeps failing pauses the run
(resumable) instead of burning the list. Post-purchase follow-ups carry their order: one per order per
campaign, guaranteed by the ledger's unique (campaign, order) constraint.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from campaigns import csvsafe
from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.eligibility import DEFERRED, ELIGIBLE, HOLDOUT, SKIPPED, Verdict, judge_batch
from campaigns.errors import LeaseLostError, RenderError, SenderPausedError
from campaigns.factory import BuildOptions, EmailFactory, Prepared, Recommends, Skip
from campaigns.kinds import AudienceRequest, Member
from campaigns.leases import LeaseKeeper, new_owner
from campaigns.segments import iter_segment, load_segments, resolve_segment
from campaigns.senders import resolve_sender
from campaigns.senders.base import OutgoingMessage, Sender, SendResult, SendStatus
from campaigns.status import CLOSED_RUN, OPEN_DELIVERY, DeliveryStatus, RunStatus
from campaigns.store.faults import retry_transient
from campaigns.store.ledger import CapRule, DeliveryOutcome, DeliveryState, LedgerRow
from campaigns.store.protocols import AudienceStore, PipelineStore
from campaigns.summary import ALREADY_DONE, RunSummary, summarise_run
from campaigns.variants import with_variants

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20
#: how often a run's lease is renewed on its own thread (the lease itself lasts ledger.LEASE_SECONDS)
LEASE_HEARTBEAT_SECONDS = 10.0
#: results are written in groups of at most this many, or this often: a crash can leave at most a
#: group's worth of already-sent rows in ``sending`` (resolved at most once, see the module docstring)
RESULT_FLUSH = 64
RESULT_FLUSH_SECONDS = 0.05
#: send outcomes that put the recipient's address on the suppression list, with the list's reason
SUPPRESSING = {SendStatus.HARD_BOUNCE: "hard_bounce", SendStatus.COMPLAINT: "complaint"}
#: the reason of a row whose address was suppressed after it was judged, before it was handed over
SUPPRESSED_BEFORE_SEND = "suppressed_before_send"
#: while a window is being sent, the suppression list is read again at most this often (as results
#: arrive), and messages no worker has started yet are taken back from a sender that supports it
SUPPRESSION_RECHECK_SECONDS = 0.2

Progress = Callable[[int], None]
#: called between audience batches; raises to stop the run (it stays resumable under the same key)
Checkpoint = Callable[[], None]


@dataclass(frozen=True)
class RunRequest:
    """One run of one campaign, as any dispatcher receives it.

    ``zone`` restricts a recipient-local scheduled fire to the customers of that time zone;
    ``checkpoint`` is called between batches (the scheduler's shutdown check).
    """

    definition: CampaignDefinition
    run_key: str | None = None
    now: datetime | None = None
    sender: str | Sender | None = None
    dry_run: bool = False
    report_path: Path | None = None
    scheduled_for: datetime | None = None
    zone: str | None = None
    segments_file: Path | None = None
    progress: Progress | None = None
    checkpoint: Checkpoint | None = None
    #: re-send this run's ``unknown`` rows (may deliver twice; the operator's explicit choice)
    at_least_once: bool = False


def default_run_key(now: datetime) -> str:
    """Manual sends without --run-key: one run per campaign per (reference) day."""
    return f"manual:{now:%Y-%m-%d}"


# ---------------------------------------------------------------------------- audiences


def iter_members(
    store: AudienceStore,
    settings: Settings,
    definition: CampaignDefinition,
    *,
    now: datetime,
    segments_file: Path | None = None,
) -> Iterator[list[Member]]:
    """The campaign's audience in batches: the kind's own audience, or its segment's members."""
    request = AudienceRequest(store, settings, definition, now, segments_file)
    own = definition.kind_plugin.audience(request)
    if own is not None:
        yield from own
        return
    segments = load_segments(segments_file or Path(settings.segments_file))
    segment = resolve_segment(definition.segment_rules or definition.segment, segments)
    for batch in iter_segment(store, segment, now=now, batch_size=settings.batch_size):
        yield [Member(c) for c in batch]


def iter_audience(
    store: AudienceStore, settings: Settings, request: RunRequest, *, now: datetime
) -> Iterator[list[Member]]:
    """:func:`iter_members` restricted to ``request.zone``, with ``request.checkpoint`` between batches."""
    from campaigns.lifecycle.sendtime import preferred_hour_filter
    from campaigns.scheduling.zones import effective_zone

    shop_zone = settings.shop_timezone
    hour_filter = preferred_hour_filter(store, request.definition, request.zone, request.scheduled_for)
    batches = iter_members(store, settings, request.definition, now=now, segments_file=request.segments_file)
    for batch in batches:
        if request.checkpoint is not None:
            request.checkpoint()
        if request.zone is not None:
            batch = [m for m in batch if effective_zone(m.customer.timezone, shop_zone) == request.zone]
        if batch and hour_filter is not None:
            batch = hour_filter(batch)
        if batch:
            yield batch


# ---------------------------------------------------------------------------- the run


class RunProcessor:
    """Processes audience batches for one run: the steps of the module docstring, one method each.

    The ledger is the truth; this only counts and coordinates. The local dispatcher drives one
    processor over the whole audience; a Celery worker builds one per batch and calls :meth:`process`,
    then the run is closed by :func:`close_run`.
    """

    def __init__(
        self,
        store: PipelineStore,
        settings: Settings,
        factory: EmailFactory,
        *,
        run_id: int | None,
        owner: str,
        now: datetime,
        sender: Sender | None,
        report: Any | None,
        summary: RunSummary,
        at_least_once: bool = False,
    ) -> None:
        self.store, self.settings, self.factory = store, settings, factory
        self.at_least_once = at_least_once
        self.definition = factory.definition
        self.run_id, self.owner, self.now = run_id, owner, now
        self.sender, self.report, self.summary = sender, report, summary
        share = self.definition.holdout
        self.holdout_share = share if share is not None else settings.holdout_share
        self._last_beat = time.monotonic()
        self._last_flush = time.monotonic()
        self._pending: list[DeliveryOutcome] = []
        self._bounces: list[tuple[str, int, str, str]] = []
        #: A/B test then winner (campaigns/abtest.py): "test" sends only the test share, "winner" sends
        #: ``winner`` to everyone outside it; None: every recipient gets their assigned variant
        self.phase: str | None = None
        self.winner: str | None = None
        #: the run's lease, renewed on its own thread; once lost, nothing more is recorded
        self.lease: LeaseKeeper | None = None

    def check_lease(self) -> None:
        """Raise LeaseLostError when another process took this run over (nothing is recorded after)."""
        if self.lease is not None:
            self.lease.check()

    def process(self, members: list[Member]) -> None:
        """One audience batch, start to finish (rows recorded, messages handed to the sender)."""
        if not members:
            return
        self.check_lease()
        self.summary.audience += len(members)
        states = self._open_rows(members)
        todo = [m for m in members if _needs_work(states.get(m.customer.id))]
        if self.definition.variants:
            todo = with_variants(self.definition, todo, self.phase, self.winner)
        if not todo:
            return
        verdicts = self._judge(todo)
        by_id = {m.customer.id: m for m in todo}
        eligible = [by_id[v.customer.id] for v in verdicts if v.status == ELIGIBLE]
        if self.definition.coupons is not None and not self.summary.dry_run and eligible:
            # assigned (or re-read on a resume) before any email is built; an exhausted pool pauses here
            codes = self.store.assign_coupons(  # type: ignore[attr-defined]
                self.definition.name,
                self.summary.run_key,
                [(m.customer.id, m.variant) for m in eligible],
                self.definition.coupons,
            )
            eligible = [replace(m, coupon=codes.get(m.customer.id)) for m in eligible]
        outcome = {item.member.customer.id: item for item in self.factory.prepare(eligible)}
        fresh, updates = self._ledger_rows(verdicts, by_id, outcome, states)
        if self.summary.dry_run:
            self._count_dry([row for row, _ in fresh] + updates)
            return
        self._record_and_send(fresh, updates, outcome)

    # -- steps

    def _open_rows(self, members: Sequence[Member]) -> dict[int, DeliveryState]:
        """Existing ledger rows of these customers; rows left ``sending`` by a crash are resolved."""
        if self.run_id is None:
            return {}
        states = self.store.delivery_states(self.run_id, [m.customer.id for m in members])
        if not self.summary.dry_run:
            in_flight = [s.id for s in states.values() if s.status == DeliveryStatus.SENDING]
            if in_flight:
                self.summary.in_flight_resolved += self.store.resolve_in_flight(in_flight)
            if self.at_least_once:
                unknown = [s.id for s in states.values() if s.status == DeliveryStatus.UNKNOWN]
                reopened = set(self.store.reopen_unknown(unknown)) if unknown else set()
                self.summary.resent_unknown += len(reopened)
                for cid, st in list(states.items()):
                    if st.id in reopened:
                        states[cid] = DeliveryState(st.id, cid, DeliveryStatus.CLAIMED, None, st.attempts)
        return states

    def _cap(self) -> CapRule | None:
        """The frequency cap the claim enforces (marketing mail with a cap only)."""
        cap = self.settings.frequency_cap if self.definition.marketing else 0
        if cap <= 0:
            return None
        return CapRule(cap, self.now - timedelta(days=self.settings.frequency_window_days))

    def _judge(self, members: Sequence[Member]) -> list[Verdict]:
        return judge_batch(
            self.store,
            self.settings,
            [m.customer for m in members],
            campaign=self.definition.name,
            now=self.now,
            holdout_share=self.holdout_share,
            marketing=self.definition.marketing,
            run_id=self.run_id,
        )

    def _ledger_rows(
        self,
        verdicts: Sequence[Verdict],
        members: dict[int, Member],
        outcome: dict[int, Prepared | Skip],
        states: dict[int, DeliveryState],
    ) -> tuple[list[tuple[LedgerRow, Prepared | Skip | None]], list[LedgerRow]]:
        """One row per judged customer: new rows (with what was built for them) and updates of
        existing rows (a resumed run's claimed or deferred rows, by delivery id)."""
        fresh: list[tuple[LedgerRow, Prepared | Skip | None]] = []
        updates: list[LedgerRow] = []
        for v in verdicts:
            m = members[v.customer.id]
            item = outcome.get(v.customer.id)
            row = LedgerRow(
                customer_id=v.customer.id,
                status=_VERDICT_ROWS[v.status],
                email=v.customer.email,
                order_id=m.order.id if m.order else None,
                is_marketing=self.definition.marketing,
                reason=v.reason,
            )
            if v.status == ELIGIBLE:
                row.variant = m.variant
                if isinstance(item, Skip):
                    row.status, row.reason = DeliveryStatus.SKIPPED, item.reason
                else:
                    assert item is not None
                    row.status, row.subject = DeliveryStatus.CLAIMED, item.rendered.subject
            elif v.status == DEFERRED:
                row.reason, row.not_before = v.reason or "quiet_hours", v.defer_until
            self._report(row, item)
            state = states.get(v.customer.id)
            if state is None:
                fresh.append((row, item))
            else:
                row.id = state.id
                updates.append(row)
        return fresh, updates

    def _record_and_send(
        self,
        fresh: Sequence[tuple[LedgerRow, Prepared | Skip | None]],
        updates: Sequence[LedgerRow],
        outcome: dict[int, Prepared | Skip],
    ) -> None:
        """Write the rows that send nothing now; send the rest (fresh rows are claimed per window)."""
        assert self.run_id is not None
        final = [row for row, _ in fresh if row.status != DeliveryStatus.CLAIMED]
        self.store.record_deliveries(self.run_id, self.definition.name, final)
        self.store.update_claims(updates)
        resumed: dict[int, Prepared] = {}
        for row in updates:
            item = outcome.get(row.customer_id)
            if row.status == DeliveryStatus.CLAIMED and isinstance(item, Prepared) and row.id is not None:
                resumed[row.id] = item
        to_claim = [
            (row, item)
            for row, item in fresh
            if row.status == DeliveryStatus.CLAIMED and isinstance(item, Prepared)
        ]
        if not resumed and not to_claim:
            return
        self._send_resumed(resumed)
        self._send_fresh(to_claim)

    def _window(self) -> int:
        return max(self.settings.send_concurrency * 2, 64)

    def _send_resumed(self, resumed: dict[int, Prepared]) -> None:
        """Existing ``claimed`` rows of a resumed run: moved to ``sending`` window by window by an atomic
        conditional update (only the rows this process moved are its to send; the frequency cap is
        counted again in the same transaction)."""
        ids = list(resumed)
        window = self._window()
        for start in range(0, len(ids), window):
            owned = self.store.begin_sending(ids[start : start + window], cap=self._cap())
            self._send_window(owned, resumed)

    def _send_fresh(self, to_claim: Sequence[tuple[LedgerRow, Prepared]]) -> None:
        """New rows: claimed and moved to ``sending`` by one INSERT per window (only the rows that INSERT
        created are this process's to send), so a crash leaves at most one window in flight. The
        frequency cap is counted in the INSERT's transaction (a customer at the cap gets ``skipped``)."""
        assert self.sender is not None and self.run_id is not None
        window = self._window()
        for start in range(0, len(to_claim), window):
            part = to_claim[start : start + window]
            rows: list[LedgerRow] = []
            for row, _p in part:
                row.status = DeliveryStatus.SENDING
                row.sender = self.sender.name
                rows.append(row)
            self.check_lease()
            got = self.store.record_deliveries(self.run_id, self.definition.name, rows, cap=self._cap())
            mine: dict[int, Prepared] = {}
            for row, p in part:
                did = got.get(row.customer_id)
                if did is not None and row.status == DeliveryStatus.SENDING:
                    mine[did] = p
            self._send_window(list(mine), mine)

    def _send_window(self, owned: list[int], items: dict[int, Prepared]) -> None:
        """Hand the ``sending`` rows ``owned`` by this process to the sender; results are recorded as
        they arrive. The suppression list is read for this window right before it is handed over (an
        unsubscribe recorded since the batch was judged stops the message): those rows become
        ``skipped`` / ``suppressed_before_send``."""
        assert self.sender is not None
        if not owned:
            return
        emails = {_address(items[did]) for did in owned}
        suppressed = self.store.suppressed_emails(emails)
        messages: list[OutgoingMessage] = []
        stopped: list[DeliveryOutcome] = []
        for did in owned:
            p = items[did]
            if _address(p) in suppressed:
                stopped.append(DeliveryOutcome(did, DeliveryStatus.SKIPPED, SUPPRESSED_BEFORE_SEND))
                continue
            email = p.email
            assert email is not None
            messages.append(
                OutgoingMessage(str(did), email.mail_from, email.rcpt_to, email.data, email.message_id)
            )
        if stopped:
            self.store.record_results(stopped, sender=self.sender.name)
        if not messages:
            return
        recorded: set[int] = set()
        watch = _SuppressionWatch(self.store, self.sender, messages)
        on_result = functools.partial(self._on_result, items, recorded, watch)
        try:
            self.sender.send_batch(messages, on_result)
            self.flush_results()
        except SenderPausedError:
            self.flush_results()
            self._record_withdrawn(watch, recorded)
            self.check_lease()
            released = self.store.release_unsent(
                d for d in owned if d not in recorded and str(d) not in watch.withdrawn
            )
            log.warning("sender paused; %d claimed messages left for the resume", released)
            raise
        self._record_withdrawn(watch, recorded)

    def _record_withdrawn(self, watch: _SuppressionWatch, recorded: set[int]) -> None:
        """Rows the sender gave back unsent because their address was suppressed meanwhile."""
        assert self.sender is not None
        gone = [int(k) for k in watch.withdrawn if int(k) not in recorded]
        if gone:
            self.store.record_results(
                [DeliveryOutcome(d, DeliveryStatus.SKIPPED, SUPPRESSED_BEFORE_SEND) for d in gone],
                sender=self.sender.name,
            )

    def _on_result(
        self, items: dict[int, Prepared], recorded: set[int], watch: _SuppressionWatch, res: SendResult
    ) -> None:
        """Buffer one message's outcome; results are written in small groups (see ``RESULT_FLUSH``)."""
        did = int(res.key)
        recorded.add(did)
        watch.poll(res.key)
        prepared = items[did]
        if res.ok:
            message_id = prepared.email.message_id if prepared.email else None
            outcome = DeliveryOutcome(did, DeliveryStatus.SENT, message_id=message_id, attempts=res.attempts)
        elif not res.final:
            self.summary.retry_later += 1
            outcome = DeliveryOutcome(
                did, DeliveryStatus.CLAIMED, _failure_reason(res), attempts=res.attempts
            )
        elif res.status is SendStatus.UNKNOWN:  # may have been delivered: recorded, never re-sent
            outcome = DeliveryOutcome(
                did, DeliveryStatus.UNKNOWN, _failure_reason(res), attempts=res.attempts
            )
        else:
            outcome = DeliveryOutcome(did, DeliveryStatus.FAILED, _failure_reason(res), attempts=res.attempts)
        self._pending.append(outcome)
        customer = prepared.member.customer
        why = SUPPRESSING.get(res.status)
        if why is not None and customer.email:
            self._bounces.append((customer.email, customer.id, why, res.detail[:500]))
        if len(self._pending) >= RESULT_FLUSH or time.monotonic() - self._last_flush > RESULT_FLUSH_SECONDS:
            self.flush_results()

    def flush_results(self) -> None:
        """Write buffered outcomes (one transaction) and suppress hard-bounced or complaining addresses."""
        assert self.sender is not None
        self.check_lease()
        if self._pending:
            pending, name = self._pending, self.sender.name
            # these messages left already: a locked database must not turn them into "unknown"
            retry_transient(lambda: self.store.record_results(pending, sender=name), what="recording results")
            self._pending = []
        for email, customer_id, why, detail in self._bounces:
            self.store.suppress(
                email, why, customer_id=customer_id, campaign=self.definition.name, detail=detail
            )
        self._bounces = []
        self._last_flush = time.monotonic()
        self.heartbeat()

    def heartbeat(self) -> None:
        """Renew this process's lease on the run (a Celery worker renews its batch lease instead)."""
        if time.monotonic() - self._last_beat > HEARTBEAT_SECONDS and self.run_id is not None:
            self.store.heartbeat(self.run_id, self.owner)
            self._last_beat = time.monotonic()

    # -- counting and reports

    def _count_dry(self, rows: Sequence[LedgerRow]) -> None:
        s = self.summary
        for row in rows:
            if row.status == DeliveryStatus.CLAIMED:
                s.would_send += 1
            elif row.status == DeliveryStatus.HOLDOUT:
                s.holdout += 1
            elif row.status in (DeliveryStatus.DEFERRED, DeliveryStatus.SKIPPED):
                if row.status == DeliveryStatus.DEFERRED:
                    s.deferred += 1
                key = row.reason or ("quiet_hours" if row.status == DeliveryStatus.DEFERRED else "skipped")
                s.skipped[key] = s.skipped.get(key, 0) + 1

    def _report(self, row: LedgerRow, item: Prepared | Skip | None) -> None:
        if self.report is None:
            return
        prepared = item if isinstance(item, Prepared) else None
        self.report.writerow(
            [
                row.customer_id,
                row.email or "",
                "would_send" if row.status == DeliveryStatus.CLAIMED else str(row.status),
                row.reason or "",
                prepared.rendered.subject if prepared else "",
                " | ".join(prepared.top_products) if prepared else "",
            ]
        )


class _SuppressionWatch:
    """While a window is being sent: reads the suppression list for the window's addresses not yet
    done at its first result, then at most every ``SUPPRESSION_RECHECK_SECONDS`` (driven by arriving
    results), and withdraws
    newly suppressed messages from a sender that can take them back (``withdraw``; the policy-based
    senders can). Memory, outbox and console senders hand a window over at once: nothing to take back."""

    def __init__(self, store: PipelineStore, sender: Sender, messages: Sequence[OutgoingMessage]) -> None:
        self.store = store
        self.withdraw: Callable[[Sequence[str]], None] | None = getattr(sender, "withdraw", None)
        self.pending = {m.key: m.rcpt_to.strip().lower() for m in messages}
        self.withdrawn: set[str] = set()
        self.last = float("-inf")  # the first result of the window looks at once

    def poll(self, done_key: str) -> None:
        self.pending.pop(done_key, None)
        if self.withdraw is None or not self.pending:
            return
        if time.monotonic() - self.last < SUPPRESSION_RECHECK_SECONDS:
            return
        self.last = time.monotonic()
        suppressed = self.store.suppressed_emails(set(self.pending.values()))
        keys = [k for k, email in self.pending.items() if email in suppressed]
        if keys:
            self.withdraw(keys)
            self.withdrawn.update(keys)
            for k in keys:
                del self.pending[k]


#: the ledger row a verdict starts as (an eligible customer's row becomes claimed or skipped)
_VERDICT_ROWS = {
    ELIGIBLE: DeliveryStatus.CLAIMED,
    HOLDOUT: DeliveryStatus.HOLDOUT,
    SKIPPED: DeliveryStatus.SKIPPED,
    DEFERRED: DeliveryStatus.DEFERRED,
}


def _needs_work(state: DeliveryState | None) -> bool:
    return state is None or state.status in OPEN_DELIVERY


def _address(p: Prepared) -> str:
    return (p.member.customer.email or "").strip().lower()


def _failure_reason(res: SendResult) -> str:
    code = res.code or str(res.status)
    detail = " ".join((res.detail or "").split())[:120]
    return f"{code}: {detail}" if detail else code


# ---------------------------------------------------------------------------- running one campaign


@dataclass
class _Run:
    """The parts of one run of :func:`run_campaign` that must be released at the end."""

    summary: RunSummary
    owner: str
    started: float
    run_id: int | None = None
    sender: Sender | None = None
    own_sender: bool = False
    report_file: IO[str] | None = None
    writer: Any | None = field(default=None, repr=False)
    lease: LeaseKeeper | None = None

    def close(self) -> None:
        if self.lease is not None:
            self.lease.stop()
        if self.report_file is not None:
            self.report_file.close()
        if self.own_sender and self.sender is not None:
            self.sender.close()


def run_campaign(
    store: PipelineStore,
    settings: Settings,
    definition: CampaignDefinition,
    *,
    recommender: Recommends | None = None,
    run_key: str | None = None,
    now: datetime | None = None,
    sender: str | Sender | None = None,
    dry_run: bool = False,
    report_path: Path | None = None,
    scheduled_for: datetime | None = None,
    segments_file: Path | None = None,
    members: Iterator[list[Member]] | None = None,
    progress: Progress | None = None,
    at_least_once: bool = False,
) -> RunSummary:
    """Run (or resume) one campaign in this process; see the module docstring. Returns its summary.

    ``now`` defaults to the reference clock (settings.as_of). ``sender`` is a Sender or a DSN/alias
    (default: settings.resolved_sender()). ``members`` replaces the campaign's audience. Raises
    RenderError (run marked failed), RunBusyError, NotFoundError for an unknown segment; returns status
    "paused" when the sender gave up. ``at_least_once`` re-sends this run's ``unknown`` rows.
    """
    request = RunRequest(
        definition, run_key=run_key, now=now, sender=sender, dry_run=dry_run, report_path=report_path,
        scheduled_for=scheduled_for, segments_file=segments_file, progress=progress,
        at_least_once=at_least_once,
    )  # fmt: skip
    return execute_run(store, settings, request, recommender=recommender, members=members)


def execute_run(
    store: PipelineStore,
    settings: Settings,
    request: RunRequest,
    *,
    recommender: Recommends | None = None,
    members: Iterator[list[Member]] | None = None,
) -> RunSummary:
    """:func:`run_campaign` for a :class:`RunRequest` (what the local dispatcher calls)."""
    definition = request.definition
    now = request.now or reference_now(settings, store)
    key = request.run_key or default_run_key(now)
    status = RunStatus.DRY_RUN if request.dry_run else RunStatus.RUNNING
    run = _Run(RunSummary(definition.name, key, status, request.dry_run), new_owner(), time.perf_counter())
    if not request.dry_run:
        record = store.start_run(definition.name, key, owner=run.owner, scheduled_for=request.scheduled_for)
        run.run_id = record.id
        if (
            request.at_least_once
            and record.status == RunStatus.COMPLETED
            and store.run_counts(record.id).get(DeliveryStatus.UNKNOWN)
        ):
            # the operator chose to re-send the completed run's unknown rows: reopen it for this pass
            store.finish_run(record.id, None, RunStatus.PAUSED, "reopened --at-least-once")
            record = store.start_run(
                definition.name, key, owner=run.owner, scheduled_for=request.scheduled_for
            )
        if record.status in CLOSED_RUN:
            return summarise_run(
                store, run.summary, record.id, record.status, started=run.started, reason=ALREADY_DONE
            )
    try:
        _open_sender_and_report(run, settings, request)
        factory = EmailFactory(
            settings, definition, catalogue=store, recommender=recommender,
            options=BuildOptions(run_key=key, messages=not request.dry_run, track_clicks=True),
        )  # fmt: skip
        processor = RunProcessor(
            store, settings, factory, run_id=run.run_id, owner=run.owner, now=now,
            sender=run.sender, report=run.writer, summary=run.summary,
            at_least_once=request.at_least_once,
        )  # fmt: skip
        if run.run_id is not None:
            run_id, owner = run.run_id, run.owner
            run.lease = processor.lease = LeaseKeeper(
                lambda: store.heartbeat(run_id, owner),
                LEASE_HEARTBEAT_SECONDS,
                what=f"run {key}",
                owner=owner,
            ).start()
        if definition.ab_test is not None and not request.dry_run:
            from campaigns.abtest import drive_test_then_winner

            return drive_test_then_winner(store, settings, request, run, processor, members, now, _drive)
        return _drive(store, settings, request, run, processor, members, now)
    finally:
        run.close()


def _open_sender_and_report(run: _Run, settings: Settings, request: RunRequest) -> None:
    if not request.dry_run:
        spec = request.sender
        run.own_sender = spec is None or isinstance(spec, str)
        run.sender = resolve_sender(spec or settings.resolved_sender(), settings) if run.own_sender else spec  # type: ignore[assignment]
        assert run.sender is not None
        run.summary.sender = run.sender.name
    if request.report_path is not None:
        request.report_path.parent.mkdir(parents=True, exist_ok=True)
        run.report_file = open(request.report_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        run.writer = csvsafe.writer(run.report_file)  # formula cells neutralised (campaigns/csvsafe.py)
        run.writer.writerow(["customer_id", "email", "status", "reason", "subject", "top_products"])
        run.summary.report_path = str(request.report_path)


def _drive(
    store: PipelineStore,
    settings: Settings,
    request: RunRequest,
    run: _Run,
    processor: RunProcessor,
    members: Iterator[list[Member]] | None,
    now: datetime,
    close: Callable[[], RunSummary] | None = None,
) -> RunSummary:
    """Feed the audience through the processor; record how the run ended (``close``: instead of
    :func:`close_run`, e.g. the end of an A/B test phase)."""
    batches = members if members is not None else iter_audience(store, settings, request, now=now)
    try:
        for batch in batches:
            processor.process(batch)
            if request.progress:
                request.progress(len(batch))
        if run.run_id is not None:
            process_leftovers(store, processor, run.run_id, now)
            processor.check_lease()
    except LeaseLostError:
        log.error(
            "run %s: lease lost to another process; stopped without recording more", run.summary.run_key
        )
        raise
    except RenderError as exc:
        if run.run_id is not None:
            store.finish_run(run.run_id, run.owner, RunStatus.FAILED, str(exc))
        raise
    except SenderPausedError as exc:
        assert run.run_id is not None
        processor.check_lease()
        store.finish_run(run.run_id, run.owner, RunStatus.PAUSED, str(exc))
        reason = f"{exc} — rerun the same command to resume"
        return summarise_run(
            store, run.summary, run.run_id, RunStatus.PAUSED, started=run.started, reason=reason
        )
    except BaseException:
        if run.run_id is not None:
            store.finish_run(run.run_id, run.owner, RunStatus.FAILED, "interrupted; rerun to resume")
        raise
    if run.run_id is None:
        run.summary.seconds = time.perf_counter() - run.started
        return run.summary
    if close is not None:
        return close()
    return close_run(store, run.summary, run.run_id, run.owner, run.started)


def close_run(
    store: PipelineStore,
    summary: RunSummary,
    run_id: int,
    owner: str | None,
    started: float,
    *,
    counted_here: bool = True,
) -> RunSummary:
    """Decide the run's status from its ledger (completed / deferred / paused), release it, summarise."""
    pending, _ = store.pending_deferred(run_id)
    waiting = len(
        store.customers_in_state(run_id, (DeliveryStatus.CLAIMED, DeliveryStatus.SENDING), limit=1_000_000)
    )
    reason = None
    if waiting:
        status, note = (
            RunStatus.PAUSED,
            f"{waiting} messages hit temporary failures; rerun the same command to retry them",
        )
        reason = note
    elif pending:
        status, note = RunStatus.DEFERRED, f"{pending} deferred by quiet hours"
    else:
        status, note = RunStatus.COMPLETED, None
    store.finish_run(run_id, owner, status, note)
    return summarise_run(
        store, summary, run_id, status, started=started, reason=reason, counted_here=counted_here
    )


def process_leftovers(store: PipelineStore, processor: RunProcessor, run_id: int, now: datetime) -> None:
    """Rows of this run not reached through the audience (left the segment since): claimed or due deferred
    (and ``unknown`` in an at-least-once run)."""
    seen: set[int] = set()
    open_states = [DeliveryStatus.CLAIMED]
    if processor.at_least_once:
        open_states.append(DeliveryStatus.UNKNOWN)
    while True:
        ids = [i for i in store.customers_in_state(run_id, open_states) if i not in seen]
        ids += [i for i in store.due_deferred_customers(run_id, now) if i not in seen]
        if not ids:
            return
        seen.update(ids)
        customers = store.customers_by_ids(ids)
        processor.process([Member(customers[i]) for i in ids if i in customers])


__all__ = [
    "Checkpoint",
    "RunProcessor",
    "RunRequest",
    "RunSummary",
    "close_run",
    "default_run_key",
    "execute_run",
    "iter_audience",
    "iter_members",
    "process_leftovers",
    "run_campaign",
]
