"""The stacked-origins experiment (bench/lifecycle_stacked.py, issue 19): its training set must use only
orders before the cutoff, and its per-customer features must count what they say. (The models themselves
need scikit-learn, which is not a dependency; the figures are in docs/predictions.md.)"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from bench.lifecycle_stacked import FEATURES, features, training_set
from campaigns.lifecycle.summary import summarize
from campaigns.store.predictions import OrderColumns

START = datetime(2021, 1, 1)


def simulated(customers: int = 300, days: int = 400, seed: int = 0) -> OrderColumns:
    """Customers ordering at their own Poisson rate until they leave (a few have left early)."""
    rng = np.random.default_rng(seed)
    cid, at = [], []
    for c in range(1, customers + 1):
        rate = rng.gamma(0.8, 1 / 25)
        first = rng.integers(0, days // 2)
        leave = first + rng.exponential(250)
        day = float(first)
        while day < min(days, leave):
            cid.append(c)
            at.append(np.datetime64(START + timedelta(days=day, hours=10), "s"))
            day += max(rng.exponential(1 / rate), 1.0)
    order = np.argsort(np.asarray(at))
    return OrderColumns(
        np.asarray(cid, np.int64)[order], np.asarray(at)[order], rng.uniform(5, 50, len(cid))[order]
    )


def test_training_set_never_looks_past_the_cutoff() -> None:
    orders = simulated()
    cutoff = START + timedelta(days=330)
    before = orders.ordered_at < np.datetime64(cutoff, "s")
    past_only = OrderColumns(orders.customer_id[before], orders.ordered_at[before], orders.total[before])
    full = training_set(orders, cutoff, step=30)
    cut = training_set(past_only, cutoff, step=30)
    assert full.origins == cut.origins and len(full.origins) >= 3
    assert full.origins[0] == (cutoff - timedelta(days=90)).date().isoformat()
    np.testing.assert_array_equal(full.y, cut.y)
    np.testing.assert_array_equal(np.isnan(full.X), np.isnan(cut.X))
    np.testing.assert_allclose(np.nan_to_num(full.X), np.nan_to_num(cut.X))
    # the labels are real: some customers ordered after the origins, some did not
    assert 0 < (full.y > 0).mean() < 1


def test_window_counts_and_gaps_on_a_hand_made_history() -> None:
    days = [0, 10, 30, 100, 170, 175]  # one customer's purchase days; two orders on day 175
    at = [np.datetime64(START + timedelta(days=d, hours=9), "s") for d in days]
    at.append(np.datetime64(START + timedelta(days=175, hours=15), "s"))
    orders = OrderColumns(np.ones(len(at), np.int64), np.asarray(at), np.full(len(at), 10.0))
    summary = summarize(orders, START + timedelta(days=180))
    row = dict(zip(FEATURES, features(orders, summary, None, 90)[0], strict=True))
    assert row["frequency"] == 5 and row["orders"] == 7 and row["days_since"] == 5
    # as of day 180: purchase days 170, 175 in the last 30; 100, 170, 175 in the last 90; all in 180
    assert row["days_30"] == 2 and row["days_90"] == 3 and row["days_180"] == 6
    # gaps 10, 20, 70, 70, 5: median 20
    assert row["gap_median"] == 20
    assert np.isnan(row["p_alive"])  # no MBG/NBD fit given
