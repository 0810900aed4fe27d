"""Tracked clicks (``/c/<token>``) and the reads the campaign report needs (recipients by variant).

Times are naive UTC. A click is stored with the reason it is not human (campaigns/clicks.py) or None;
the "many links at once" rule is applied here, in the transaction that stores the click, because it
needs the email's other recent clicks (and re-flags them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, update

from campaigns.clicks import BURST, BURST_LINKS, BURST_SECONDS, classify_click
from campaigns.models import Click, Delivery, Run
from campaigns.store.base import StoreBase

CL, DL, RN = (cast(Table, m.__table__) for m in (Click, Delivery, Run))
MAX_USER_AGENT = 300


@dataclass(frozen=True, slots=True)
class ClickRecord:
    customer_id: int
    run_key: str
    variant: str | None
    url: str
    clicked_at: datetime
    reason: str | None  # None: a human click

    @property
    def human(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """One ledger row of a campaign as the report sees it (sent or holdout)."""

    customer_id: int
    run_key: str
    status: str  # sent | holdout
    variant: str | None
    at: datetime  # sent_at, or created_at for a holdout row


class ClickStore(StoreBase):
    # ------------------------------------------------------------------ A/B test phases of a run

    def run_phase(self, run_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(phase, decision) of an A/B test run (None, None before the test starts)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(RN.c.phase, RN.c.decision).where(RN.c.id == run_id)).one_or_none()
        return (row.phase, row.decision) if row is not None else (None, None)

    def set_run_phase(self, run_id: int, phase: str, decision: dict[str, Any] | None) -> None:
        with self.transaction() as conn:
            conn.execute(update(RN).where(RN.c.id == run_id).values(phase=phase, decision=decision))

    # ------------------------------------------------------------------ clicks

    def delivered_at(self, campaign: str, run_key: str, customer_id: int) -> datetime | None:
        """When the run's message to ``customer_id`` was handed to the mail server (None: not sent)."""
        q = (
            select(DL.c.sent_at)
            .select_from(DL.join(RN, RN.c.id == DL.c.run_id))
            .where(RN.c.campaign == campaign, RN.c.key == run_key, DL.c.customer_id == customer_id)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def record_click(
        self,
        *,
        campaign: str,
        run_key: str,
        customer_id: int,
        url: str,
        variant: str | None,
        user_agent: str | None,
        clicked_at: datetime,
    ) -> str | None:
        """Store one click; returns why it is not human (None: human). See campaigns/clicks.py."""
        reason = classify_click(
            user_agent=user_agent,
            clicked_at=clicked_at,
            delivered_at=self.delivered_at(campaign, run_key, customer_id),
        )
        span = timedelta(seconds=BURST_SECONDS)
        same_email = (CL.c.run_key == run_key, CL.c.campaign == campaign, CL.c.customer_id == customer_id)
        with self.transaction() as conn:
            recent = conn.execute(
                select(CL.c.id, CL.c.url).where(
                    *same_email, CL.c.clicked_at.between(clicked_at - span, clicked_at + span)
                )
            ).all()
            if len({u for _, u in recent} | {url}) >= BURST_LINKS:
                reason = reason or BURST
                burst_ids = [i for i, _ in recent]
                conn.execute(
                    update(CL).where(CL.c.id.in_(burst_ids), CL.c.reason.is_(None)).values(reason=BURST)
                )
            conn.execute(
                CL.insert().values(
                    campaign=campaign,
                    run_key=run_key,
                    customer_id=customer_id,
                    variant=variant,
                    url=url,
                    user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
                    reason=reason,
                    clicked_at=clicked_at,
                )
            )
        return reason

    def clicks(self, campaign: str) -> list[ClickRecord]:
        """Every stored click on the campaign's links, oldest first."""
        q = (
            select(CL.c.customer_id, CL.c.run_key, CL.c.variant, CL.c.url, CL.c.clicked_at, CL.c.reason)
            .where(CL.c.campaign == campaign)
            .order_by(CL.c.clicked_at, CL.c.id)
        )
        with self.engine.connect() as conn:
            return [
                ClickRecord(int(c), str(r), v, str(u), at, why) for c, r, v, u, at, why in conn.execute(q)
            ]

    def human_clicks_since(self, since: datetime) -> list[tuple[int, str, datetime, str | None]]:
        """(customer, campaign, when, variant) of every human click at or after ``since`` (any campaign), oldest first:
        last-touch attribution credits the latest click before an order, whichever campaign it was."""
        q = (
            select(CL.c.customer_id, CL.c.campaign, CL.c.clicked_at, CL.c.variant)
            .where(CL.c.reason.is_(None), CL.c.clicked_at >= since)
            .order_by(CL.c.clicked_at, CL.c.id)
        )
        with self.engine.connect() as conn:
            return [(int(c), str(k), at, v) for c, k, at, v in conn.execute(q)]

    def campaign_recipients(
        self, campaign: str, statuses: Sequence[str] = ("sent", "holdout")
    ) -> list[RecipientRow]:
        """The campaign's ledger rows in ``statuses`` with their run and variant, oldest first."""
        when = func.coalesce(DL.c.sent_at, DL.c.created_at)
        q = (
            select(DL.c.customer_id, RN.c.key, DL.c.status, DL.c.variant, when.label("at"))
            .select_from(DL.join(RN, RN.c.id == DL.c.run_id))
            .where(DL.c.campaign == campaign, DL.c.status.in_(list(statuses)), RN.c.is_test.is_(False))
            .order_by(when, DL.c.id)
        )
        with self.engine.connect() as conn:
            return [RecipientRow(int(c), str(k), str(s), v, at) for c, k, s, v, at in conn.execute(q)]


__all__ = ["ClickRecord", "ClickStore", "RecipientRow"]
