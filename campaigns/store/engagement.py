"""Suppressions (unsubscribes, bounces, complaints), the event log, and the frequency-cap read.

Suppressions are keyed by the lower-cased address: once an address is suppressed it is never
mailed again, whichever customer record carries it. The first reason recorded is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select

from campaigns.models import Delivery, Event, Suppression
from campaigns.store.base import StoreBase, chunked, utcnow

S, E, D = (cast(Table, m.__table__) for m in (Suppression, Event, Delivery))

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

    def marketing_sends_since(self, customer_ids: Sequence[int], since: datetime) -> dict[int, int]:
        """Per customer: marketing deliveries with status 'sent' and ``sent_at >= since``.

        Customers with none are absent from the result. One query per 900 ids.
        """
        counts: dict[int, int] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                q = (
                    select(D.c.customer_id, func.count())
                    .where(
                        D.c.customer_id.in_(part),
                        D.c.status == "sent",
                        D.c.is_marketing.is_(True),
                        D.c.sent_at >= since,
                    )
                    .group_by(D.c.customer_id)
                )
                counts.update({int(c): int(n) for c, n in conn.execute(q)})
        return counts
