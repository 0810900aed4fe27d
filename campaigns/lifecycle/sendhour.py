"""Best send hour: each customer's preferred ordering hour and weekday, shrunk toward the shop's pattern.

A customer's hours (in their own timezone, else the shop's) are counted, and the shop's hour
distribution is added as ``PRIOR_ORDERS`` pseudo-orders: a customer with one order mostly gets the
shop's pattern, one with twenty gets their own. The preferred hour is the one whose window of
+-``WINDOW`` hours holds the most (smoothed) orders, because a send "at 19:00" is judged by orders
around 19:00, not at exactly 19:00. Weekdays work the same way without the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from campaigns.scheduling.zones import effective_zone
from campaigns.store.predictions import OrderColumns

#: how many of the shop's orders a customer's own history is weighed against
PRIOR_ORDERS = 3.0
#: hours either side of the preferred hour that count as "at that hour"
WINDOW = 2


@dataclass
class PreferredHours:
    by_customer: dict[int, tuple[int, int]]  # customer -> (hour 0-23, weekday 0 = Monday)
    shop_hour: int
    shop_weekday: int
    details: dict[str, Any] = field(default_factory=dict)


def local_hours(
    orders: OrderColumns, zones: dict[int, str | None], shop_zone: str
) -> tuple[np.ndarray, np.ndarray]:
    """(local hour, local weekday) of every order, in its customer's zone (else the shop's)."""
    secs = orders.ordered_at.astype("datetime64[s]").astype(np.int64)
    hour_stamp = secs // 3600
    zone_of = np.array([effective_zone(zones.get(int(c)), shop_zone) for c in np.unique(orders.customer_id)])
    ids = np.unique(orders.customer_id)
    order_zone = zone_of[np.searchsorted(ids, orders.customer_id)] if len(ids) else np.array([], dtype=str)
    offset_hours = np.zeros(len(secs), dtype=np.int64)
    for zone in np.unique(order_zone):
        mask = order_zone == zone
        info = ZoneInfo(str(zone))
        stamps, inverse = np.unique(hour_stamp[mask], return_inverse=True)
        offsets = np.array([_offset_hours(int(s) * 3600, info) for s in stamps], dtype=np.int64)
        offset_hours[mask] = offsets[inverse.reshape(-1)]
    local = hour_stamp + offset_hours
    hour = (local % 24).astype(np.int64)
    weekday = ((local // 24 + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday (3)
    return hour, weekday


def _offset_hours(epoch: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds()) // 3600


def _window_best(dist: np.ndarray) -> np.ndarray:
    """Per row of a (n, 24) distribution: the hour whose +-WINDOW circular window has the most mass."""
    windowed = sum(np.roll(dist, k, axis=1) for k in range(-WINDOW, WINDOW + 1))
    # ties (a window holding the same orders wherever it is centred) go to the hour with most orders itself
    return np.asarray(np.argmax(windowed + 1e-3 * dist, axis=1))


def fit_preferred_hours(
    customer_id: np.ndarray, hour: np.ndarray, weekday: np.ndarray, *, prior: float = PRIOR_ORDERS
) -> PreferredHours:
    """Preferred (hour, weekday) per customer from their orders' local hours and weekdays."""
    ids, inverse = np.unique(customer_id, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = len(ids)
    if n == 0:
        return PreferredHours({}, 10, 1, {"customers": 0})
    shop_h = np.bincount(hour, minlength=24).astype(np.float64)
    shop_w = np.bincount(weekday, minlength=7).astype(np.float64)
    shop_hp, shop_wp = shop_h / shop_h.sum(), shop_w / shop_w.sum()
    counts_h = np.zeros((n, 24), dtype=np.float32)
    np.add.at(counts_h, (inverse, hour), 1.0)
    counts_h += np.float32(prior) * shop_hp.astype(np.float32)
    best_h = _window_best(counts_h)
    del counts_h
    counts_w = np.zeros((n, 7), dtype=np.float32)
    np.add.at(counts_w, (inverse, weekday), 1.0)
    counts_w += np.float32(prior) * shop_wp.astype(np.float32)
    best_w = np.argmax(counts_w, axis=1)
    shop_hour = int(_window_best(shop_hp[None, :])[0])
    own = np.bincount(inverse, minlength=n)
    by_customer = {int(c): (int(h), int(w)) for c, h, w in zip(ids, best_h, best_w, strict=True)}
    details = {
        "customers": n,
        "shop_hour": shop_hour,
        "shop_mode_hour": int(np.argmax(shop_h)),
        "shop_weekday": int(np.argmax(shop_w)),
        "prior_orders": prior,
        "customers_with_own_pattern": int((own >= prior).sum()),
    }
    return PreferredHours(by_customer, shop_hour, int(np.argmax(shop_w)), details)


def has_time_of_day(orders: OrderColumns) -> bool:
    """Whether the order times carry an hour (a file of dates only puts every order at midnight)."""
    secs = orders.ordered_at.astype("datetime64[s]").astype(np.int64)
    return bool(len(secs)) and float(np.mean(secs % 86_400 != 0)) > 0.01


NO_TIME = (
    "the orders have dates but no times of day: no send hour can be learned (the campaign's hour is used)"
)


def preferred_hours(orders: OrderColumns, zones: dict[int, str | None], shop_zone: str) -> PreferredHours:
    """Preferred hours, or none at all (with a note in ``details``) when the orders have no times."""
    if not has_time_of_day(orders):
        return PreferredHours({}, 10, 1, {"note": NO_TIME})
    hour, weekday = local_hours(orders, zones, shop_zone)
    return fit_preferred_hours(orders.customer_id, hour, weekday)


def within(hours: np.ndarray, target: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Circular |hour - target| <= window."""
    d = np.abs(hours - target) % 24
    return np.asarray(np.minimum(d, 24 - d) <= window)


def evaluate_send_hour(
    train: OrderColumns,
    test: OrderColumns,
    zones: dict[int, str | None],
    shop_zone: str,
    *,
    prior: float = PRIOR_ORDERS,
) -> dict[str, Any]:
    """Share of held-out orders (of customers seen in training) within +-WINDOW h of the predicted hour,
    against the shop-wide mode hour for everyone (the baseline, measured on the same orders)."""
    if not has_time_of_day(train):
        return {"orders": 0, "note": NO_TIME}
    tr_h, tr_w = local_hours(train, zones, shop_zone)
    fit = fit_preferred_hours(train.customer_id, tr_h, tr_w, prior=prior)
    te_h, _ = local_hours(test, zones, shop_zone)
    known = np.array([int(c) in fit.by_customer for c in test.customer_id], dtype=bool)
    if not known.any():
        return {"orders": 0}
    predicted = np.array([fit.by_customer[int(c)][0] for c in test.customer_id[known]])
    mode = int(np.argmax(np.bincount(tr_h, minlength=24)))
    model_hits = float(within(te_h[known], predicted).mean())
    mode_hits = float(within(te_h[known], np.full(known.sum(), mode)).mean())
    shop_window = float(within(te_h[known], np.full(known.sum(), fit.shop_hour)).mean())
    return {
        "orders": int(known.sum()),
        "window_hours": WINDOW,
        "model": round(model_hits, 4),
        "shop_mode_hour": mode,
        "shop_mode": round(mode_hits, 4),
        "shop_best_window": round(shop_window, 4),
    }


__all__ = ["PreferredHours", "evaluate_send_hour", "fit_preferred_hours", "local_hours", "preferred_hours"]
