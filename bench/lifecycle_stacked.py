"""Experiment (issue 19, not shipped): a discriminative "orders in the next 90 days" model trained on
stacked origins before the cutoff, judged beside MBG/NBD and the baselines on the same holdout.

For origins ``cutoff - days - k * step`` (k = 0, 1, ...; every label window ends before the cutoff, and
each origin has at least ``min_history`` days of orders before it) each customer's features at the
origin are paired with their purchase days in the ``days`` after it. scikit-learn's gradient boosting
(a classifier for "at least one purchase", a Poisson regressor for the count) and a logistic
regression are trained on all origins together and applied at the cutoff. MBG/NBD's own outputs,
fitted at each origin, are among the features. Nothing is fitted on the holdout, except by the
``--oracle`` check (5-fold cross-validation on the holdout's own labels: an upper bound for these
features, not a usable model).

Needs scikit-learn, which is not a dependency (``.venv/bin/pip install scikit-learn``)::

    python -m bench.lifecycle_stacked --db sqlite:///$PWD/var/or.db --cutoff 2011-09-09 [--oracle]
    python -m bench.lifecycle_stacked --db ... --cutoff 2011-09-09 --slice 300 --seeds 5

docs/predictions.md ("What this says, honestly") has the figures and why it was not shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from campaigns.lifecycle.evaluate import auc, decile_calibration, evaluate_lifecycle
from campaigns.lifecycle.summary import (
    Summary,
    _customer_days,
    datetime_days,
    future_counts,
    summarize,
    to_days,
)
from campaigns.store.predictions import OrderColumns
from recommender.clv import BGNBD, CLVFitError, fit_bgnbd

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FEATURES = (
    "frequency",
    "recency",
    "age",
    "days_since",
    "orders",
    "log_monetary",
    "log_first_value",
    "days_30",
    "days_90",
    "days_180",
    "spend_90",
    "gap_median",
    "gap_cv",
    "since_over_gap",
    "rate",
    "p_alive",
    "bgnbd_expected",
    "bgnbd_chance",
)


def _per_customer_gaps(
    cid: np.ndarray, day: np.ndarray, customers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(median, coefficient of variation) of the gaps between consecutive purchase days; NaN without gaps."""
    n = len(customers)
    med = np.full(n, np.nan)
    cv = np.full(n, np.nan)
    same = cid[1:] == cid[:-1]
    gcid, gval = cid[1:][same], np.diff(day)[same]
    if len(gcid) == 0:
        return med, cv
    order = np.lexsort((gval, gcid))
    gcid, gval = gcid[order], gval[order]
    ids, start, count = np.unique(gcid, return_index=True, return_counts=True)
    pos = np.searchsorted(customers, ids)
    med[pos] = (gval[start + (count - 1) // 2] + gval[start + count // 2]) / 2
    s1 = np.add.reduceat(gval, start)
    s2 = np.add.reduceat(gval * gval, start)
    mean = s1 / count
    sd = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    cv[pos] = np.where(count >= 2, sd / np.maximum(mean, 1e-9), np.nan)
    return med, cv


def features(orders: OrderColumns, summary: Summary, bg: BGNBD | None, days: int) -> np.ndarray:
    """One row per customer of ``summary`` (the columns of FEATURES), from the orders before its as_of."""
    now = datetime_days(summary.as_of)
    dayf = np.floor(to_days(orders.ordered_at))
    keep = dayf < now
    cid, day, total = orders.customer_id[keep], dayf[keep], np.nan_to_num(orders.total[keep])
    ucid, uday, _ = _customer_days(cid, day)
    customers = summary.customer_id
    pos = np.searchsorted(customers, ucid)
    n = len(customers)

    def window(w: float) -> np.ndarray:
        return np.bincount(pos[uday >= now - w], minlength=n).astype(np.float64)

    recent = day >= now - 90
    spend_90 = np.bincount(np.searchsorted(customers, cid[recent]), weights=total[recent], minlength=n)
    med, cv = _per_customer_gaps(ucid, uday, customers)
    x, tx, T = summary.frequency, summary.recency, summary.age
    since = T - tx
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = [
            x,
            tx,
            T,
            since,
            summary.orders.astype(np.float64),
            np.log1p(np.maximum(summary.monetary, 0.0)),
            np.log1p(np.maximum(summary.first_value, 0.0)),
            window(30),
            window(90),
            window(180),
            np.log1p(np.maximum(spend_90, 0.0)),
            med,
            cv,
            since / np.maximum(med, 1.0),
            (x + 1) / np.maximum(T, 1.0),
        ]
    if bg is None:
        cols += [np.full(n, np.nan)] * 3
    else:
        cols += [
            bg.p_alive(x, tx, T),
            bg.expected_orders(float(days), x, tx, T),
            bg.p_order_within(float(days), x, tx, T),
        ]
    return np.column_stack(cols)


def line_features(lines: Any, summary: Summary) -> np.ndarray:
    """Basket columns from the purchase lines before the summary's as_of: log distinct products, lines
    per order, mean log quantity per line, mean log unit price, mean log popularity of the products."""
    keep = lines.ordered_at < np.datetime64(summary.as_of, "s")
    cid, pid = lines.customer_id[keep], lines.product_id[keep]
    qty, price = lines.quantity[keep], lines.unit_price[keep]
    n = len(summary)
    pos = np.searchsorted(summary.customer_id, cid)
    ok = (pos < n) & (summary.customer_id[np.minimum(pos, n - 1)] == cid)
    pos, pid, qty, price = pos[ok], pid[ok], qty[ok], price[ok]
    count = np.maximum(np.bincount(pos, minlength=n).astype(np.float64), 1.0)
    pairs = np.unique(pos.astype(np.int64) * (int(pid.max(initial=0)) + 1) + pid)
    distinct = np.bincount(pairs // (int(pid.max(initial=0)) + 1), minlength=n).astype(np.float64)
    popularity = np.bincount(pid)[pid].astype(np.float64)

    def mean(v: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.bincount(pos, weights=v, minlength=n) / count
        return out

    return np.column_stack(
        [
            np.log1p(distinct),
            count / np.maximum(summary.orders, 1),
            mean(np.log1p(np.maximum(qty, 0.0))),
            mean(np.log1p(np.nan_to_num(np.maximum(price, 0.0)))),
            mean(np.log1p(popularity)),
        ]
    )


def all_features(
    orders: OrderColumns, lines: Any, summary: Summary, bg: BGNBD | None, days: int
) -> np.ndarray:
    X = features(orders, summary, bg, days)
    return X if lines is None else np.hstack([X, line_features(lines, summary)])


def fit_origin_bgnbd(summary: Summary, penalizer: float) -> BGNBD | None:
    try:
        return fit_bgnbd(summary.frequency, summary.recency, summary.age, penalizer=penalizer, modified=True)
    except CLVFitError:
        return None


@dataclass
class TrainingSet:
    X: np.ndarray
    y: np.ndarray
    origins: list[str]


def training_set(
    orders: OrderColumns,
    as_of: datetime,
    *,
    days: int = 90,
    step: int = 30,
    max_origins: int = 6,
    min_history: int = 60,
    penalizer: float = 0.001,
    lines: Any = None,
) -> TrainingSet:
    """Stacked (features at origin, purchase days in the ``days`` after it) for origins before ``as_of``."""
    first = orders.ordered_at.min().astype("datetime64[D]").astype(datetime)
    first = datetime(first.year, first.month, first.day)
    Xs, ys, names = [], [], []
    for k in range(max_origins):
        origin = as_of - timedelta(days=days + k * step)
        if (origin - first).days < min_history:
            break
        s = summarize(orders, origin)
        if len(s) == 0:
            break
        bg = fit_origin_bgnbd(s, penalizer)
        Xs.append(all_features(orders, lines, s, bg, days))
        ys.append(future_counts(orders, s.customer_id, origin, days))
        names.append(origin.date().isoformat())
    if not Xs:
        return TrainingSet(np.empty((0, len(FEATURES) + (0 if lines is None else 5))), np.empty(0), [])
    return TrainingSet(np.vstack(Xs), np.concatenate(ys), names)


def _models(seed: int = 0) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, PoissonRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hgb: dict[str, Any] = {
        "max_iter": 150,
        "learning_rate": 0.04,
        "max_leaf_nodes": 8,
        "min_samples_leaf": 50,
        "early_stopping": False,
        "random_state": seed,
    }
    return {
        "hgb": HistGradientBoostingClassifier(**hgb),
        "logistic": make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=3000)),
        "hgb_poisson": HistGradientBoostingRegressor(loss="poisson", **hgb),
        "glm_poisson": make_pipeline(
            SimpleImputer(), StandardScaler(), PoissonRegressor(alpha=1e-3, max_iter=1000)
        ),
    }


def _usable(X: np.ndarray) -> np.ndarray:
    """Columns with at least two distinct known values (no prices: the spend columns are all NaN)."""
    keep = []
    for j in range(X.shape[1]):
        col = X[:, j][np.isfinite(X[:, j])]
        keep.append(len(col) > 0 and np.unique(col).size > 1)
    return np.asarray(keep)


def judge(
    orders: OrderColumns,
    cutoff: datetime,
    *,
    days: int = 90,
    step: int = 30,
    seed: int = 0,
    lines: Any = None,
) -> dict[str, Any]:
    """AUC and decile calibration of the stacked models next to MBG/NBD and the baselines."""
    base = evaluate_lifecycle(orders, cutoff, days=days)
    started = time.perf_counter()
    summary = summarize(orders, cutoff)
    pen = 0.01 if len(summary) < 500 else 0.001
    train = training_set(orders, cutoff, days=days, step=step, penalizer=pen, lines=lines)
    X = all_features(orders, lines, summary, fit_origin_bgnbd(summary, pen), days)
    actual = future_counts(orders, summary.customer_id, cutoff, days)
    bought = actual > 0
    out: dict[str, Any] = {
        "cutoff": cutoff.date().isoformat(),
        "customers": len(summary),
        "training_rows": len(train.y),
        "origins": train.origins,
        "auc": dict(base["orders_90d_auc"]),
        "middle_deciles": {"bgnbd": [d["error"] for d in base["orders"]["deciles"][1:9]]},
        "totals": {"actual": base["orders"]["actual_total"], "bgnbd": base["orders"]["predicted_total"]},
    }
    out["auc"]["bgnbd"] = out["auc"].pop("model")
    if len(train.y) == 0 or len(np.unique(train.y > 0)) < 2:
        out["note"] = "too few stacked examples: nothing to train"
        return out
    cols = _usable(train.X)
    models = _models(seed)
    for name, model in models.items():
        poisson = name.endswith("poisson")
        model.fit(train.X[:, cols], train.y if poisson else train.y > 0)
        score = model.predict(X[:, cols]) if poisson else model.predict_proba(X[:, cols])[:, 1]
        out["auc"][name] = round(float(auc(score, bought) or 0.0), 4)
        if poisson:
            out["middle_deciles"][name] = [d["error"] for d in decile_calibration(score, actual)[1:9]]
            out["totals"][name] = round(float(score.sum()), 1)
    # control: the same classifier on shuffled feature rows (no link to the labels) should be near 0.5
    shuffled = train.X[:, cols].copy()
    np.random.default_rng(seed).shuffle(shuffled)
    control = _models(seed)["hgb"].fit(shuffled, train.y > 0)
    out["auc"]["hgb_shuffled_rows"] = round(
        float(auc(control.predict_proba(X[:, cols])[:, 1], bought) or 0.0), 4
    )
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def oracle(orders: OrderColumns, cutoff: datetime, *, days: int = 90, lines: Any = None) -> dict[str, float]:
    """5-fold cross-validation on the holdout's own labels: what these features could reach at best."""
    from sklearn.model_selection import StratifiedKFold

    summary = summarize(orders, cutoff)
    X = all_features(orders, lines, summary, fit_origin_bgnbd(summary, 0.001), days)
    X = X[:, _usable(X)]
    bought = future_counts(orders, summary.customer_id, cutoff, days) > 0
    out = {}
    for name in ("hgb", "logistic"):
        score = np.zeros(len(bought))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(X, bought):
            score[te] = _models()[name].fit(X[tr], bought[tr]).predict_proba(X[te])[:, 1]
        out[name] = round(float(auc(score, bought) or 0.0), 4)
    return out


def _slice(orders: OrderColumns, cutoff: datetime, n: int, seed: int) -> OrderColumns:
    known = np.unique(orders.customer_id[orders.ordered_at < np.datetime64(cutoff, "s")])
    pick = np.random.default_rng(seed).choice(known, min(n, len(known)), replace=False)
    keep = np.isin(orders.customer_id, pick)
    return OrderColumns(orders.customer_id[keep], orders.ordered_at[keep], orders.total[keep])


def main(argv: list[str] | None = None) -> None:
    from campaigns.store import Store

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--db", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--step", type=int, default=30)
    parser.add_argument("--slice", type=int, default=0, help="random customers (seen before the cutoff)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--lines", action="store_true", help="add basket features from the order lines")
    args = parser.parse_args(argv)
    store = Store.open(args.db)
    orders = store.order_columns()
    cutoff = datetime.fromisoformat(args.cutoff)
    lines = store.purchase_columns() if args.lines else None
    for seed in range(args.seeds):
        part = _slice(orders, cutoff, args.slice, seed) if args.slice else orders
        report = judge(part, cutoff, step=args.step, seed=seed, lines=lines)
        report["basket_features"] = bool(args.lines)
        if args.slice:
            report["slice_seed"] = seed
        if args.oracle:
            report["oracle_cv_on_holdout"] = oracle(part, cutoff, lines=lines)
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
