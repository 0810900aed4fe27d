"""Repurchase intervals: how many days customers wait before buying the same product again.

Learned from repeat purchases (the same customer buying the same product on two different days). The
interval of a product is the geometric mean of its observed gaps, shrunk toward its category's (and a
category's toward the shop's) by ``PRIOR_GAPS`` pseudo-gaps, so a product seen re-bought twice mostly
gets its category's rhythm and one re-bought a hundred times gets its own. A customer who re-bought the
product themselves gets their own rhythm, shrunk toward the product's the same way.

::

    intervals = fit_intervals(customer, product, day, category_of)
    intervals.product_days[product_id]            # learned interval (days)
    intervals.customer_days(customer, product, own_gaps)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

#: how many gaps of the broader group a product's (or customer's) own gaps are weighed against
PRIOR_GAPS = 5.0
#: gaps shorter than this are one shopping trip split in two orders, not a repurchase
MIN_GAP_DAYS = 1.0


@dataclass
class Intervals:
    """Learned log-intervals: shop, per category and per product (days = exp of the log)."""

    shop_log: float
    category_log: dict[str, float] = field(default_factory=dict)
    product_log: dict[int, float] = field(default_factory=dict)
    product_gaps: dict[int, int] = field(default_factory=dict)
    product_category: dict[int, str | None] = field(default_factory=dict)

    def product_days(self, product: int) -> float:
        """The product's interval; its category's (or the shop's) when it was never re-bought."""
        if product in self.product_log:
            return float(np.exp(self.product_log[product]))
        category = self.product_category.get(product)
        return float(np.exp(self.category_log.get(category, self.shop_log) if category else self.shop_log))

    def customer_days(self, product: int, own_gaps: NDArray[np.float64]) -> float:
        """This customer's interval for ``product``: their own gaps shrunk toward the product's."""
        prior = float(np.log(self.product_days(product)))
        gaps = own_gaps[own_gaps >= MIN_GAP_DAYS]
        if len(gaps) == 0:
            return float(np.exp(prior))
        mean = (float(np.log(gaps).sum()) + PRIOR_GAPS * prior) / (len(gaps) + PRIOR_GAPS)
        return float(np.exp(mean))


def repeat_gaps(
    customer: NDArray[np.int64], product: NDArray[np.int64], day: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """(customer, product, gap in days) of every consecutive purchase day of the same product by the same
    customer (several lines or orders on one day are one purchase)."""
    keys = np.unique(
        np.column_stack([customer.astype(np.float64), product.astype(np.float64), np.floor(day)]), axis=0
    )
    c, p, d = keys[:, 0].astype(np.int64), keys[:, 1].astype(np.int64), keys[:, 2]
    same = (c[1:] == c[:-1]) & (p[1:] == p[:-1])
    gap = np.diff(d)
    ok = same & (gap >= MIN_GAP_DAYS)
    return c[1:][ok], p[1:][ok], gap[ok]


def fit_intervals(
    customer: NDArray[np.int64],
    product: NDArray[np.int64],
    day: NDArray[np.float64],
    category_of: dict[int, str | None],
    *,
    prior: float = PRIOR_GAPS,
) -> Intervals:
    """Learn the shop's, categories' and products' repurchase intervals from purchase lines."""
    _, gp, gaps = repeat_gaps(customer, product, day)
    if len(gaps) == 0:
        return Intervals(shop_log=float(np.log(30.0)), product_category=dict(category_of))
    logs = np.log(gaps)
    shop = float(np.median(logs))
    categories = np.array([category_of.get(int(p)) or "" for p in gp])
    out = Intervals(shop_log=shop, product_category=dict(category_of))
    for category in np.unique(categories):
        if not category:
            continue
        sel = logs[categories == category]
        out.category_log[str(category)] = (float(sel.sum()) + prior * shop) / (len(sel) + prior)
    order = np.argsort(gp, kind="stable")
    gp_sorted, logs_sorted = gp[order], logs[order]
    ids, start, count = np.unique(gp_sorted, return_index=True, return_counts=True)
    sums = np.add.reduceat(logs_sorted, start)
    for pid, total, n in zip(ids.tolist(), sums.tolist(), count.tolist(), strict=True):
        category = category_of.get(pid)
        base = out.category_log.get(category, shop) if category else shop
        out.product_log[pid] = (total + prior * base) / (n + prior)
        out.product_gaps[pid] = n
    return out


__all__ = ["Intervals", "fit_intervals", "repeat_gaps"]
