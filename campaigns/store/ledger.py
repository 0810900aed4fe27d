"""Runs and the send ledger (deliveries): claim -> send -> record, exactly once per (run, customer).

A delivery row moves ``claimed -> sending -> sent | failed | unknown``; ``skipped``, ``holdout`` and
``deferred`` rows record why someone got nothing (yet). The unique (run, customer) constraint
makes a second claim impossible; the ``claimed -> sending`` step is an atomic conditional UPDATE,
so two processes can never both hand the same row to a sender. A row still ``sending`` when its
batch is processed again was in flight during a crash: Retain resolves it **at most once**
(``unknown``, reason ``in_flight_at_crash``, never re-sent) — see docs/sending.md.

The frequency cap is claimed with the row (:class:`CapRule`): the claim transaction first serialises on
the customers it claims (PostgreSQL: ``SELECT ... FOR UPDATE`` on their ``customers`` rows; SQLite: the
database write lock, taken by the transaction's first statement), then counts their marketing rows that
hold a slot (``claimed``, ``sending``, ``sent``, ``unknown``) in other runs; a customer at the cap gets a
``skipped`` / ``frequency_cap`` row instead. Two concurrent runs therefore cannot both pass the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, text

from campaigns.errors import NotFoundError, RunBusyError
from campaigns.leases import may_take_over, on_this_host
from campaigns.models import Customer, Delivery, Order, Run
from campaigns.status import CAP_HOLDING, CLOSED_RUN, FINAL_DELIVERY, DeliveryStatus, RunStatus
from campaigns.store.base import StoreBase, chunked, utcnow

RUNS, DEL, ORD = (cast(Table, m.__table__) for m in (Run, Delivery, Order))

#: a run lease not renewed for this long is considered abandoned (the process died)
LEASE_SECONDS = 120

#: the reason of a row found ``sending`` by a later pass: its process died with the message in flight
IN_FLIGHT_AT_CRASH = "in_flight_at_crash"

#: kept for callers of the old name
FINAL = tuple(FINAL_DELIVERY)


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    campaign: str
    key: str
    status: RunStatus
    reason: str | None
    scheduled_for: datetime | None
    dispatcher: str
    is_test: bool
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    unsafe_send: str | None = None  # the go-live checks overridden with --allow-unsafe-send


@dataclass(frozen=True, slots=True)
class DeliveryState:
    id: int
    customer_id: int
    status: DeliveryStatus
    not_before: datetime | None
    attempts: int


@dataclass(slots=True)
class LedgerRow:
    """One customer's ledger row, to insert (``id`` None) or to update (a resumed run's existing row).

    Status ``sending`` on insert claims the row and hands it to this caller's sender in one statement.
    """

    customer_id: int
    status: DeliveryStatus
    email: str | None = None
    order_id: int | None = None
    is_marketing: bool = True
    reason: str | None = None
    subject: str | None = None
    not_before: datetime | None = None
    sender: str | None = None
    id: int | None = None
    variant: str | None = None  # the A/B variant this recipient gets (campaigns/variants.py)


@dataclass(frozen=True, slots=True)
class CapRule:
    """The frequency cap a claim enforces: at most ``cap`` marketing messages per customer whose row was
    created (or sent) at or after ``since``, counting rows that hold a slot in *other* runs."""

    cap: int
    since: datetime


#: the reason of a row refused by the cap at claim time (the same as eligibility's)
FREQUENCY_CAP = "frequency_cap"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What became of one message handed to a sender: ``sent``, ``failed``, or ``claimed`` again
    (a temporary failure: the next pass of the run tries it again)."""

    id: int
    status: DeliveryStatus
    reason: str | None = None
    message_id: str | None = None
    attempts: int = 1


@dataclass(slots=True)
class RunCounts:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)  # reason -> count of ``unknown`` rows

    def get(self, status: str) -> int:
        return self.by_status.get(status, 0)


