"""The one pipeline: audience -> recommend -> render -> claim -> send -> record.

``run_campaign`` takes a campaign definition to delivered messages for every eligible customer,
exactly once per run key:

- the audience streams in batches (``settings.batch_size``); each batch is judged (consent,
  suppression, frequency cap, quiet hours, address, holdout), recommended and rendered as a whole;
- every customer gets one ledger row per run (sent, failed, skipped + reason, holdout, deferred);
- rows are claimed by inserting them (unique per run and customer); a row to send is inserted per
  send window directly as ``sending``, just before the sender sees it (a resumed ``claimed`` row is
  moved there by an atomic conditional update), and each result is recorded as it arrives; a rerun
  with the same key resumes and never sends a ``sent`` row again;
- a row found ``sending`` on resume was in flight when a process died: **at most once** — it is
  marked failed (``in_flight_at_crash``) and counted, never re-sent (docs/sending.md);
- a template error stops the run before anything else is sent; a sender that keeps failing pauses
  the run (resumable) instead of burning the list.

Post-purchase campaigns iterate due orders instead of a segment: one follow-up per order per
campaign, guaranteed by the ledger's unique (campaign, order) constraint.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.eligibility import judge_batch
from campaigns.errors import RenderError, SenderPausedError
from campaigns.personalize import Member, Personalizer, Prepared, Skip
from campaigns.segments import iter_segment, load_segments, resolve_segment
from campaigns.senders import resolve_sender
from campaigns.senders.base import OutgoingMessage, SendResult, SendStatus
from campaigns.store.ledger import DeliveryState

log = logging.getLogger(__name__)

#: final statuses whose address goes to the suppression list, with the suppression reason
SUPPRESSING_STATUSES = {SendStatus.HARD_BOUNCE: "hard_bounce", SendStatus.COMPLAINT: "complaint"}
HEARTBEAT_SECONDS = 20
#: results are written in groups of at most this many, or this often: a crash can leave at most a
#: group's worth of already-sent rows in ``sending`` (resolved at most once, see the module docstring)
RESULT_FLUSH = 64
RESULT_FLUSH_SECONDS = 0.05

Progress = Callable[[int], None]


@dataclass
class RunSummary:
    campaign: str
    run_key: str
    status: str  # completed | deferred | paused | failed | dry_run
    dry_run: bool
    sent: int = 0
    would_send: int = 0
    holdout: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    in_flight_resolved: int = 0
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
            "status": self.status,
            "dry_run": self.dry_run,
            "holdout": self.holdout,
            "failed": self.failed,
            "deferred": self.deferred,
            "skipped": dict(sorted(self.skipped.items())),
            "failures": dict(sorted(self.failures.items())),
            "in_flight_resolved": self.in_flight_resolved,
            "retry_later": self.retry_later,
            "audience": self.audience,
            "seconds": round(self.seconds, 2),
        }
        data["would_send" if self.dry_run else "sent"] = self.would_send if self.dry_run else self.sent
        for key in ("sender", "report_path", "reason", "next_attempt_at"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


def default_run_key(now: datetime) -> str:
    """Manual sends without --run-key: one run per campaign per (reference) day."""
    return f"manual:{now:%Y-%m-%d}"


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------- audiences


def iter_members(
    store: Any,
    settings: Settings,
    definition: CampaignDefinition,
    *,
    now: datetime,
    segments_file: Path | None = None,
) -> Iterator[list[Member]]:
    """The campaign's audience in batches: segment members, or due orders for post-purchase."""
    batch_size = settings.batch_size
    if definition.kind == "post_purchase":
        yield from iter_due_orders(store, settings, definition, now=now)
        return
    segments = load_segments(segments_file or Path(settings.segments_file))
    segment = resolve_segment(definition.segment_rules or definition.segment, segments)
    for batch in iter_segment(store, segment, now=now, batch_size=batch_size):
        yield [Member(c) for c in batch]


