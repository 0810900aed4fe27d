"""Lifecycle predictions: the order columns they are learned from, and the per-customer rows they write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, delete, insert, select

from campaigns.models import Customer, CustomerPrediction, Order, PredictionFit
from campaigns.store.base import chunked

C, O = (cast(Table, m.__table__) for m in (Customer, Order))
CP, PF = (cast(Table, m.__table__) for m in (CustomerPrediction, PredictionFit))


@dataclass(frozen=True, slots=True)
class OrderColumns:
    """Orders as parallel numpy columns: ``total`` is NaN where the price is unknown."""

    customer_id: np.ndarray  # int64
    ordered_at: np.ndarray  # datetime64[s], naive UTC
    total: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.customer_id.shape[0])


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One customer's stored predictions (see ``CustomerPrediction``)."""

    customer_id: int
    as_of: datetime
    p_alive: float
    expected_orders_30d: float
    expected_orders_90d: float
    expected_orders_90d_low: float | None = None
    expected_orders_90d_high: float | None = None
    next_order_at: datetime | None = None
    spend_per_order: float | None = None
    clv_12m: float | None = None
    clv_12m_low: float | None = None
    clv_12m_high: float | None = None
    preferred_hour: int | None = None
    preferred_weekday: int | None = None


@dataclass(frozen=True, slots=True)
class PredictionFitRecord:
    created_at: datetime
    as_of: datetime
    customers: int
    details: dict[str, Any]


_FIELDS = tuple(PredictionRecord.__dataclass_fields__)


class PredictionStore:
    """Reads and writes of ``customer_predictions`` and ``prediction_fits``."""

    engine: Any

    def order_columns(self, *, until: datetime | None = None, since: datetime | None = None) -> OrderColumns:
        """Every order (purchases only) with ``since <= ordered_at < until``, oldest first."""
        stmt = select(O.c.customer_id, O.c.ordered_at, O.c.total).order_by(O.c.ordered_at, O.c.id)
        if until is not None:
            stmt = stmt.where(O.c.ordered_at < until)
        if since is not None:
            stmt = stmt.where(O.c.ordered_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return OrderColumns(np.empty(0, np.int64), np.empty(0, "datetime64[s]"), np.empty(0, np.float64))
        cid, at, total = zip(*rows, strict=True)
        return OrderColumns(
            np.asarray(cid, dtype=np.int64),
            np.asarray(at, dtype="datetime64[s]"),
            np.asarray([np.nan if t is None else t for t in total], dtype=np.float64),
        )

    def customer_zones(self) -> dict[int, str | None]:
        """Every customer's timezone name (None when unknown)."""
        with self.engine.connect() as conn:
            return {int(i): z for i, z in conn.execute(select(C.c.id, C.c.timezone))}

    def replace_predictions(
        self, rows: Iterable[PredictionRecord], fit: PredictionFitRecord, *, chunk: int = 5_000
    ) -> int:
        """Replace every stored prediction with ``rows`` and record ``fit``, in one transaction."""
        n = 0
        with self.engine.begin() as conn:
            conn.execute(delete(CP))
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append({f: getattr(row, f) for f in _FIELDS})  # asdict deep-copies: 3x slower
                if len(batch) >= chunk:
                    conn.execute(insert(CP), batch)
                    n += len(batch)
                    batch = []
            if batch:
                conn.execute(insert(CP), batch)
                n += len(batch)
            conn.execute(insert(PF).values(**asdict(fit)))
        return n

    def predictions_for(self, customer_ids: Sequence[int]) -> dict[int, PredictionRecord]:
        out: dict[int, PredictionRecord] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                for row in conn.execute(select(CP).where(CP.c.customer_id.in_(part))):
                    out[row.customer_id] = PredictionRecord(**{f: getattr(row, f) for f in _FIELDS})
        return out

    def latest_prediction_fit(self) -> PredictionFitRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(PF).order_by(PF.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return PredictionFitRecord(row.created_at, row.as_of, row.customers, dict(row.details))


__all__ = ["OrderColumns", "PredictionFitRecord", "PredictionRecord", "PredictionStore"]