def _run_record(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        campaign=row.campaign,
        key=row.key,
        status=RunStatus(row.status),
        reason=row.reason,
        scheduled_for=row.scheduled_for,
        dispatcher=row.dispatcher,
        is_test=bool(row.is_test),
        started_at=row.started_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        unsafe_send=row.unsafe_send,
    )


#: columns of the PostgreSQL claim insert that travel as one array each (the others are constants)
_PG_INSERT_ARRAYS = {
    "customer_id": "integer[]",
    "order_id": "integer[]",
    "status": "varchar[]",
    "reason": "varchar[]",
    "email": "varchar[]",
    "subject": "varchar[]",
    "not_before": "timestamp[]",
    "is_marketing": "boolean[]",
    "attempts": "integer[]",
    "sender": "varchar[]",
    "variant": "varchar[]",
}
_PG_INSERT = text(
    f"INSERT INTO {Delivery.__tablename__} (run_id, campaign, created_at, updated_at, {', '.join(_PG_INSERT_ARRAYS)}) "
    f"SELECT :run_id, :campaign, :now, :now, {', '.join('u.' + c for c in _PG_INSERT_ARRAYS)} "
    "FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t})" for c, t in _PG_INSERT_ARRAYS.items())
    + f") AS u({', '.join(_PG_INSERT_ARRAYS)}) "
    f"ON CONFLICT DO NOTHING RETURNING customer_id, id"
)
#: PostgreSQL: a group of results in one UPDATE (``FROM unnest``), only rows still ``sending`` change
_PG_RESULTS = text(
    f"UPDATE {Delivery.__tablename__} AS d SET status = u.status, reason = u.reason, message_id = u.message_id, "
    "sent_at = u.sent_at, attempts = u.attempts, sender = :sender, updated_at = :now "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[]), "
    "CAST(:message_ids AS varchar[]), CAST(:sent_ats AS timestamp[]), CAST(:attempts AS integer[])) "
    "AS u(id, status, reason, message_id, sent_at, attempts) "
    "WHERE d.id = u.id AND d.status = 'sending'"
)
#: PostgreSQL: serialise claimers on these customers (row locks in id order: no deadlock between claimers)
_PG_LOCK_CUSTOMERS = text(
    f"SELECT id FROM {Customer.__tablename__} WHERE id = ANY(CAST(:ids AS integer[])) ORDER BY id FOR UPDATE"
)
#: PostgreSQL: per customer, the marketing rows of other runs that hold a frequency-cap slot
_PG_CAP_COUNTS = text(
    f"SELECT customer_id, count(*) FROM {Delivery.__tablename__} "
    "WHERE customer_id = ANY(CAST(:ids AS integer[])) AND run_id <> :run_id AND is_marketing "
    "AND status = ANY(CAST(:statuses AS varchar[])) AND coalesce(sent_at, created_at) >= :since "
    "GROUP BY customer_id"
)


def _update_results_pg(
    conn: Any, rows: Sequence[dict[str, Any]], *, sender: str | None, now: datetime
) -> None:
    seen: set[int] = set()
    unique = []
    for r in rows:  # one result per row: the first wins, as with one UPDATE per result in order
        if r["b_id"] not in seen:
            seen.add(r["b_id"])
            unique.append(r)
    conn.execute(
        _PG_RESULTS,
        {
            "ids": [r["b_id"] for r in unique],
            "statuses": [r["b_status"] for r in unique],
            "reasons": [r["b_reason"] for r in unique],
            "message_ids": [r["b_message_id"] for r in unique],
            "sent_ats": [r["b_sent_at"] for r in unique],
            "attempts": [r["b_attempts"] for r in unique],
            "sender": sender,
            "now": now,
        },
    )


def _busy_message(campaign: str, key: str, owner: str | None, heartbeat_at: datetime | None) -> str:
    beat = f"{heartbeat_at:%H:%M:%S} UTC" if heartbeat_at else "never"
    alive = "its process is alive on this host" if owner and on_this_host(owner) else f"last heartbeat {beat}"
    return (
        f"run {campaign}/{key} is being sent by {owner} ({alive}); wait for it to finish (or stop that "
        "process), or use another --run-key"
    )


