"""Per-customer purchase summaries (the inputs of the BG/NBD and Gamma-Gamma models) from order columns.

A "purchase" is a day with at least one order (several invoices on one day are one shopping trip); its
value is the sum of that day's order totals (NaN when a price is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from campaigns.store.predictions import OrderColumns

DAY = 86_400


def to_days(at: np.ndarray) -> np.ndarray:
    """datetime64 -> float days since the epoch."""
    return at.astype("datetime64[s]").astype(np.int64) / DAY


def datetime_days(at: datetime) -> float:
    return float(to_days(np.asarray([np.datetime64(at, "s")]))[0])


@dataclass(frozen=True, slots=True)
class Summary:
    """Parallel arrays, one entry per customer with at least one order before ``as_of``."""

    customer_id: np.ndarray  # int64, ascending
    frequency: np.ndarray  # repeat purchase days
    recency: np.ndarray  # days from the first to the last purchase day
    age: np.ndarray  # days from the first purchase day to as_of
    monetary: np.ndarray  # mean value of the repeat purchase days (NaN: none, or unknown prices)
    first_value: np.ndarray  # value of the first purchase day
    orders: np.ndarray  # orders (not days)
    last_day: np.ndarray  # float days since the epoch of the last purchase day
    as_of: datetime

    def __len__(self) -> int:
        return int(self.customer_id.shape[0])


def _customer_days(cid: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (customer, day) pairs sorted by customer then day, and each input row's pair index."""
    if len(cid) == 0:
        return np.empty(0, np.int64), np.empty(0), np.empty(0, np.intp)
    base = int(day.min())
    offset = (day - base).astype(np.int64)
    span = int(offset.max()) + 1
    keys, inverse = np.unique(cid.astype(np.int64) * span + offset, return_inverse=True)
    return keys // span, (keys % span + base).astype(np.float64), inverse.reshape(-1)


def summarize(orders: OrderColumns, as_of: datetime) -> Summary:
    """The summary of every customer's orders strictly before ``as_of``."""
    now = datetime_days(as_of)
    days = np.floor(to_days(orders.ordered_at))
    keep = days < now
    cid, day, total = orders.customer_id[keep], days[keep], orders.total[keep]
    order_cid, order_counts = np.unique(cid, return_counts=True)
    # one row per (customer, day): value summed (NaN propagates: a day with an unpriced order is unknown);
    # one int64 key per pair sorts far faster than np.unique(axis=0) on 1M customers
    ucid, uday, inverse = _customer_days(cid, day)
    value = np.zeros(len(ucid))
    np.add.at(value, inverse, total)
    customers, start, n_days = np.unique(ucid, return_index=True, return_counts=True)
    first = uday[start]
    last = uday[start + n_days - 1]
    first_value = value[start]
    repeat_sum = np.add.reduceat(value, start) - first_value
    frequency = (n_days - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_sum / np.maximum(frequency, 1), np.nan)
    assert np.array_equal(customers, order_cid)
    return Summary(
        customer_id=customers,
        frequency=frequency,
        recency=last - first,
        age=now - first,
        monetary=monetary,
        first_value=first_value,
        orders=order_counts.astype(np.int64),
        last_day=last,
        as_of=as_of,
    )


def future_counts(orders: OrderColumns, customers: np.ndarray, start: datetime, days: int) -> np.ndarray:
    """Per customer in ``customers``: purchase days in ``[start, start + days)`` (the holdout's truth)."""
    s = datetime_days(start)
    day = np.floor(to_days(orders.ordered_at))
    keep = (day >= s) & (day < s + days)
    pair_customers, _, _ = _customer_days(orders.customer_id[keep], day[keep])
    ids, counts = np.unique(pair_customers, return_counts=True)
    out = np.zeros(len(customers))
    if len(ids) == 0:
        return out
    pos = np.searchsorted(ids, customers)
    hit = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == customers)
    out[hit] = counts[pos[hit]]
    return out


def future_spend(orders: OrderColumns, customers: np.ndarray, start: datetime, days: int) -> np.ndarray:
    """Per customer: total spend in ``[start, start + days)`` (unknown prices count as 0)."""
    s = datetime_days(start)
    day = to_days(orders.ordered_at)
    keep = (day >= s) & (day < s + days)
    cid, total = orders.customer_id[keep], np.nan_to_num(orders.total[keep])
    out = np.zeros(len(customers))
    pos = np.searchsorted(customers, cid)
    ok = (pos < len(customers)) & (customers[np.minimum(pos, len(customers) - 1)] == cid)
    np.add.at(out, pos[ok], total[ok])
    return out
