"""The replenishment kind and its intervals: a tiny shop with known rhythms (SQLite and PostgreSQL), the
learned intervals' shrinkage, the holdout replay, and the campaign sending once per cycle."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from campaigns.definition import find_campaign, load_campaign
from campaigns.errors import TemplateError
from campaigns.lifecycle.replenish import _replay, cycles, due_now
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from recommender.repurchase import fit_intervals, repeat_gaps

from .synthetic import ROOT, shop_settings

NOW = datetime(2024, 6, 1, 9, 0)
#: customer -> [(days before NOW, sku)]
ORDERS = {
    "due": [(30, "BEANS"), (20, "BEANS"), (10, "BEANS"), (10, "MUG")],  # every 10 days: due now
    "later": [(60, "BEANS"), (5, "BEANS")],  # re-bought 5 days ago: not due for weeks
    "once": [(10, "BEANS")],  # never re-bought: never reminded
    **{f"r{i}": [(100, "BEANS"), (90, "BEANS"), (80, "BEANS")] for i in range(4)},  # the product's rhythm
}


def shop_batch() -> ImportBatch:
    batch = ImportBatch(source="generic")
    for key in ORDERS:
        batch.customers[key] = CustomerIn(key, email=f"{key}@shop.example.com", marketing_consent=True)
    batch.products["BEANS"] = ProductIn("BEANS", "Coffee beans", 9.0, "GBP", category="coffee")
    batch.products["MUG"] = ProductIn("MUG", "Mug", 6.0, "GBP", category="kitchen")
    for key, orders in ORDERS.items():
        by_day: dict[float, list[tuple[str, int, float]]] = {}
        for days, sku in orders:
            by_day.setdefault(days, []).append((sku, 1, 9.0))
        for days, lines in by_day.items():
            ext = f"{key}-{days}"
            batch.orders[ext] = OrderIn(ext, key, NOW - timedelta(days=days), "GBP", lines)
    return batch


@pytest.fixture
def shop(store: Any) -> Any:
    store.write_import(shop_batch())
    return store


def test_who_is_due_now(shop: Any) -> None:
    lines = shop.purchase_columns()
    categories = {p.id: p.category for p in shop.all_products()}
    ids = {c.external_id: c.id for batch in shop.iter_customers() for c in batch}
    due = due_now(lines, categories, NOW)
    assert [c for c, _, _, _ in due] == [ids["due"]]
    _, product, order, interval = due[0]
    assert 10.0 < interval < 12.0  # their 10 days, pulled a little toward the product's (one 55-day gap)
    assert shop.orders_by_ids([order])[order].ordered_at == NOW - timedelta(days=10)
    # seven days on, still in the window; three weeks on, the window has closed
    assert due_now(lines, categories, NOW + timedelta(days=6))
    assert not due_now(lines, categories, NOW + timedelta(days=21), window_days=7)
    assert {c.customer for c in cycles(lines)} == {ids[k] for k in ORDERS if k != "once"}


def test_the_campaign_reminds_once_per_cycle(shop: Any, tmp_path: Path) -> None:
    settings = shop_settings(tmp_path, holdout_share=0.0, as_of=NOW.isoformat())
    definition = find_campaign(ROOT / "templates", "restock-reminder")
    memory.clear()
    summary = run_campaign(shop, settings, definition, sender="memory://", run_key="day1", now=NOW)
    assert summary.sent == 1
    [message] = memory.outbox()
    assert message.rcpt_to == "due@shop.example.com"
    body = message.data.decode("utf-8", "replace")
    assert "time to restock" in body and "Coffee beans" in body
    memory.clear()
    again = run_campaign(
        shop, settings, definition, sender="memory://", run_key="day2", now=NOW + timedelta(days=1)
    )
    assert again.sent == 0 and memory.outbox() == []


def test_sparse_products_are_shrunk_toward_their_category() -> None:
    # product 1: one gap of 40 days; product 2: many gaps of 10 days; both in "coffee"
    customer = np.array([1, 1] + [c for c in range(2, 22) for _ in range(2)])
    product = np.array([1, 1] + [2] * 40)
    day = np.array([0.0, 40.0] + [d for _ in range(20) for d in (0.0, 10.0)])
    intervals = fit_intervals(customer, product, day, {1: "coffee", 2: "coffee"})
    assert intervals.product_gaps == {1: 1, 2: 20}
    assert 10.0 < intervals.product_days(1) < 20.0  # one gap of 40 barely moves it off the category's ~11
    assert intervals.product_days(2) == pytest.approx(10.0, rel=0.15)
    assert intervals.product_days(3) == pytest.approx(float(np.exp(intervals.shop_log)))  # never re-bought
    # a customer's own rhythm, shrunk toward the product's
    assert intervals.customer_days(2, np.array([30.0] * 20)) > intervals.customer_days(2, np.array([30.0]))
    # same-day purchases are one trip
    _, _, gaps = repeat_gaps(np.array([1, 1, 1]), np.array([5, 5, 5]), np.array([0.2, 0.7, 12.0]))
    assert gaps.tolist() == [12.0]


def test_replay_counts_reminders_and_hits() -> None:
    # interval 10, last purchase day 0, window [5, 60): reminders at 10 (bought at 12: hit), 22 (bought
    # at 50: miss), 60 is past the end
    assert _replay(10.0, [12.0, 50.0], 10.0, 5.0, 60.0, 14) == (2, 1)
    # bought before each reminder: no reminder at all
    assert _replay(10.0, [8.0, 16.0], 10.0, 5.0, 30.0, 14) == (1, 0)
    assert _replay(2.0, [], 10.0, 5.0, 60.0, 14) == (0, 0)  # overdue before the window opened


def test_bad_options_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.mjml"
    source = (ROOT / "templates" / "emails" / "restock-reminder.mjml").read_text()
    path.write_text(source.replace("count: 4}", "count: 40}"))
    with pytest.raises(TemplateError, match="replenishment.count must be at most 12"):
        load_campaign(path)