class LedgerStore(StoreBase):
    # ------------------------------------------------------------------ runs

    def start_run(
        self,
        campaign: str,
        key: str,
        *,
        owner: str | None,
        scheduled_for: datetime | None = None,
        dispatcher: str = "local",
        is_test: bool = False,
    ) -> RunRecord:
        """Get or create the run (campaign, key) and take its lease for ``owner``.

        ``owner=None`` creates/fetches without a lease (the Celery enqueuer: workers own batches).
        Raises RunBusyError when another live process holds the lease.
        """
        now = utcnow()
        with self.transaction() as conn:
            stmt = self.insert(RUNS).on_conflict_do_nothing(index_elements=[RUNS.c.campaign, RUNS.c.key])
            conn.execute(
                stmt,
                {
                    "campaign": campaign,
                    "key": key,
                    "status": RunStatus.RUNNING,
                    "scheduled_for": scheduled_for,
                    "dispatcher": dispatcher,
                    "is_test": is_test,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            row = conn.execute(select(RUNS).where(RUNS.c.campaign == campaign, RUNS.c.key == key)).one()
            if owner is not None and row.status not in CLOSED_RUN:
                lease = timedelta(seconds=LEASE_SECONDS)
                if not may_take_over(row.owner, row.heartbeat_at, now, lease, owner):
                    raise RunBusyError(_busy_message(campaign, key, row.owner, row.heartbeat_at))
                # compare-and-set on the holder we judged: a concurrent taker wins or loses as a whole
                holder = RUNS.c.owner.is_(None) if row.owner is None else RUNS.c.owner == row.owner
                got = conn.execute(
                    RUNS.update()
                    .where(RUNS.c.id == row.id, holder)
                    .values(owner=owner, heartbeat_at=now, status=RunStatus.RUNNING, updated_at=now)
                ).rowcount
                if not got:
                    fresh = conn.execute(select(RUNS).where(RUNS.c.id == row.id)).one()
                    raise RunBusyError(_busy_message(campaign, key, fresh.owner, fresh.heartbeat_at))
                row = conn.execute(select(RUNS).where(RUNS.c.id == row.id)).one()
            return _run_record(row)

    def mark_unsafe_send(self, run_id: int, overridden: str) -> None:
        """Record on the run that it was sent with the go-live guard overridden, and what it overrode."""
        with self.transaction() as conn:
            conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(unsafe_send=overridden))

    def heartbeat(self, run_id: int, owner: str) -> bool:
        """Renew ``owner``'s lease on the run; False when the run is no longer ``owner``'s."""
        with self.transaction() as conn:
            return bool(
                conn.execute(
                    RUNS.update()
                    .where(RUNS.c.id == run_id, RUNS.c.owner == owner)
                    .values(heartbeat_at=utcnow(), updated_at=utcnow())
                ).rowcount
            )

    def finish_run(
        self, run_id: int, owner: str | None, status: RunStatus, reason: str | None = None
    ) -> None:
        """Set the final (or paused) status and release the lease."""
        now = utcnow()
        values: dict[str, Any] = {"status": status, "reason": reason, "owner": None, "updated_at": now}
        if status in (RunStatus.COMPLETED, RunStatus.SKIPPED, RunStatus.FAILED):
            values["finished_at"] = now
        with self.transaction() as conn:
            cond = RUNS.c.id == run_id
            if owner is not None:
                cond = and_(cond, or_(RUNS.c.owner == owner, RUNS.c.owner.is_(None)))
            conn.execute(RUNS.update().where(cond).values(**values))

    def get_run(self, key: str, campaign: str | None = None) -> RunRecord:
        """A run by key (and campaign when keys repeat); NotFoundError otherwise."""
        with self.engine.connect() as conn:
            q = select(RUNS).where(RUNS.c.key == key)
            if campaign:
                q = q.where(RUNS.c.campaign == campaign)
            rows = conn.execute(q.order_by(RUNS.c.id.desc())).all()
        if not rows:
            raise NotFoundError(
                f"no run with key {key!r}"
                + (f" for campaign {campaign!r}" if campaign else "")
                + "; see `retain runs`"
            )
        return _run_record(rows[0])

    def list_runs(self, limit: int = 20, campaign: str | None = None) -> list[RunRecord]:
        with self.engine.connect() as conn:
            q = select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
            if campaign:
                q = q.where(RUNS.c.campaign == campaign)
            return [_run_record(r) for r in conn.execute(q)]

    # ------------------------------------------------------------------ deliveries

    def delivery_states(self, run_id: int, customer_ids: Sequence[int]) -> dict[int, DeliveryState]:
        out: dict[int, DeliveryState] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                q = select(DEL.c.id, DEL.c.customer_id, DEL.c.status, DEL.c.not_before, DEL.c.attempts).where(
                    DEL.c.run_id == run_id, DEL.c.customer_id.in_(part)
                )
                for r in conn.execute(q):
                    out[r.customer_id] = DeliveryState(
                        r.id, r.customer_id, DeliveryStatus(r.status), r.not_before, r.attempts
                    )
        return out

    def record_deliveries(
        self, run_id: int, campaign: str, rows: Sequence[LedgerRow], *, cap: CapRule | None = None
    ) -> dict[int, int]:
        """Insert ledger rows (one per customer); rows whose (run, customer) exists are left alone.

        Returns {customer_id: delivery_id} for the rows THIS call inserted — the claim. Status
        ``sending`` claims a row and hands it to this caller's sender in one statement (attempts = 1):
        the runner does that per send window, right before sending (docs/sending.md).

        With ``cap``, marketing rows to send (``claimed`` / ``sending``) of customers already at the cap
        are inserted as ``skipped`` / ``frequency_cap`` instead (the row object is changed too, so the
        caller sees it), in the same transaction as the count: see the module docstring.
        """
        if not rows:
            return {}
        now = utcnow()
        with self.transaction() as conn:
            if cap is not None and cap.cap > 0:
                sending = [
                    r
                    for r in rows
                    if r.is_marketing and r.status in (DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)
                ]
                full_up = self._at_cap(conn, run_id, [r.customer_id for r in sending], cap)
                for r in sending:
                    if r.customer_id in full_up:
                        r.status, r.reason = DeliveryStatus.SKIPPED, FREQUENCY_CAP
            return self._insert_rows(conn, run_id, campaign, rows, now)

    def _at_cap(self, conn: Any, run_id: int, customer_ids: Sequence[int], cap: CapRule) -> set[int]:
        """Customers (of ``customer_ids``) at the cap, counted after serialising on them (module docstring)."""
        ids = sorted(set(customer_ids))
        if not ids:
            return set()
        if self.dialect == "postgresql":
            # fixed statements with one array each (a long IN list is a new statement text per window)
            conn.execute(_PG_LOCK_CUSTOMERS, {"ids": ids})
            params = {
                "ids": ids,
                "run_id": run_id,
                "statuses": [str(x) for x in CAP_HOLDING],
                "since": cap.since,
            }
            return {int(c) for c, n in conn.execute(_PG_CAP_COUNTS, params) if n >= cap.cap}
        else:
            # the first statement of the transaction writes, so it holds SQLite's write lock (waiting up
            # to the busy timeout for another claimer) before anything is counted
            conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(updated_at=utcnow()))
        full: set[int] = set()
        when = func.coalesce(DEL.c.sent_at, DEL.c.created_at)
        for part in chunked(ids, 900):
            q = (
                select(DEL.c.customer_id, func.count())
                .where(
                    DEL.c.customer_id.in_(part),
                    DEL.c.run_id != run_id,
                    DEL.c.is_marketing.is_(True),
                    DEL.c.status.in_([str(s) for s in CAP_HOLDING]),
                    when >= cap.since,
                )
                .group_by(DEL.c.customer_id)
            )
            full.update(int(c) for c, n in conn.execute(q) if n >= cap.cap)
        return full

    def _insert_rows(
        self, conn: Any, run_id: int, campaign: str, rows: Sequence[LedgerRow], now: datetime
    ) -> dict[int, int]:
        full = [
            {
                "run_id": run_id,
                "campaign": campaign,
                "customer_id": r.customer_id,
                "order_id": r.order_id,
                "status": str(r.status),
                "reason": r.reason,
                "email": r.email,
                "subject": (r.subject or "")[:1000] or None,
                "not_before": r.not_before,
                "is_marketing": r.is_marketing,
                "attempts": 1 if r.status == DeliveryStatus.SENDING else 0,
                "sender": r.sender,
                "variant": r.variant,
                "created_at": now,
                "updated_at": now,
            }
            for r in rows
        ]
        if self.dialect == "postgresql":
            return self._insert_deliveries_pg(conn, full)
        claimed: dict[int, int] = {}
        for part in chunked(full, 500):
            stmt = self.insert(DEL).on_conflict_do_nothing().returning(DEL.c.customer_id, DEL.c.id)
            for cid, did in conn.execute(stmt, list(part)):
                claimed[int(cid)] = int(did)
        return claimed

    def _insert_deliveries_pg(self, conn: Any, full: Sequence[dict[str, Any]]) -> dict[int, int]:
        """PostgreSQL: one ``INSERT ... SELECT FROM unnest(arrays)`` per 5,000 rows.

        The multi-row VALUES form makes a new statement text of 13 parameters per row that the driver
        has to rewrite on every call (most of the claim's client CPU); this one is a fixed, prepared
        statement with one array per column.
        """
        claimed: dict[int, int] = {}
        for part in chunked(list(full), 5000):
            params = {col: [r[col] for r in part] for col in _PG_INSERT_ARRAYS}
            params.update(run_id=part[0]["run_id"], campaign=part[0]["campaign"], now=part[0]["created_at"])
            for cid, did in conn.execute(_PG_INSERT, params):
                claimed[int(cid)] = int(did)
        return claimed

    def update_claims(self, rows: Sequence[LedgerRow]) -> None:
        """Refresh status/subject/reason/not_before of resumed rows (claimed or deferred) by ``row.id``."""
        if not rows:
            return
        now = utcnow()
        with self.transaction() as conn:
            for r in rows:
                assert r.id is not None, "update_claims takes existing rows"
                conn.execute(
                    DEL.update()
                    .where(
                        DEL.c.id == r.id, DEL.c.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.DEFERRED))
                    )
                    .values(
                        updated_at=now,
                        status=str(r.status),
                        subject=(r.subject or "")[:1000] or None,
                        reason=r.reason,
                        not_before=r.not_before,
                    )
                )

    def begin_sending(self, delivery_ids: Sequence[int], *, cap: CapRule | None = None) -> list[int]:
        """Atomically move ``claimed`` rows to ``sending``; returns the ids this caller now owns.

        With ``cap``, marketing rows of customers at the cap become ``skipped`` / ``frequency_cap``
        instead, in the same transaction as the count (see :meth:`record_deliveries`).
        """
        owned: list[int] = []
        now = utcnow()
        ids = list(delivery_ids)
        with self.transaction() as conn:
            if cap is not None and cap.cap > 0 and ids:
                run_ids: set[int] = set()
                by_customer: dict[int, list[int]] = {}
                for part in chunked(ids, 500):
                    q = select(DEL.c.id, DEL.c.run_id, DEL.c.customer_id).where(
                        DEL.c.id.in_(part),
                        DEL.c.status == DeliveryStatus.CLAIMED,
                        DEL.c.is_marketing.is_(True),
                    )
                    for did, rid, cid in conn.execute(q):
                        run_ids.add(int(rid))
                        by_customer.setdefault(int(cid), []).append(int(did))
                full_up: set[int] = set()
                for rid in run_ids:  # one run per call in practice
                    full_up |= self._at_cap(conn, rid, list(by_customer), cap)
                capped = [d for c in full_up for d in by_customer.get(c, [])]
                for part in chunked(capped, 500):
                    conn.execute(
                        DEL.update()
                        .where(DEL.c.id.in_(part), DEL.c.status == DeliveryStatus.CLAIMED)
                        .values(status=DeliveryStatus.SKIPPED, reason=FREQUENCY_CAP, updated_at=now)
                    )
            for part in chunked(ids, 500):
                stmt = (
                    DEL.update()
                    .where(DEL.c.id.in_(part), DEL.c.status == DeliveryStatus.CLAIMED)
                    .values(status=DeliveryStatus.SENDING, updated_at=now, attempts=DEL.c.attempts + 1)
                    .returning(DEL.c.id)
                )
                owned.extend(int(x) for x in conn.execute(stmt).scalars())
        return owned

    def record_result(self, outcome: DeliveryOutcome, *, sender: str | None = None) -> None:
        """Record one message's outcome (its own short transaction: sends are recorded per message)."""
        self.record_results([outcome], sender=sender)

    def record_results(self, outcomes: Sequence[DeliveryOutcome], *, sender: str | None = None) -> None:
        """Record several outcomes in one short transaction: each message's row gets its own outcome
        (one ``UPDATE ... FROM unnest`` for the group on PostgreSQL, one UPDATE per message elsewhere).

        Only rows still ``sending`` change. A ``claimed`` outcome (a temporary failure after the sender's
        own retries) goes back to ``claimed`` with its reason, so the next pass or resume tries it again.
        """
        if not outcomes:
            return
        now = utcnow()
        rows = []
        for o in outcomes:
            sent = o.status == DeliveryStatus.SENT
            rows.append(
                {
                    "b_id": o.id,
                    "b_status": str(o.status),
                    "b_reason": None if sent else (o.reason or "failed")[:200],
                    "b_message_id": o.message_id if sent else None,
                    "b_sent_at": now if sent else None,
                    "b_attempts": o.attempts or 1,
                }
            )
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                _update_results_pg(conn, rows, sender=sender, now=now)
                return
            stmt = (
                DEL.update()
                .where(DEL.c.id == bindparam("b_id"), DEL.c.status == DeliveryStatus.SENDING)
                .values(
                    status=bindparam("b_status"),
                    reason=bindparam("b_reason"),
                    message_id=bindparam("b_message_id"),
                    sent_at=bindparam("b_sent_at"),
                    attempts=bindparam("b_attempts"),
                    sender=sender,
                    updated_at=now,
                )
            )
            conn.execute(stmt, rows)

    def release_unsent(self, delivery_ids: Iterable[int]) -> int:
        """Back from ``sending`` to ``claimed`` (the sender paused before attempting them)."""
        ids = list(delivery_ids)
        n = 0
        with self.transaction() as conn:
            for part in chunked(ids, 500):
                n += conn.execute(
                    DEL.update()
                    .where(DEL.c.id.in_(part), DEL.c.status == DeliveryStatus.SENDING)
                    .values(status=DeliveryStatus.CLAIMED)
                ).rowcount
        return n

    def resolve_in_flight(self, delivery_ids: Sequence[int]) -> int:
        """Rows left ``sending`` by a crashed process: at most once -> ``unknown`` (reason
        ``in_flight_at_crash``), never re-sent unless a run is started ``--at-least-once``."""
        n = 0
        with self.transaction() as conn:
            for part in chunked(list(delivery_ids), 500):
                n += conn.execute(
                    DEL.update()
                    .where(DEL.c.id.in_(part), DEL.c.status == DeliveryStatus.SENDING)
                    .values(status=DeliveryStatus.UNKNOWN, reason=IN_FLIGHT_AT_CRASH, updated_at=utcnow())
                ).rowcount
        return n

    def reopen_unknown(self, delivery_ids: Sequence[int]) -> list[int]:
        """``unknown`` rows back to ``claimed`` (an ``--at-least-once`` run sends them again); returns
        the ids this call moved (an atomic conditional UPDATE, like :meth:`begin_sending`)."""
        moved: list[int] = []
        with self.transaction() as conn:
            for part in chunked(list(delivery_ids), 500):
                stmt = (
                    DEL.update()
                    .where(DEL.c.id.in_(part), DEL.c.status == DeliveryStatus.UNKNOWN)
                    .values(status=DeliveryStatus.CLAIMED, updated_at=utcnow())
                    .returning(DEL.c.id)
                )
                moved.extend(int(x) for x in conn.execute(stmt).scalars())
        return moved

    def run_counts(self, run_id: int) -> RunCounts:
        counts = RunCounts()
        with self.engine.connect() as conn:
            q = (
                select(DEL.c.status, DEL.c.reason, func.count())
                .where(DEL.c.run_id == run_id)
                .group_by(DEL.c.status, DEL.c.reason)
            )
            for status, reason, n in conn.execute(q):
                counts.total += n
                counts.by_status[status] = counts.by_status.get(status, 0) + n
                if status in (DeliveryStatus.SKIPPED, DeliveryStatus.DEFERRED):
                    key = reason or status
                    counts.skipped[key] = counts.skipped.get(key, 0) + n
                if status == DeliveryStatus.FAILED:
                    key = reason or "failed"
                    counts.failed[key] = counts.failed.get(key, 0) + n
                if status == DeliveryStatus.UNKNOWN:
                    key = reason or "unknown"
                    counts.unknown[key] = counts.unknown.get(key, 0) + n
        return counts

    def pending_deferred(self, run_id: int) -> tuple[int, datetime | None]:
        """How many rows wait for their quiet hours to end, and the earliest time one may go."""
        with self.engine.connect() as conn:
            n, first = conn.execute(
                select(func.count(), func.min(DEL.c.not_before)).where(
                    DEL.c.run_id == run_id, DEL.c.status == DeliveryStatus.DEFERRED
                )
            ).one()
        return int(n), first

    def due_deferred_customers(self, run_id: int, now: datetime, limit: int = 1000) -> list[int]:
        with self.engine.connect() as conn:
            q = (
                select(DEL.c.customer_id)
                .where(
                    DEL.c.run_id == run_id, DEL.c.status == DeliveryStatus.DEFERRED, DEL.c.not_before <= now
                )
                .order_by(DEL.c.customer_id)
                .limit(limit)
            )
            return [int(x) for x in conn.execute(q).scalars()]

    def customers_in_state(self, run_id: int, statuses: Sequence[str], limit: int = 1000) -> list[int]:
        with self.engine.connect() as conn:
            q = (
                select(DEL.c.customer_id)
                .where(DEL.c.run_id == run_id, DEL.c.status.in_(statuses))
                .order_by(DEL.c.customer_id)
                .limit(limit)
            )
            return [int(x) for x in conn.execute(q).scalars()]

    def followed_up_orders(self, campaign: str, order_ids: Sequence[int]) -> set[int]:
        """Orders that already have a delivery row for this campaign (whatever its status)."""
        out: set[int] = set()
        with self.engine.connect() as conn:
            for part in chunked(list(order_ids), 900):
                q = select(DEL.c.order_id).where(DEL.c.campaign == campaign, DEL.c.order_id.in_(part))
                out.update(int(x) for x in conn.execute(q).scalars())
        return out

    def sent_deliveries(self, campaign: str | None = None) -> list[tuple[int, int, datetime]]:
        """(run id, customer id, sent_at) of every sent delivery (analytics)."""
        with self.engine.connect() as conn:
            q = select(DEL.c.run_id, DEL.c.customer_id, DEL.c.sent_at).where(
                DEL.c.status == DeliveryStatus.SENT
            )
            if campaign:
                q = q.where(DEL.c.campaign == campaign)
            return [(int(a), int(b), c) for a, b, c in conn.execute(q)]
