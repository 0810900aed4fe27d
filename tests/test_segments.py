"""Segments on a tiny purchase history with known answers, on SQLite and PostgreSQL.

now = 2024-01-01. Customers (external id: orders as days before now, each order's total):
    a: 10, 40, 70, 100 days ago, 10.00 each (sku A), plus one order AFTER now (ignored)
    b: 200 days ago, 500.00 (sku B, category Candles)
    c: 100 and 80 days ago, 20.00 each (sku A)
    d: 5 days ago, 15.00 (sku C), country France
    e: no orders
    f: two orders 50 days ago, one hour apart, 50.00 each (sku A), no country
    g: one order after now only
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from campaigns.segments import (
    count_segment,
    iter_segment,
    load_segments,
    resolve_segment,
    sample_segment,
    shop_usual_gap,
)
from campaigns.store import Store
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from tests.conftest import ROOT

NOW = datetime(2024, 1, 1)

ORDERS = {  # customer -> [(days before now, sku, unit price)]
    "a": [(10, "A", 10.0), (40, "A", 10.0), (70, "A", 10.0), (100, "A", 10.0), (-5, "A", 99.0)],
    "b": [(200, "B", 500.0)],
    "c": [(100, "A", 20.0), (80, "A", 20.0)],
    "d": [(5, "C", 15.0)],
    "f": [(50, "A", 50.0), (50 - 1 / 24, "A", 50.0)],
    "g": [(-1, "A", 10.0)],
}
COUNTRY = {"a": "United Kingdom", "b": "United Kingdom", "c": "Germany", "d": "France", "e": "United Kingdom"}
TAGS = {"a": ["VIP", "newsletter"], "b": ["wholesale"], "c": ["vip"], "e": ["vip"]}


def segment_batch() -> ImportBatch:
    batch = ImportBatch(source="generic")
    for key in "abcdefg":
        batch.customers[key] = CustomerIn(
            external_id=key,
            email=f"{key}@shop.example.com",
            country=COUNTRY.get(key),
            marketing_consent=True,
            consent_source="test",
            tags=TAGS.get(key),
        )
    batch.products["A"] = ProductIn("A", "Mug", 10.0, "GBP", category="Kitchen")
    batch.products["B"] = ProductIn("B", "Candle", 500.0, "GBP", category="Candles")
    batch.products["C"] = ProductIn("C", "Card", 15.0, "GBP", category="Paper")
    for key, orders in ORDERS.items():
        for n, (days, sku, price) in enumerate(orders):
            ext = f"{key}-{n}"
            batch.orders[ext] = OrderIn(ext, key, NOW - timedelta(days=days), "GBP", [(sku, 1, price)])
    return batch


@pytest.fixture
def shop(store: Store) -> Store:
    store.write_import(segment_batch())
    return store


def members(store: Store, rules: dict[str, Any]) -> list[str]:
    """External ids of the members, checked three ways: count, paged iteration and sample."""
    seg = resolve_segment(rules, {})
    found = [c.external_id for batch in iter_segment(store, seg, now=NOW) for c in batch]
    assert count_segment(store, seg, now=NOW) == len(found)
    assert [m.customer.external_id for m in sample_segment(store, seg, now=NOW, limit=100)] == found
    return sorted(found)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({}, "abcdf"),
        ({"orders": {"min": 1}}, "abcdf"),
        ({"orders": {"min": 2}}, "acf"),
        ({"orders": {"max": 1}}, "bd"),
        ({"first_time_buyers": True}, "bd"),
        ({"first_time_buyers": False}, "acf"),
        ({"spend": {"min": 100}}, "bf"),
        ({"spend": {"min": 16, "max": 100}}, "acf"),
        ({"days_since_last_order": {"min": 60}}, "bc"),
        ({"days_since_last_order": {"max": 30}}, "ad"),
        ({"days_since_last_order": {"min": 10, "max": 10}}, "a"),
        ({"days_since_first_order": {"min": 100}}, "abc"),
        ({"country": "france"}, "d"),
        ({"country": ["France", "Germany"]}, "cd"),
        ({"country": {"not_in": ["United Kingdom"]}}, "cdf"),
        ({"tags": "vip"}, "ac"),  # e is tagged but has no order
        ({"tags": ["wholesale", "newsletter"]}, "ab"),
        ({"tags": {"none": ["VIP"]}}, "bdf"),
        ({"tags": {"any": ["vip"], "none": ["newsletter"]}}, "c"),
        ({"bought": {"sku": ["B"]}}, "b"),
        ({"bought": {"category": "candles"}}, "b"),
        ({"bought": {"sku": ["A", "C"], "within_days": 15}}, "ad"),
        ({"bought": {"sku": ["A"], "within_days": 5}}, ""),
        ({"top_spenders_pct": 20}, "b"),
        ({"top_spenders_pct": 40}, "bf"),
        ({"top_spenders_pct": 50}, "abcf"),  # 3 slots; a and c tie at the cut and are both in
        ({"top_spenders_pct": 100}, "abcdf"),
        ({"orders": {"min": 2}, "days_since_last_order": {"max": 30}}, "a"),  # AND
    ],
)
def test_rule_members(shop: Store, rules: dict[str, Any], expected: str) -> None:
    assert members(shop, rules) == list(expected)


# RFM scores on this data (score = 1 + floor(5 * percent_rank), capped at 5):
#   recency  b1 c2 f3 a4 d5   frequency  b1 d1 c3 f3 a5   monetary  d1 a2 c2 f4 b5
@pytest.mark.parametrize(
    ("rfm", "expected"),
    [
        ({"r": ">=4"}, "ad"),
        ({"r": "<2"}, "b"),
        ({"r": 3}, "f"),
        ({"f": ">=3", "m": ">=2"}, "acf"),
        ({"f": "3"}, "cf"),
        ({"m": "2-4"}, "acf"),
        ({"m": ">4"}, "b"),
        ({"r": ">=4", "f": ">=4", "m": ">=4"}, ""),
    ],
)
def test_rfm_quintiles(shop: Store, rfm: dict[str, Any], expected: str) -> None:
    assert members(shop, {"rfm": rfm}) == list(expected)


def test_drifting_away_uses_own_gap_then_shop_median(shop: Store) -> None:
    # usual gaps: a 30, c 20 (f's orders are an hour apart: one trip, no gap) -> shop median 25
    assert shop_usual_gap(shop, now=NOW) == pytest.approx(25.0)
    assert shop_usual_gap(shop, now=NOW, kind="mean") == pytest.approx(25.0)
    # 1.5 x gap: a 10 <= 45; c 80 > 30; b 200 > 37.5, d 5 <= 37.5, f 50 > 37.5 (fallback)
    assert members(shop, {"drifting": {"factor": 1.5}}) == ["b", "c", "f"]
    # factor 4: c 80 <= 80 (not strictly more), b 200 > 100; f 50 <= 100
    assert members(shop, {"drifting": {"factor": 4, "gap": "mean"}}) == ["b"]
    assert members(shop, {"drifting": True, "days_since_last_order": {"max": 100}}) == ["c", "f"]


def test_median_gap_differs_from_mean(store: Store) -> None:
    batch = ImportBatch(source="generic")
    batch.customers["h"] = CustomerIn("h", email="h@shop.example.com")
    batch.products["A"] = ProductIn("A", "Mug", 10.0, "GBP")
    for n, days in enumerate([100, 90, 80, 10]):  # gaps 10, 10, 70: median 10, mean 30
        batch.orders[f"h{n}"] = OrderIn(f"h{n}", "h", NOW - timedelta(days=days), "GBP", [("A", 1, 1.0)])
    store.write_import(batch)
    assert shop_usual_gap(store, now=NOW) == pytest.approx(10.0)
    assert shop_usual_gap(store, now=NOW, kind="mean") == pytest.approx(30.0)
    # 10 days since the last order: > 1.5 x 5?  median 10 -> 10 > 15 no; factor 0.5 -> 10 > 5 yes
    assert members(store, {"drifting": {"factor": 1.5}}) == []
    assert members(store, {"drifting": {"factor": 0.5}}) == ["h"]
    assert members(store, {"drifting": {"factor": 0.5, "gap": "mean"}}) == []


def test_paging_is_keyset_and_complete(shop: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import campaigns.segments as segments_module

    monkeypatch.setattr(segments_module, "SCAN_SIZE", 2)
    seg = resolve_segment({"orders": {"min": 1}}, {})
    batches = list(iter_segment(shop, seg, now=NOW, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    ids = [c.id for b in batches for c in b]
    assert ids == sorted(ids)
    assert [c.external_id for b in batches for c in b] == ["a", "b", "c", "d", "f"]


def test_orders_after_now_are_ignored(shop: Store) -> None:
    seg = resolve_segment({"orders": {"min": 4, "max": 4}}, {})
    [member] = sample_segment(shop, seg, now=NOW)
    assert member.customer.external_id == "a"
    assert member.spend == pytest.approx(40.0)
    assert member.last_order_at == NOW - timedelta(days=10)
    # one day later, g's order counts too
    assert count_segment(shop, resolve_segment({}, {}), now=NOW + timedelta(days=2)) == 6


def test_empty_store_counts_zero(store: Store) -> None:
    for rules in ({}, {"rfm": {"r": 5}}, {"top_spenders_pct": 10}, {"drifting": True}):
        assert count_segment(store, resolve_segment(rules, {}), now=NOW) == 0


def test_bundled_segments_file_loads_and_runs(shop: Store) -> None:
    segments = load_segments(ROOT / "segments.yaml")
    required = {
        "all-buyers",
        "active-buyers",
        "vip",
        "first-time-buyers",
        "drifting-away",
        "lapsed",
        "recent-buyers",
    }
    assert required <= set(segments)
    sizes = {name: count_segment(shop, seg, now=NOW) for name, seg in segments.items()}
    assert sizes["all-buyers"] == 5
    assert sizes["lapsed"] == 1  # b, 200 days
    assert sizes["recent-buyers"] == 1  # d, 5 days
    assert sizes["first-time-buyers"] == 1  # d (b is older than 90 days)
    assert sizes["drifting-away"] == 3  # b, c, f
