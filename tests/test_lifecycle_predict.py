"""Per-customer summaries and predictions from order columns: known summaries, small shops (~100
customers) get predictions with wider stated intervals instead of a refusal."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from campaigns.lifecycle.evaluate import auc, decile_calibration, rfm_score
from campaigns.lifecycle.predict import predict_customers
from campaigns.lifecycle.summary import future_counts, summarize
from campaigns.store.predictions import OrderColumns
from tests.test_clv import simulate

AS_OF = datetime(2024, 1, 1)


def orders(rows: list[tuple[int, str, float]]) -> OrderColumns:
    return OrderColumns(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype="datetime64[s]"),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def test_summary_counts_purchase_days() -> None:
    s = summarize(
        orders(
            [
                (7, "2023-12-01T10:00", 10.0),
                (7, "2023-12-01T15:00", 5.0),  # same day: one purchase of 15
                (7, "2023-12-11T09:00", 30.0),
                (7, "2023-12-21T09:00", float("nan")),  # unknown price
                (3, "2023-11-02T08:00", 8.0),
                (3, "2024-01-05T08:00", 8.0),  # after as_of: not seen
            ]
        ),
        AS_OF,
    )
    assert s.customer_id.tolist() == [3, 7]
    assert s.frequency.tolist() == [0.0, 2.0]
    assert s.recency.tolist() == [0.0, 20.0]
    assert s.age.tolist() == [60.0, 31.0]
    assert s.orders.tolist() == [1, 4]
    assert np.isnan(s.monetary[0]) and np.isnan(s.monetary[1])  # none repeat / one unknown repeat
    assert s.first_value.tolist() == [8.0, 15.0]
    truth = future_counts(
        orders([(3, "2024-01-05T08:00", 8.0), (3, "2024-01-05T18:00", 8.0), (9, "2024-01-06T08:00", 1.0)]),
        s.customer_id,
        AS_OF,
        90,
    )
    assert truth.tolist() == [1.0, 0.0]


def simulated_orders(n: int, seed: int) -> tuple[OrderColumns, np.ndarray]:
    """BG/NBD customers turned into dated orders (one per purchase day), and their next-90-day counts."""
    x, tx, T, future = simulate(n, r=0.8, alpha=60.0, a=0.9, b=3.0, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    as_of = np.datetime64(AS_OF, "s")
    for i in range(n):
        first = as_of - np.timedelta64(int(T[i] * 86_400), "s")
        days = np.r_[
            0.0, np.sort(rng.uniform(0, tx[i], int(x[i]) - 1)) if x[i] > 1 else [], tx[i] if x[i] else []
        ]
        for d in np.unique(np.floor(days)):
            rows.append(
                (i + 1, first + np.timedelta64(int(d * 86_400) + 36_000, "s"), float(rng.gamma(4, 5)))
            )
    rows.sort(key=lambda r: r[1])
    return orders(rows), future


def test_a_small_shop_gets_predictions_with_their_uncertainty() -> None:
    small, future = simulated_orders(100, seed=5)
    result = predict_customers(small, AS_OF)
    assert len(result.summary) == 100
    assert result.orders_90d_interval is not None and result.details["bootstrap_refits"] >= 10
    low, high = result.orders_90d_interval
    assert np.all(low <= high) and float(np.median(high - low)) > 0
    assert "100 customers" in result.details["uncertainty"]
    assert result.details["penalizer"] > 0.001  # small shops are steadied
    # it ranks real future buyers above non-buyers even at this size
    assert auc(result.p_alive * result.orders_90d, future > 0) > 0.6
    big, _ = simulated_orders(2000, seed=6)
    wide = float(np.median(high - low) / np.median(result.orders_90d))
    b = predict_customers(big, AS_OF)
    narrow = float(np.median(b.orders_90d_interval[1] - b.orders_90d_interval[0]) / np.median(b.orders_90d))
    assert wide > narrow


def test_rfm_and_calibration_helpers() -> None:
    s = summarize(
        orders([(1, "2023-12-30T10:00", 50.0), (2, "2023-06-01T10:00", 5.0), (2, "2023-07-01T10:00", 5.0)]),
        AS_OF,
    )
    score = rfm_score(s)
    assert score.shape == (2,) and score.min() >= 3 and score.max() <= 15
    assert auc(np.array([0.9, 0.1, 0.5]), np.array([True, False, False])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert auc(np.array([1.0]), np.array([True])) is None
    deciles = decile_calibration(np.arange(20.0), np.arange(20.0) * 2)
    assert len(deciles) == 10 and deciles[-1]["error"] == pytest.approx(-0.5)


def test_without_intervals_the_rows_say_none() -> None:
    shop, _ = simulated_orders(150, seed=8)
    result = predict_customers(shop, AS_OF, bootstrap=0)
    assert result.orders_90d_interval is None and result.details["bootstrap_refits"] == 0
    rows = result.records({1: (19, 4)})
    assert all(r.expected_orders_90d_low is None and r.clv_12m_low is None for r in rows)
    assert rows[0].preferred_hour == 19 and rows[1].preferred_hour is None
    assert "no interval" in result.details["uncertainty"]
