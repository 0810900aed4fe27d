"""``retain evaluate lifecycle``: the predictions judged on a temporal holdout, beside the baselines.

Everything is learned from the orders before ``cutoff`` and judged on ``[cutoff, cutoff + days)``:

- ``orders_90d_auc``: how well each score ranks "orders again in the window" (area under the ROC curve):
  the model's probability of at least one order in the window, the RFM score (R + F + M quintiles), recency (fewer days since the last
  order ranks higher), the drifting rule (not drifting ranks higher: no order for 1.5x the customer's
  median gap, the shop's median gap for one-order customers) and, as a graded version of that rule,
  days since the last order divided by the usual gap;
- ``orders``: mean absolute error of predicted vs actual purchase days per customer, and calibration by
  decile of the prediction (sum predicted / sum actual);
- ``spend_spearman``: rank correlation of predicted spend in the window (expected orders x spend per
  order) with the actual spend.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats

from campaigns.lifecycle.predict import predict_summary
from campaigns.lifecycle.summary import Summary, future_counts, future_spend, summarize, to_days
from campaigns.store.predictions import OrderColumns

#: consecutive orders closer than this are one shopping trip (as in the segment rules)
MIN_GAP_DAYS = 1.0
DRIFT_FACTOR = 1.5


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when one class is empty."""
    pos = positive.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rfm_score(summary: Summary) -> np.ndarray:
    """R + F + M, each a quintile score 1..5 (5 = most recent / most orders / most spend)."""
    total = np.zeros(len(summary))
    spend = summary.first_value + np.nan_to_num(summary.monetary) * summary.frequency
    for column in (summary.last_day, summary.orders.astype(np.float64), np.nan_to_num(spend)):
        n = len(column)
        pct = (stats.rankdata(column, method="min") - 1) / max(n - 1, 1)
        total += np.minimum(np.floor(5 * pct), 4) + 1
    return total


def usual_gaps(orders: OrderColumns, summary: Summary, cutoff: datetime) -> np.ndarray:
    """Per customer of ``summary``: the median gap (days) between consecutive orders at least a day
    apart, before ``cutoff``; NaN for customers with no such gap."""
    days = to_days(orders.ordered_at)
    keep = orders.ordered_at < np.datetime64(cutoff, "s")
    cid, day = orders.customer_id[keep], days[keep]
    order = np.lexsort((day, cid))
    cid, day = cid[order], day[order]
    same = cid[1:] == cid[:-1]
    gap = np.diff(day)
    ok = same & (gap >= MIN_GAP_DAYS)
    gcid, gval = cid[1:][ok], gap[ok]
    out = np.full(len(summary), np.nan)
    if len(gcid) == 0:
        return out
    order = np.lexsort((gval, gcid))
    gcid, gval = gcid[order], gval[order]
    ids, start, count = np.unique(gcid, return_index=True, return_counts=True)
    lo = start + (count - 1) // 2
    hi = start + count // 2
    med = (gval[lo] + gval[hi]) / 2
    pos = np.searchsorted(summary.customer_id, ids)
    out[pos] = med
    return out


def drifting_scores(
    orders: OrderColumns, summary: Summary, cutoff: datetime
) -> tuple[np.ndarray, np.ndarray]:
    """(rule, ratio): the drifting rule as 1 = drifting, and days since last order / usual gap."""
    gaps = usual_gaps(orders, summary, cutoff)
    shop_gap = float(np.nanmedian(gaps)) if np.isfinite(gaps).any() else 30.0
    gaps = np.where(np.isfinite(gaps), gaps, shop_gap)
    since = to_days(np.asarray([np.datetime64(cutoff, "s")]))[0] - summary.last_day
    ratio = since / np.maximum(gaps, MIN_GAP_DAYS)
    return (ratio > DRIFT_FACTOR).astype(np.float64), ratio


def decile_calibration(predicted: np.ndarray, actual: np.ndarray) -> list[dict[str, Any]]:
    """Customers sorted by prediction in ten equal groups: sums of predicted and actual, and their ratio."""
    order = np.argsort(predicted, kind="stable")
    out = []
    for k, part in enumerate(np.array_split(order, 10), start=1):
        p, a = float(predicted[part].sum()), float(actual[part].sum())
        out.append(
            {
                "decile": k,
                "customers": len(part),
                "predicted": round(p, 2),
                "actual": round(a, 2),
                "error": round((p - a) / a, 4) if a > 0 else None,
            }
        )
    return out


def evaluate_lifecycle(
    orders: OrderColumns, cutoff: datetime, *, days: int = 90, bootstrap: int = 0
) -> dict[str, Any]:
    """The evaluation report (a plain dict, see the module docstring)."""
    started = time.perf_counter()
    summary = summarize(orders, cutoff)
    pred = predict_summary(summary, bootstrap=bootstrap)
    fit_seconds = time.perf_counter() - started
    ids = summary.customer_id
    actual = future_counts(orders, ids, cutoff, days)
    bought = actual > 0
    expected = pred.bgnbd.expected_orders(float(days), summary.frequency, summary.recency, summary.age)
    rule, ratio = drifting_scores(orders, summary, cutoff)
    since = summary.age - summary.recency
    chance = pred.bgnbd.p_order_within(float(days), summary.frequency, summary.recency, summary.age)
    aucs = {
        "model": auc(chance, bought),
        "rfm": auc(rfm_score(summary), bought),
        "recency": auc(-since, bought),
        "drifting": auc(-rule, bought),
        "drifting_ratio": auc(-ratio, bought),
    }
    deciles = decile_calibration(expected, actual)
    middle = [d["error"] for d in deciles[1:9]]
    spend = None
    if pred.spend_per_order is not None:
        actual_spend = future_spend(orders, ids, cutoff, days)
        rho = stats.spearmanr(expected * pred.spend_per_order, actual_spend).statistic
        spend = round(float(rho), 4)
    baselines = [v for k, v in aucs.items() if k in ("rfm", "recency", "drifting") and v is not None]
    return {
        "cutoff": cutoff.date().isoformat(),
        "days": days,
        "customers": len(summary),
        "buyers_in_window": int(bought.sum()),
        "orders_90d_auc": {k: None if v is None else round(v, 4) for k, v in aucs.items()},
        "auc_margin_over_best_baseline": (
            round(aucs["model"] - max(baselines), 4) if aucs["model"] is not None and baselines else None
        ),
        "orders": {
            "mae": round(float(np.mean(np.abs(expected - actual))), 4),
            "predicted_total": round(float(expected.sum()), 1),
            "actual_total": float(actual.sum()),
            "deciles": deciles,
            "middle_deciles_max_error": (
                None
                if any(e is None for e in middle)
                else round(max(abs(e) for e in middle if e is not None), 4)
            ),
        },
        "spend_spearman": spend,
        "parameters": {"bgnbd": pred.bgnbd.as_dict(), "gamma_gamma": pred.details["gamma_gamma"]},
        "fit_seconds": round(fit_seconds, 2),
    }


def default_cutoff(orders: OrderColumns, days: int) -> datetime:
    """The last ``days`` of data are the holdout: the newest order's day + 1 - days."""
    last = orders.ordered_at.max().astype("datetime64[D]").astype(datetime)
    return datetime(last.year, last.month, last.day) + timedelta(days=1 - days)


__all__ = ["auc", "decile_calibration", "default_cutoff", "evaluate_lifecycle", "rfm_score"]
