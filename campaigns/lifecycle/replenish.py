"""Replenishment: which customers are due to buy again something they buy repeatedly, and how good that is.

A customer is *due* for a product they bought on at least ``min_purchases`` different days when their
interval for it (their own gaps shrunk toward the product's, the product's toward its category's:
:mod:`recommender.repurchase`) has passed since the last purchase, give or take: from ``lead_days``
before the due day to ``window_days`` after it. A new purchase of the product starts a new cycle.

:func:`evaluate_replenishment` replays the holdout: the reminders that would have gone out (at the due
day of each cycle), and the share whose product the customer bought within ``hit_days`` — against a
naive reminder sent a fixed N days after each purchase, N the shop's median repurchase gap (and 30).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from campaigns.lifecycle.summary import datetime_days, to_days
from campaigns.store.records import PurchaseColumns
from recommender.repurchase import Intervals, fit_intervals


@dataclass(frozen=True)
class Cycle:
    """One customer's purchase days of one product (ascending) and the order of the last one."""

    customer: int
    product: int
    days: np.ndarray
    last_order: int


def cycles(lines: PurchaseColumns, min_purchases: int = 2) -> list[Cycle]:
    """Every (customer, product) bought on at least ``min_purchases`` different days."""
    day = np.floor(to_days(lines.ordered_at))
    order = np.lexsort((lines.order_id, day, lines.product_id, lines.customer_id))
    c, p, d, o = lines.customer_id[order], lines.product_id[order], day[order], lines.order_id[order]
    new_pair = np.r_[True, (c[1:] != c[:-1]) | (p[1:] != p[:-1])]
    starts = np.flatnonzero(new_pair)
    ends = np.r_[starts[1:], len(c)]
    # distinct days per pair: a line whose day equals the previous line's of the same pair adds nothing
    fresh = new_pair | np.r_[True, d[1:] != d[:-1]]
    distinct = np.add.reduceat(fresh.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    out = []
    for s, e, n in zip(starts.tolist(), ends.tolist(), distinct.tolist(), strict=True):
        if n >= min_purchases:
            days = d[s:e][fresh[s:e]]
            out.append(Cycle(int(c[s]), int(p[s]), days, int(o[e - 1])))
    return out


def learn(lines: PurchaseColumns, category_of: dict[int, str | None]) -> Intervals:
    return fit_intervals(lines.customer_id, lines.product_id, to_days(lines.ordered_at), category_of)


def due_now(
    lines: PurchaseColumns,
    category_of: dict[int, str | None],
    now: datetime,
    *,
    lead_days: int = 3,
    window_days: int = 7,
    min_purchases: int = 2,
) -> list[tuple[int, int, int, float]]:
    """``(customer, product, order of the last purchase, interval days)`` due at ``now``, soonest due first."""
    intervals = learn(lines, category_of)
    today = datetime_days(now)
    due = []
    for cycle in cycles(lines, min_purchases):
        interval = intervals.customer_days(cycle.product, np.diff(cycle.days))
        when = cycle.days[-1] + interval
        if when - lead_days <= today < when + window_days:
            due.append((when, cycle.customer, cycle.product, cycle.last_order, interval))
    due.sort()
    return [(c, p, o, i) for _, c, p, o, i in due]


def _replay(
    first_due: float, later: list[float], interval: float, start: float, end: float, hit: int
) -> tuple[int, int]:
    """(reminders, hits) of one (customer, product) over [start, end): a reminder on each due day that comes
    before the next purchase; a hit when the product is bought within ``hit`` days of it."""
    reminders = hits = 0
    due = first_due
    k = 0
    while True:
        nxt = later[k] if k < len(later) else None
        if nxt is not None and nxt < due:  # bought again before the reminder: a new cycle, no reminder
            due = nxt + interval
            k += 1
            continue
        if due >= end:
            return reminders, hits
        if due >= start:
            reminders += 1
            hits += int(nxt is not None and nxt <= due + hit)
        if nxt is None:
            return reminders, hits
        due = nxt + interval
        k += 1


def evaluate_replenishment(
    lines: PurchaseColumns,
    category_of: dict[int, str | None],
    cutoff: datetime,
    *,
    days: int = 90,
    hit_days: int = 14,
    min_purchases: int = 2,
) -> dict[str, Any]:
    """Precision of the learned reminders vs naive fixed-delay ones, on ``[cutoff, cutoff + days)``."""
    start = datetime_days(cutoff)
    end = start + days - hit_days  # a reminder needs hit_days of future to be judged
    day = np.floor(to_days(lines.ordered_at))
    train = day < start
    before = PurchaseColumns(
        *(
            getattr(lines, f)[train]
            for f in ("customer_id", "product_id", "order_id", "ordered_at", "quantity", "unit_price")
        )
    )
    intervals = learn(before, category_of)
    if not intervals.product_log:
        return {"reminders": 0, "note": "nobody bought the same product on two different days"}
    naive_n = float(np.exp(intervals.shop_log))
    future_mask = (day >= start) & (day < start + days)
    future: dict[tuple[int, int], list[float]] = {}
    for c, p, d in zip(
        lines.customer_id[future_mask].tolist(),
        lines.product_id[future_mask].tolist(),
        day[future_mask].tolist(),
        strict=True,
    ):
        future.setdefault((c, p), []).append(d)
    naive = round(naive_n)
    rows: dict[str, list[int]] = {}

    def add(name: str, cycle: Cycle, later: list[float], interval: float) -> None:
        r, h = _replay(float(cycle.days[-1]) + interval, later, interval, start, end, hit_days)
        row = rows.setdefault(name, [0, 0])
        row[0] += r
        row[1] += h

    for cycle in cycles(before, 1):
        later = sorted(set(future.get((cycle.customer, cycle.product), ())))
        if len(cycle.days) >= min_purchases:
            add("model", cycle, later, intervals.customer_days(cycle.product, np.diff(cycle.days)))
            add(f"naive_{naive}d_same_products", cycle, later, naive_n)
            add("naive_30d_same_products", cycle, later, 30.0)
        add(f"naive_{naive}d", cycle, later, naive_n)
        add("naive_30d", cycle, later, 30.0)
    out: dict[str, Any] = {"hit_days": hit_days, "naive_days": round(naive_n, 1)}
    for name, (r, h) in rows.items():
        out[name] = {"reminders": r, "bought_within": h, "precision": round(h / r, 4) if r else None}
    model = out.get("model", {}).get("precision")
    for name in (f"naive_{naive}d", "naive_30d", f"naive_{naive}d_same_products", "naive_30d_same_products"):
        base = out.get(name, {}).get("precision")
        out.setdefault("ratio", {})[name] = round(model / base, 3) if model is not None and base else None
    out["products_with_own_interval"] = len(intervals.product_log)
    out["categories"] = len(intervals.category_log)
    return out


__all__ = ["Cycle", "cycles", "due_now", "evaluate_replenishment", "learn"]
