"""Campaign attribution, holdout uplift and the dashboard's SVG charts, with known answers."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest

from campaigns.analytics import (
    Cohort,
    attribute_orders,
    campaign_impact,
    repeat_rate_series,
    uplift_interval,
)
from campaigns.models import Delivery
from campaigns.store.engagement import Touch
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from campaigns.web import charts

T0 = datetime(2024, 1, 10, 9, 0)


def test_uplift_interval_matches_the_wald_formula() -> None:
    u = uplift_interval(1000, 120, 1000, 100)
    assert u.uplift == pytest.approx(0.02)
    se = math.sqrt(0.12 * 0.88 / 1000 + 0.10 * 0.90 / 1000)
    assert u.ci_low == pytest.approx(0.02 - 1.959964 * se, abs=1e-6)
    assert u.ci_high == pytest.approx(0.02 + 1.959964 * se, abs=1e-6)
    assert not u.significant  # the interval straddles zero
    assert uplift_interval(1000, 300, 1000, 100).significant


def test_uplift_needs_both_groups_and_sane_counts() -> None:
    u = uplift_interval(50, 5, 0, 0)
    assert (u.treated_rate, u.control_rate, u.uplift, u.ci_low) == (0.1, None, None, None)
    with pytest.raises(ValueError):
        uplift_interval(10, 11, 10, 1)


def test_last_touch_attribution_credits_the_latest_email_within_the_window() -> None:
    touches = [
        Touch("weekly", 1, "sent", T0),
        Touch("winback", 1, "sent", T0 + timedelta(days=2)),
        Touch("weekly", 2, "sent", T0),
        Touch("weekly", 3, "holdout", T0),  # never mailed: earns nothing
    ]
    orders = [
        (10, 1, T0 + timedelta(days=3), 30.0),  # winback (latest touch before the order)
        (11, 1, T0 + timedelta(days=1), 5.0),  # weekly (winback had not been sent yet)
        (12, 2, T0 + timedelta(days=8), 99.0),  # outside the 7-day window
        (13, 2, T0 - timedelta(days=1), 7.0),  # before any email
        (14, 3, T0 + timedelta(days=1), 50.0),  # holdout customer
    ]
    assert attribute_orders(touches, orders, days=7) == {"winback": (1, 30.0), "weekly": (1, 5.0)}
    assert attribute_orders(touches, orders, days=10) == {"winback": (1, 30.0), "weekly": (2, 104.0)}


def test_repeat_rate_series_is_cumulative_by_month() -> None:
    orders = [
        (1, 1, datetime(2024, 1, 3)),
        (2, 2, datetime(2024, 1, 9)),
        (3, 1, datetime(2024, 1, 20)),  # customer 1 repeats in January
        (4, 3, datetime(2024, 2, 2)),
        (5, 2, datetime(2024, 3, 5)),  # customer 2 repeats in March
    ]
    assert repeat_rate_series(orders) == [("2024-01", 0.5), ("2024-02", 0.3333), ("2024-03", 0.6667)]


def _shop_with_deliveries(store: Any) -> None:
    batch = ImportBatch(source="generic")
    batch.products["P"] = ProductIn("P", "Cup", 10.0, "GBP")
    for i in range(1, 7):
        batch.customers[f"c{i}"] = CustomerIn(f"c{i}", f"c{i}@example.test")
    # customers 1, 2 (mailed) and 5 (holdout) order 2 days after the send; 3 orders 20 days after
    for key, days in (("c1", 2), ("c2", 2), ("c3", 20), ("c5", 2)):
        batch.orders[f"o-{key}"] = OrderIn(
            f"o-{key}", key, T0 + timedelta(days=days), "GBP", [("P", 2, 10.0)]
        )
    store.write_import(batch)
    ids = {c.external_id: c.id for group in store.iter_customers() for c in group}
    run = store.start_run("weekly", "k1", owner=None)
    rows = []
    for key, status, reason in (
        ("c1", "sent", None),
        ("c2", "sent", None),
        ("c3", "sent", None),
        ("c4", "skipped", "no_consent"),
        ("c5", "holdout", None),
        ("c6", "holdout", None),
    ):
        rows.append(
            {
                "run_id": run.id,
                "campaign": "weekly",
                "customer_id": ids[key],
                "status": status,
                "reason": reason,
                "attempts": 1,
                "is_marketing": True,
                "created_at": T0,
                "updated_at": T0,
                "sent_at": T0 if status == "sent" else None,
            }
        )
    with store.transaction() as conn:
        conn.execute(Delivery.__table__.insert(), rows)


def test_campaign_impact_from_the_ledger(store: Any) -> None:
    _shop_with_deliveries(store)
    [impact] = campaign_impact(store, days=7)
    assert (impact.campaign, impact.sent, impact.holdout, impact.failed) == ("weekly", 3, 2, 0)
    assert impact.skipped == {"no_consent": 1}
    assert (impact.attributed_orders, impact.attributed_revenue) == (2, 40.0)
    u = impact.uplift
    assert (u.treated, u.treated_converted, u.control, u.control_converted) == (3, 2, 2, 1)
    assert u.uplift == pytest.approx(2 / 3 - 1 / 2)
    wide = campaign_impact(store, days=30)[0]
    assert (wide.attributed_orders, wide.attributed_revenue) == (3, 60.0)


def test_campaign_impact_refuses_a_zero_window(sqlite_store: Any) -> None:
    with pytest.raises(ValueError):
        campaign_impact(sqlite_store, days=0)


def test_line_chart_draws_one_point_per_value_and_escapes_labels() -> None:
    svg = str(charts.line_chart("demo", [("2024-01", 0.1), ("2024-02", None), ("<b>", 0.3)], title="A & B"))
    assert svg.startswith('<svg data-chart="demo"')
    assert svg.count("data-point") == 2
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "A &amp; B" in svg
    assert "no data yet" in str(charts.line_chart("empty", [], title="x"))


def test_cohort_heatmap_has_a_cell_per_month_after_the_first() -> None:
    cohorts = [Cohort("2024-01", 10, [1.0, 0.3, 0.2]), Cohort("2024-02", 5, [1.0, 0.4])]
    svg = str(charts.cohort_heatmap(cohorts))
    assert svg.count("data-cell") == 3
    assert "2024-01 +1: 30.0%" in svg


def test_uplift_plot_marks_each_campaign_with_an_interval() -> None:
    svg = str(
        charts.uplift_plot(
            [("weekly", uplift_interval(1000, 300, 1000, 100)), ("none", uplift_interval(5, 1, 0, 0))]
        )
    )
    assert svg.count("data-point") == 1 and "weekly" in svg and "none" not in svg