def iter_due_orders(
    store: Any, settings: Settings, definition: CampaignDefinition, *, now: datetime
) -> Iterator[list[Member]]:
    """Orders whose follow-up is due (``days_after_order`` ago, within ``window_days``) and not yet sent."""
    spec = definition.follow_up
    days, window = (spec.days_after_order, spec.window_days) if spec else (7, 3)
    end = now - timedelta(days=days)
    start = end - timedelta(days=window)
    due = store.orders_between(start, end)
    done = store.followed_up_orders(definition.name, [o for o, _, _ in due])
    # newest order per customer: one follow-up per customer per run
    latest: dict[int, int] = {}
    for order_id, customer_id, _ in due:
        if order_id not in done:
            latest[customer_id] = order_id
    items = sorted(latest.items())
    for start_i in range(0, len(items), settings.batch_size):
        part = items[start_i : start_i + settings.batch_size]
        customers = store.customers_by_ids([c for c, _ in part])
        orders = store.orders_by_ids([o for _, o in part])  # one query per chunk, not one per order
        members = [Member(customers[c], orders[o]) for c, o in part if c in customers and o in orders]
        yield members


# ---------------------------------------------------------------------------- the run


class RunProcessor:
    """Processes audience batches for one run: judge, render, claim, send, record.

    The ledger is the truth; this only counts and coordinates. The local dispatcher drives one
    processor over the whole audience; a Celery worker builds one per task and calls
    :meth:`process` on its batch (``Member`` lists), then the run is closed by :func:`close_run`.
    """

    def __init__(
        self,
        store: Any,
        settings: Settings,
        definition: CampaignDefinition,
        personalizer: Personalizer,
        *,
        run_id: int | None,
        owner: str,
        now: datetime,
        sender: Any | None,
        report: Any | None,
        summary: RunSummary,
    ) -> None:
        self.store, self.settings, self.definition = store, settings, definition
        self.personalizer = personalizer
        self.run_id, self.owner, self.now = run_id, owner, now
        self.sender, self.report, self.summary = sender, report, summary
        self.holdout_share = definition.holdout if definition.holdout is not None else settings.holdout_share
        self._last_beat = time.monotonic()
        self._last_flush = time.monotonic()
        self._pending: list[dict[str, Any]] = []
        self._bounces: list[tuple[str, int, str, str]] = []

    def process(self, members: list[Member]) -> None:
        if not members:
            return
        self.summary.audience += len(members)
        states: dict[int, DeliveryState] = (
            self.store.delivery_states(self.run_id, [m.customer.id for m in members]) if self.run_id else {}
        )
        if not self.summary.dry_run:
            in_flight = [s.id for s in states.values() if s.status == "sending"]
            if in_flight:
                self.summary.in_flight_resolved += self.store.resolve_in_flight(in_flight)
        todo = [m for m in members if self._needs_work(states.get(m.customer.id))]
        if not todo:
            return
        verdicts = judge_batch(
            self.store,
            self.settings,
            [m.customer for m in todo],
            campaign=self.definition.name,
            now=self.now,
            holdout_share=self.holdout_share,
            marketing=self.definition.marketing,
        )
        by_id = {m.customer.id: m for m in todo}
        eligible = [by_id[v.customer.id] for v in verdicts if v.status == "eligible"]
        prepared = self.personalizer.prepare(eligible, build_messages=not self.summary.dry_run)
        outcome: dict[int, Prepared | Skip] = {p.member.customer.id: p for p in prepared}

        new_rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for v in verdicts:
            m = by_id[v.customer.id]
            row: dict[str, Any] = {
                "customer_id": v.customer.id,
                "email": v.customer.email,
                "order_id": m.order.id if m.order else None,
                "is_marketing": self.definition.marketing,
            }
            if v.status == "eligible":
                item = outcome[v.customer.id]
                if isinstance(item, Skip):
                    row.update(status="skipped", reason=item.reason)
                else:
                    row.update(status="claimed", subject=item.rendered.subject)
            elif v.status == "deferred":
                row.update(status="deferred", reason=v.reason or "quiet_hours", not_before=v.defer_until)
            else:
                row.update(status=v.status, reason=v.reason)
            self._report(row, outcome.get(v.customer.id))
            state = states.get(v.customer.id)
            if state is None:
                new_rows.append(row)
            else:
                fields = {k: row[k] for k in ("status", "subject", "reason", "not_before") if k in row}
                updates.append({"id": state.id, "customer_id": v.customer.id, **fields})
        if self.summary.dry_run:
            self._count_dry(new_rows + updates)
            return
        # rows to send are claimed later, per send window, directly as ``sending`` (see _send)
        fresh = [(r, outcome[r["customer_id"]]) for r in new_rows if r["status"] == "claimed"]
        self.store.record_deliveries(
            self.run_id, self.definition.name, [r for r in new_rows if r["status"] != "claimed"]
        )
        self.store.update_claims(updates)
        to_send: dict[int, Prepared] = {}
        for upd in updates:
            if upd["status"] == "claimed":
                to_send[upd["id"]] = outcome[upd["customer_id"]]  # type: ignore[assignment]
        self._send(to_send, fresh)  # type: ignore[arg-type]

    @staticmethod
    def _needs_work(state: DeliveryState | None) -> bool:
        if state is None:
            return True
        return state.status in ("claimed", "deferred")

    def _send(
        self, to_send: dict[int, Prepared], fresh: Sequence[tuple[dict[str, Any], Prepared]] = ()
    ) -> None:
        """Send ``to_send`` (existing ``claimed`` rows of a resumed run, by delivery id) and ``fresh``
        (new ledger rows with the prepared message, not inserted yet), one send window at a time.

        Existing rows are moved ``claimed -> sending`` by :meth:`begin_sending`; fresh rows are
        claimed and moved to ``sending`` by one INSERT per window (status ``sending``): only the rows
        that INSERT created are this process's to send. Either way a row is ``sending`` only from just
        before its window is handed to the sender, so a crash leaves at most one window in flight.
        """
        if not to_send and not fresh:
            return
        # last look at suppressions: an unsubscribe may have arrived since the batch was judged
        emails = {p.member.customer.email for p in to_send.values() if p.member.customer.email}
        emails.update(p.member.customer.email for _, p in fresh if p.member.customer.email)
        suppressed = self.store.suppressed_emails(list(emails)) if emails else set()
        window = max(self.settings.send_concurrency * 2, 64)
        ids = list(to_send)
        for start in range(0, len(ids), window):
            self._send_window(self.store.begin_sending(ids[start : start + window]), to_send, suppressed)
        assert self.sender is not None
        sender_name = self.sender.name
        for start in range(0, len(fresh), window):
            rows: list[dict[str, Any]] = []
            for row, p in fresh[start : start + window]:
                if (p.member.customer.email or "").lower() in suppressed:
                    rows.append(
                        {**row, "status": "failed", "reason": "suppressed_before_send", "sender": sender_name}
                    )
                else:
                    rows.append({**row, "status": "sending"})
            got = self.store.record_deliveries(self.run_id, self.definition.name, rows)
            owned: list[int] = []
            for row, (_, p) in zip(rows, fresh[start : start + window], strict=True):
                did = got.get(row["customer_id"])
                if did is not None and row["status"] == "sending":
                    to_send[did] = p
                    owned.append(did)
            self._send_window(owned, to_send, set())

    def _send_window(self, owned: list[int], to_send: dict[int, Prepared], suppressed: set[str]) -> None:
        """Hand the ``sending`` rows ``owned`` by this process to the sender; results are recorded as
        they arrive. Suppressed addresses are failed instead (``suppressed_before_send``)."""
        messages: list[OutgoingMessage] = []
        for did in owned:
            p = to_send[did]
            email = p.email
            assert email is not None
            if (p.member.customer.email or "").lower() in suppressed:
                self.store.record_result(
                    did, ok=False, reason="suppressed_before_send", sender=self.sender.name
                )
                continue
            messages.append(
                OutgoingMessage(str(did), email.mail_from, email.rcpt_to, email.data, email.message_id)
            )
        if not messages:
            return
        recorded: set[int] = set()
        try:
            self.sender.send_batch(messages, functools.partial(self._on_result, to_send, recorded))
            self.flush_results()
        except SenderPausedError:
            self.flush_results()
            released = self.store.release_unsent(d for d in owned if d not in recorded)
            log.warning("sender paused; %d claimed messages left for the resume", released)
            raise

    def _on_result(self, to_send: dict[int, Prepared], recorded: set[int], res: SendResult) -> None:
        """Buffer one message's outcome; results are written in small groups (see ``RESULT_FLUSH``)."""
        did = int(res.key)
        recorded.add(did)
        prepared = to_send[did]
        retryable = not res.final
        self._pending.append(
            {
                "id": did,
                "ok": res.ok,
                "message_id": prepared.email.message_id if res.ok and prepared.email else None,
                "reason": None if res.ok else _failure_reason(res),
                "attempts": res.attempts,
                "retryable": retryable,
            }
        )
        if retryable:
            self.summary.retry_later += 1
        customer = prepared.member.customer
        suppress_as = SUPPRESSING_STATUSES.get(res.status)
        if suppress_as and customer.email:
            self._bounces.append((customer.email, customer.id, suppress_as, res.detail[:500]))
        if len(self._pending) >= RESULT_FLUSH or time.monotonic() - self._last_flush > RESULT_FLUSH_SECONDS:
            self.flush_results()

    def flush_results(self) -> None:
        """Write buffered outcomes (one transaction) and suppress hard-bounced addresses."""
        if self._pending:
            self.store.record_results(self._pending, sender=self.sender.name)
            self._pending = []
        for email, customer_id, why, detail in self._bounces:
            self.store.suppress(
                email, why, customer_id=customer_id, campaign=self.definition.name, detail=detail
            )
        self._bounces = []
        self._last_flush = time.monotonic()
        self._beat()

    def _beat(self) -> None:
        if time.monotonic() - self._last_beat > HEARTBEAT_SECONDS and self.run_id is not None:
            self.store.heartbeat(self.run_id, self.owner)
            self._last_beat = time.monotonic()

    def _count_dry(self, rows: Sequence[dict[str, Any]]) -> None:
        s = self.summary
        for row in rows:
            status = row["status"]
            if status == "claimed":
                s.would_send += 1
            elif status == "holdout":
                s.holdout += 1
            elif status == "deferred":
                s.deferred += 1
                s.skipped[row.get("reason") or "quiet_hours"] = (
                    s.skipped.get(row.get("reason") or "quiet_hours", 0) + 1
                )
            elif status == "skipped":
                key = row.get("reason") or "skipped"
                s.skipped[key] = s.skipped.get(key, 0) + 1

    def _report(self, row: dict[str, Any], item: Prepared | Skip | None) -> None:
        if self.report is None:
            return
        status = row["status"]
        self.report.writerow(
            [
                row["customer_id"],
                row.get("email") or "",
                "would_send" if status == "claimed" else status,
                row.get("reason") or "",
                item.rendered.subject if isinstance(item, Prepared) else "",
                " | ".join(item.top_products) if isinstance(item, Prepared) else "",
            ]
        )


