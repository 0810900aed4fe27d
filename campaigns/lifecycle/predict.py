"""Per-customer lifecycle predictions: fit BG/NBD + Gamma-Gamma on the orders before ``as_of`` and predict.

::

    result = predict_customers(store.order_columns(until=as_of), as_of)
    result.records            # one PredictionRecord per customer with an order
    result.details            # fitted parameters, intervals, what the shop size allows us to say

Intervals are parameter uncertainty: the models are refitted on ``bootstrap`` resamples of the customers
and each customer's prediction is taken under every refit; the 10th and 90th percentiles are stored (an
80% interval). Small shops get wide intervals, which is the honest answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from campaigns.lifecycle.summary import Summary, summarize
from campaigns.store.predictions import OrderColumns, PredictionFitRecord, PredictionRecord
from recommender.clv import BGNBD, CLVFitError, GammaGamma, fit_bgnbd, fit_gamma_gamma

#: bootstrap refits for the intervals (fewer for very large shops: the intervals are then narrow anyway)
BOOTSTRAP = 20
#: above this many customers the intervals come from fewer refits
LARGE_SHOP = 200_000
#: below this many customers the fit is pulled gently toward moderate parameters (see docs/predictions.md)
SMALL_SHOP = 500
CLV_DAYS = 365


@dataclass
class Predictions:
    summary: Summary
    bgnbd: BGNBD
    gamma_gamma: GammaGamma | None
    p_alive: np.ndarray
    orders_30d: np.ndarray
    orders_90d: np.ndarray
    orders_90d_interval: tuple[np.ndarray, np.ndarray] | None
    next_order_days: np.ndarray
    spend_per_order: np.ndarray | None
    clv_12m: np.ndarray | None
    clv_interval: tuple[np.ndarray, np.ndarray] | None
    details: dict[str, Any] = field(default_factory=dict)

    def records(self, hours: dict[int, tuple[int, int]] | None = None) -> list[PredictionRecord]:
        s = self.summary
        out = []
        for i, cid in enumerate(s.customer_id.tolist()):
            lo_hi = self.orders_90d_interval
            clv_lo_hi = self.clv_interval
            hour = (hours or {}).get(cid)
            out.append(
                PredictionRecord(
                    customer_id=cid,
                    as_of=s.as_of,
                    p_alive=float(self.p_alive[i]),
                    expected_orders_30d=float(self.orders_30d[i]),
                    expected_orders_90d=float(self.orders_90d[i]),
                    expected_orders_90d_low=None if lo_hi is None else float(lo_hi[0][i]),
                    expected_orders_90d_high=None if lo_hi is None else float(lo_hi[1][i]),
                    next_order_at=s.as_of + timedelta(days=float(min(self.next_order_days[i], 3650))),
                    spend_per_order=_opt(self.spend_per_order, i),
                    clv_12m=_opt(self.clv_12m, i),
                    clv_12m_low=None if clv_lo_hi is None else _opt(clv_lo_hi[0], i),
                    clv_12m_high=None if clv_lo_hi is None else _opt(clv_lo_hi[1], i),
                    preferred_hour=None if hour is None else hour[0],
                    preferred_weekday=None if hour is None else hour[1],
                )
            )
        return out

    def fit_record(self, created_at: datetime) -> PredictionFitRecord:
        return PredictionFitRecord(created_at, self.summary.as_of, len(self.summary), self.details)


def _opt(values: np.ndarray | None, i: int) -> float | None:
    if values is None or not np.isfinite(values[i]):
        return None
    return float(values[i])


def _penalizer(customers: int) -> float:
    # the unpenalized optimum often sits at a -> 0 (nobody ever drops out: Online Retail does this); a
    # light pull keeps dropout estimable, a stronger one steadies small shops (docs/predictions.md)
    return 0.01 if customers < SMALL_SHOP else 0.001


def predict_summary(summary: Summary, *, bootstrap: int | None = None, seed: int = 0) -> Predictions:
    """Fit and predict on a summary; raises CLVFitError when nobody has ordered twice."""
    started = time.perf_counter()
    s = summary
    n = len(s)
    x, tx, T = s.frequency, s.recency, s.age
    pen = _penalizer(n)
    bg = fit_bgnbd(x, tx, T, penalizer=pen, modified=True)
    p_alive = bg.p_alive(x, tx, T)
    orders_30 = bg.expected_orders(30.0, x, tx, T)
    orders_90 = bg.expected_orders(90.0, x, tx, T)
    orders_365 = bg.expected_orders(float(CLV_DAYS), x, tx, T)
    gg: GammaGamma | None
    try:
        gg = fit_gamma_gamma(x, s.monetary, penalizer=pen)
    except CLVFitError:
        gg = None
    spend = clv = None
    if gg is not None:
        # one-time buyers and unknown prices: the population mean spend per order
        known = np.where(np.isfinite(s.monetary), s.monetary, 0.0)
        spend = gg.expected_spend(np.where(np.isfinite(s.monetary), x, 0.0), known)
        clv = orders_365 * spend
    boots = BOOTSTRAP if bootstrap is None else bootstrap
    if bootstrap is None and n > LARGE_SHOP:
        boots = 5
    interval = clv_interval = None
    failures = 0
    if boots > 0:
        rng = np.random.default_rng(seed)
        samples_90, samples_clv = [], []
        for _ in range(boots):
            pick = rng.integers(0, n, n)
            try:
                b_bg = fit_bgnbd(x[pick], tx[pick], T[pick], penalizer=pen, modified=True, start=bg)
            except CLVFitError:
                failures += 1
                continue
            b90 = b_bg.expected_orders(90.0, x, tx, T)
            samples_90.append(b90)
            if gg is not None:
                try:
                    b_gg = fit_gamma_gamma(x[pick], s.monetary[pick], penalizer=pen, start=gg)
                except CLVFitError:
                    b_gg = gg
                known = np.where(np.isfinite(s.monetary), s.monetary, 0.0)
                b_spend = b_gg.expected_spend(np.where(np.isfinite(s.monetary), x, 0.0), known)
                samples_clv.append(b_bg.expected_orders(float(CLV_DAYS), x, tx, T) * b_spend)
        if len(samples_90) >= 3:
            stack = np.vstack(samples_90)
            interval = (np.percentile(stack, 10, axis=0), np.percentile(stack, 90, axis=0))
            if samples_clv:
                cstack = np.vstack(samples_clv)
                clv_interval = (np.percentile(cstack, 10, axis=0), np.percentile(cstack, 90, axis=0))
    repeaters = int((x > 0).sum())
    details: dict[str, Any] = {
        "model": "MBG/NBD + Gamma-Gamma (maximum likelihood, scipy)",
        "bgnbd": bg.as_dict(),
        "gamma_gamma": None if gg is None else gg.as_dict(),
        "customers": n,
        "repeat_customers": repeaters,
        "penalizer": pen,
        "bootstrap_refits": boots - failures if boots else 0,
        "seconds": round(time.perf_counter() - started, 2),
        "uncertainty": uncertainty_note(n, repeaters, interval, orders_90),
    }
    return Predictions(
        summary=s,
        bgnbd=bg,
        gamma_gamma=gg,
        p_alive=p_alive,
        orders_30d=orders_30,
        orders_90d=orders_90,
        orders_90d_interval=interval,
        next_order_days=bg.days_to_next_order(x, T),
        spend_per_order=spend,
        clv_12m=clv,
        clv_interval=clv_interval,
        details=details,
    )


def uncertainty_note(
    customers: int, repeaters: int, interval: tuple[np.ndarray, np.ndarray] | None, orders_90: np.ndarray
) -> str:
    """One sentence a shop owner can read: how sure the predictions are for a shop of this size."""
    if interval is None:
        return f"{customers} customers ({repeaters} ordered twice or more): no interval could be computed."
    width = float(np.median(interval[1] - interval[0]))
    typical = float(np.median(orders_90))
    rel = width / typical if typical > 0 else float("inf")
    level = "precise" if rel < 0.15 else "fairly precise" if rel < 0.4 else "rough"
    return (
        f"{customers} customers ({repeaters} ordered twice or more): predictions are {level}; the typical "
        f"80% interval of expected orders in 90 days is {width:.2f} wide around a typical value of {typical:.2f}."
    )


def predict_customers(orders: OrderColumns, as_of: datetime, **kwargs: Any) -> Predictions:
    """Summarize the orders before ``as_of`` and predict; CLVFitError when nothing can be learned."""
    summary = summarize(orders, as_of)
    if len(summary) == 0:
        raise CLVFitError("no orders before the prediction date")
    return predict_summary(summary, **kwargs)


__all__ = ["Predictions", "predict_customers", "predict_summary", "uncertainty_note"]
