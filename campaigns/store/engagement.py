"""Suppressions (unsubscribes, bounces, complaints), the event log, the frequency-cap read, feedback
ratings from follow-up emails, and the reads campaign attribution needs.

Suppressions are keyed by the lower-cased address: once an address is suppressed it is never
mailed again, whichever customer record carries it. The first reason recorded is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select

from campaigns.models import Customer, Delivery, Event, Feedback, Order, Suppression
from campaigns.status import CAP_HOLDING
from campaigns.store.base import StoreBase, chunked, utcnow

S, E, D = (cast(Table, m.__table__) for m in (Suppression, Event, Delivery))
FB, C, O = (cast(Table, m.__table__) for m in (Feedback, Customer, Order))

#: reasons a suppression may carry (stable strings; analytics and the web endpoints use them)
SUPPRESSION_REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual")


def normalize_email(email: str) -> str:
    return email.strip().lower()


class EngagementStore(StoreBase):
    # ------------------------------------------------------------------ suppressions

    def suppress(
        self,
        email: str,
        reason: str,
        customer_id: int | None = None,
        campaign: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Add ``email`` to the suppression list; True when it was new (the first reason is kept).

        Raises ValueError for an empty address or a reason outside SUPPRESSION_REASONS.
        """
        address = normalize_email(email or "")
        if not address:
            raise ValueError("cannot suppress an empty address")
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(
                f"unknown suppression reason {reason!r} (known: {', '.join(SUPPRESSION_REASONS)})"
            )
        row = {
            "email": address,
            "customer_id": customer_id,
            "reason": reason,
            "campaign": campaign,
            "detail": detail,
            "created_at": utcnow(),
        }
        with self.transaction() as conn:
            stmt = self.insert(S).values(row).on_conflict_do_nothing(index_elements=[S.c.email])
            # rowcount is -1 on PostgreSQL with an implicit RETURNING: ask for the new id instead
            return conn.execute(stmt.returning(S.c.id)).first() is not None

    def is_suppressed(self, email: str) -> bool:
        with self.engine.connect() as conn:
            hit = conn.execute(select(S.c.id).where(S.c.email == normalize_email(email))).first()
            return hit is not None

    def suppressed_emails(self, emails: Iterable[str | None]) -> set[str]:
        """The lower-cased addresses among ``emails`` that are suppressed (one query per 900)."""
        wanted = sorted({normalize_email(e) for e in emails if e})
        found: set[str] = set()
        with self.engine.connect() as conn:
            for part in chunked(wanted, 900):
                found.update(conn.execute(select(S.c.email).where(S.c.email.in_(part))).scalars())
        return found

    def suppression_counts(self) -> dict[str, int]:
        """Suppressed addresses per reason."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.c.reason, func.count()).group_by(S.c.reason))
            return {str(reason): int(n) for reason, n in rows}

    def unsuppress(self, email: str) -> bool:
        """Remove an address from the list (an explicit re-subscribe); True when it was there."""
        with self.transaction() as conn:
            return bool(conn.execute(S.delete().where(S.c.email == normalize_email(email))).rowcount)

    # ------------------------------------------------------------------ events

    def record_event(
        self,
        kind: str,
        *,
        customer_id: int | None = None,
        campaign: str | None = None,
        payload: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> int:
        """Append one event (unsubscribe, feedback, test send, scheduler skip ...); returns its id."""
        with self.transaction() as conn:
            result = conn.execute(
                E.insert().values(
                    kind=kind,
                    customer_id=customer_id,
                    campaign=campaign,
                    payload=dict(payload) if payload is not None else None,
                    created_at=at or utcnow(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def events(self, kind: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events (optionally of one kind), newest first, as plain dicts."""
        q = select(E).order_by(E.c.id.desc()).limit(limit)
        if kind is not None:
            q = q.where(E.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]

    # ------------------------------------------------------------------ frequency cap

    def marketing_sends_since(
        self, customer_ids: Sequence[int], since: datetime, *, exclude_run: int | None = None
    ) -> dict[int, int]:
        """Per customer: marketing deliveries that hold a frequency-cap slot (``claimed``, ``sending``,
        ``sent``, ``unknown``) sent, or created, at or after ``since`` — outside run ``exclude_run``.

        Customers with none are absent from the result. One query per 900 ids. This is the early look
        (the verdict's reason); the claim re-counts atomically (campaigns/store/ledger.py, ``CapRule``).
        """
        counts: dict[int, int] = {}
        when = func.coalesce(D.c.sent_at, D.c.created_at)
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                q = (
                    select(D.c.customer_id, func.count())
                    .where(
                        D.c.customer_id.in_(part),
                        D.c.status.in_([str(s) for s in CAP_HOLDING]),
                        D.c.is_marketing.is_(True),
                        when >= since,
                    )
                    .group_by(D.c.customer_id)
                )
                if exclude_run is not None:
                    q = q.where(D.c.run_id != exclude_run)
                counts.update({int(c): int(n) for c, n in conn.execute(q)})
        return counts

    # ------------------------------------------------------------------ events by campaign (web dashboard)

    def event_counts(self, kind: str) -> dict[str, int]:
        """Events of ``kind`` per campaign (e.g. ``test_send``: preview test sends, never deliveries)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(E.c.campaign, func.count()).where(E.c.kind == kind).group_by(E.c.campaign)
            )
            return {str(campaign or ""): int(n) for campaign, n in rows}

    # ------------------------------------------------------------------ feedback (follow-up star links)

    def record_feedback(
        self, *, order_id: int, customer_id: int, campaign: str, rating: int, comment: str | None = None
    ) -> bool:
        """Store ``rating`` (1-5) for (order, campaign); True when it was the first rating for it.

        A replayed or changed star click overwrites the rating of the same row; a ``comment`` of None
        keeps the comment already given. Raises ValueError for a rating outside 1..5.
        """
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ValueError(f"a rating must be an integer from 1 to 5, got {rating!r}")
        now = utcnow()
        with self.transaction() as conn:
            existing = conn.execute(
                select(FB.c.id).where(FB.c.order_id == order_id, FB.c.campaign == campaign)
            ).first()
            if existing is None:
                stmt = (
                    self.insert(FB)
                    .values(
                        order_id=order_id,
                        customer_id=customer_id,
                        campaign=campaign,
                        rating=rating,
                        comment=comment,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=[FB.c.order_id, FB.c.campaign])
                )
                if conn.execute(stmt.returning(FB.c.id)).first() is not None:
                    return True
            changes: dict[str, Any] = {"rating": rating, "updated_at": now}
            if comment is not None:
                changes["comment"] = comment
            conn.execute(
                FB.update().where(FB.c.order_id == order_id, FB.c.campaign == campaign).values(**changes)
            )
            return False

    def feedback_for(self, order_id: int, campaign: str) -> FeedbackRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(FB).where(FB.c.order_id == order_id, FB.c.campaign == campaign)).first()
        return _feedback_record(row) if row is not None else None

    def low_feedback(self, below: int, *, limit: int = 500) -> list[FeedbackRecord]:
        """Ratings strictly below ``below``, newest first, with the customer's email and order number."""
        q = (
            select(FB, C.c.email, O.c.external_id.label("order_number"))
            .select_from(FB.join(C, C.c.id == FB.c.customer_id).join(O, O.c.id == FB.c.order_id))
            .where(FB.c.rating < below)
            .order_by(FB.c.updated_at.desc(), FB.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_feedback_record(r) for r in conn.execute(q)]

    # ------------------------------------------------------------------ attribution reads (analytics)

    def campaign_touches(self, statuses: Sequence[str] = ("sent", "holdout")) -> list[Touch]:
        """(campaign, customer, status, when) of deliveries in ``statuses``; "when" is sent_at, or
        created_at for rows never sent (holdout). Oldest first."""
        when = func.coalesce(D.c.sent_at, D.c.created_at)
        q = (
            select(D.c.campaign, D.c.customer_id, D.c.status, when.label("at"))
            .where(D.c.status.in_(list(statuses)))
            .order_by(when, D.c.id)
        )
        with self.engine.connect() as conn:
            return [Touch(str(c), int(cid), str(s), at) for c, cid, s, at in conn.execute(q)]

    def orders_since(
        self, since: datetime, *, currency: str | None = None
    ) -> list[tuple[int, int, datetime, float]]:
        """(order id, customer id, ordered_at, total) of purchases at or after ``since``, oldest first;
        only orders in ``currency`` when given."""
        q = (
            # an order without prices (a price-less basket file) attributes no revenue
            select(O.c.id, O.c.customer_id, O.c.ordered_at, func.coalesce(O.c.total, 0.0))
            .where(O.c.ordered_at >= since)
            .order_by(O.c.ordered_at, O.c.id)
        )
        if currency is not None:
            q = q.where(O.c.currency == currency)
        with self.engine.connect() as conn:
            return [(int(a), int(b), c, float(d)) for a, b, c, d in conn.execute(q)]

    def delivery_counts_by_campaign(self) -> dict[str, dict[tuple[str, str | None], int]]:
        """Per campaign: rows per (status, reason) over every run (the dashboard's sent / skipped)."""
        q = select(D.c.campaign, D.c.status, D.c.reason, func.count()).group_by(
            D.c.campaign, D.c.status, D.c.reason
        )
        out: dict[str, dict[tuple[str, str | None], int]] = {}
        with self.engine.connect() as conn:
            for campaign, status, reason, n in conn.execute(q):
                out.setdefault(str(campaign), {})[(str(status), reason)] = int(n)
        return out


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    order_id: int
    customer_id: int
    campaign: str
    rating: int
    comment: str | None
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    order_number: str | None = None


@dataclass(frozen=True, slots=True)
class Touch:
    """One campaign contact (or deliberate non-contact, for the holdout) of one customer."""

    campaign: str
    customer_id: int
    status: str  # sent | holdout
    at: datetime


def _feedback_record(row: Any) -> FeedbackRecord:
    m = row._mapping
    return FeedbackRecord(
        order_id=int(m["order_id"]),
        customer_id=int(m["customer_id"]),
        campaign=str(m["campaign"]),
        rating=int(m["rating"]),
        comment=m["comment"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        email=m.get("email"),
        order_number=m.get("order_number"),
    )