def _failure_reason(res: SendResult) -> str:
    code = res.code or "error"
    detail = " ".join((res.detail or "").split())[:120]
    return f"{code}: {detail}" if detail else code


def run_campaign(
    store: Any,
    settings: Settings,
    definition: CampaignDefinition,
    *,
    recommender: Any | None = None,
    run_key: str | None = None,
    now: datetime | None = None,
    sender: Any | None = None,
    dry_run: bool = False,
    report_path: Path | None = None,
    scheduled_for: datetime | None = None,
    segments_file: Path | None = None,
    members: Iterator[list[Member]] | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    """Run (or resume) one campaign; see the module docstring. Returns the run's summary.

    ``now`` defaults to the reference clock (settings.as_of). ``sender`` is a Sender or a DSN/alias
    (default: settings.resolved_sender()). Raises RenderError (run marked failed), RunBusyError,
    NotFoundError for an unknown segment; returns status "paused" when the sender gave up.
    """
    started = time.perf_counter()
    now = now or reference_now(settings, store)
    key = run_key or default_run_key(now)
    summary = RunSummary(definition.name, key, "dry_run" if dry_run else "running", dry_run)
    owner = process_owner()
    run = None
    if not dry_run:
        run = store.start_run(definition.name, key, owner=owner, scheduled_for=scheduled_for)
        if run.status in ("completed", "skipped"):
            return _finish_summary(store, summary, run.id, run.status, started, already=True)
    own_sender = sender is None or isinstance(sender, str)
    the_sender = (
        None
        if dry_run
        else (resolve_sender(sender or settings.resolved_sender(), settings) if own_sender else sender)
    )
    if the_sender is not None:
        summary.sender = the_sender.name
    report_file: IO[str] | None = None
    writer = None
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_file = open(report_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        writer = csv.writer(report_file)
        writer.writerow(["customer_id", "email", "status", "reason", "subject", "top_products"])
        summary.report_path = str(report_path)
    personalizer = Personalizer(store, settings, definition, recommender, run_key=key)
    state = RunProcessor(
        store, settings, definition, personalizer,
        run_id=run.id if run else None, owner=owner, now=now, sender=the_sender, report=writer, summary=summary,
    )  # fmt: skip
    try:
        batches = (
            members
            if members is not None
            else iter_members(store, settings, definition, now=now, segments_file=segments_file)
        )
        for batch in batches:
            state.process(batch)
            if progress:
                progress(len(batch))
        if run is not None:
            process_leftovers(store, state, run.id, now)
    except RenderError as exc:
        if run is not None:
            store.finish_run(run.id, owner, "failed", str(exc))
        raise
    except SenderPausedError as exc:
        assert run is not None
        store.finish_run(run.id, owner, "paused", str(exc))
        summary.reason = f"{exc} — rerun the same command to resume"
        return _finish_summary(store, summary, run.id, "paused", started)
    except BaseException:
        if run is not None:
            store.finish_run(run.id, owner, "failed", "interrupted; rerun to resume")
        raise
    finally:
        if report_file is not None:
            report_file.close()
        if own_sender and the_sender is not None:
            the_sender.close()
    if dry_run:
        summary.seconds = time.perf_counter() - started
        return summary
    assert run is not None
    return close_run(store, summary, run.id, owner, started)


def close_run(store: Any, summary: RunSummary, run_id: int, owner: str | None, started: float) -> RunSummary:
    """Decide the run's status from its ledger (completed / deferred / paused), release it, summarise."""
    pending, first = store.pending_deferred(run_id)
    waiting = len(store.customers_in_state(run_id, ("claimed", "sending"), limit=1_000_000))
    if waiting:
        status, note = (
            "paused",
            f"{waiting} messages hit temporary failures; rerun the same command to retry them",
        )
        summary.reason = note
    elif pending:
        status, note = "deferred", f"{pending} deferred by quiet hours"
    else:
        status, note = "completed", None
    store.finish_run(run_id, owner, status, note)
    if first is not None:
        summary.next_attempt_at = first.isoformat(sep=" ", timespec="minutes")
    return _finish_summary(store, summary, run_id, status, started)


def process_leftovers(store: Any, state: RunProcessor, run_id: int, now: datetime) -> None:
    """Rows of this run not reached through the audience (left the segment since): claimed or due deferred."""
    seen: set[int] = set()
    while True:
        ids = [i for i in store.customers_in_state(run_id, ("claimed",)) if i not in seen]
        ids += [i for i in store.due_deferred_customers(run_id, now) if i not in seen]
        if not ids:
            return
        seen.update(ids)
        customers = store.customers_by_ids(ids)
        state.process([Member(customers[i]) for i in ids if i in customers])


def _finish_summary(
    store: Any, summary: RunSummary, run_id: int, status: str, started: float, already: bool = False
) -> RunSummary:
    counts = store.run_counts(run_id)
    summary.status = status
    summary.sent = counts.get("sent")
    summary.holdout = counts.get("holdout")
    summary.failed = counts.get("failed")
    summary.deferred = counts.get("deferred")
    summary.skipped = {
        k: v for k, v in counts.skipped.items() if k != "quiet_hours" or counts.get("deferred")
    }
    summary.failures = dict(counts.failed)
    if already:
        summary.reason = "this run key already completed; nothing was sent again"
    summary.seconds = time.perf_counter() - started
    return summary
