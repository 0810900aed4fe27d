"""Lifecycle predictions at scale: a synthetic shop of 1M customers, and the bundled Online Retail data.

Synthetic: orders drawn from the BG/NBD process (gamma purchase rates, beta dropout) over two years, as
numpy columns; then the whole `retain predict` path: summary, MBG/NBD + Gamma-Gamma fits, predictions,
bootstrap intervals, preferred send hours, and the write of every customer's row to SQLite. Baseline
measured in the same run: the per-customer summary alone (one group-by over the orders - the least any
prediction must do). Goal: <= 10 min for 1M customers on this machine (2 cores shared).

Bundled: `retain predict` on Online Retail imported into a temporary SQLite file. Goal: <= 30 s.

    python -m bench lifecycle           # BENCH_LIFECYCLE_CUSTOMERS=200000 for a quicker run
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from campaigns.config import Settings
from campaigns.lifecycle import refresh_predictions
from campaigns.lifecycle.predict import predict_summary
from campaigns.lifecycle.sendhour import fit_preferred_hours, local_hours
from campaigns.lifecycle.summary import summarize
from campaigns.models import Customer
from campaigns.store import Store
from campaigns.store.base import utcnow
from campaigns.store.predictions import OrderColumns

AS_OF = datetime(2024, 1, 1)
DAYS = 730
#: at most this many orders are generated (bounds memory and time whatever the customer count)
MAX_ORDERS = 15_000_000


def synthetic_orders(customers: int, seed: int = 11) -> OrderColumns:
    """Customers who join uniformly over two years and buy by the BG/NBD process (vectorised)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.7, 1 / 40.0, customers)  # a purchase every ~57 days on average
    drop = rng.beta(0.6, 3.0, customers)
    start = rng.uniform(0, DAYS, customers)
    # purchases while alive: geometric number of repeats, capped by the horizon below
    repeats = np.minimum(rng.geometric(np.clip(drop, 1e-3, 1.0)) - 1, 40)
    n = repeats + 1
    total = int(n.sum())
    owner = np.repeat(np.arange(customers), n)
    first = np.r_[0, np.cumsum(n)[:-1]]
    gaps = rng.exponential(1.0, total) / rate[owner]
    gaps[first] = 0.0
    at = start[owner] + np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], n)
    keep = at < DAYS
    owner, at = owner[keep], at[keep]
    if len(owner) > MAX_ORDERS:
        raise SystemExit(f"{len(owner):,} orders exceed the bound of {MAX_ORDERS:,}")
    seconds = (np.datetime64("2022-01-01T00:00:00", "s").astype(np.int64) + at * 86_400).astype(np.int64)
    # an hour of day per customer habit (+-3 h) around the shop's afternoon
    habit = rng.normal(14, 3, customers)
    hour = np.clip(np.round(habit[owner] + rng.normal(0, 2, len(owner))), 0, 23)
    seconds = (seconds // 86_400) * 86_400 + (hour * 3600).astype(np.int64)
    order = np.argsort(seconds, kind="stable")
    return OrderColumns(
        customer_id=(owner[order] + 1).astype(np.int64),
        ordered_at=seconds[order].astype("datetime64[s]"),
        total=np.round(rng.gamma(4.0, 8.0, len(owner)), 2),
    )


def _seconds(start: float) -> float:
    return time.perf_counter() - start


def bench_synthetic(customers: int) -> None:
    started = time.perf_counter()
    orders = synthetic_orders(customers)
    print(f"synthetic: {customers:,} customers, {len(orders):,} orders (made in {_seconds(started):.1f} s)")
    t = time.perf_counter()
    summary = summarize(orders, AS_OF)
    baseline = _seconds(t)
    t = time.perf_counter()
    predictions = predict_summary(summary)
    fit = _seconds(t)
    t = time.perf_counter()
    hour, weekday = local_hours(orders, {}, "Europe/London")
    hours = fit_preferred_hours(orders.customer_id, hour, weekday)
    send = _seconds(t)
    t = time.perf_counter()
    records = predictions.records(hours.by_customer)
    build = _seconds(t)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            now = utcnow()
            with store.engine.begin() as conn:
                for lo in range(0, customers, 50_000):
                    conn.execute(
                        insert(Customer.__table__),
                        [
                            {"id": i, "external_id": f"c{i}", "created_at": now, "marketing_consent": False}
                            for i in range(lo + 1, min(lo + 50_000, customers) + 1)
                        ],
                    )
            t = time.perf_counter()
            store.replace_predictions(records, predictions.fit_record(now))
            write = _seconds(t)
        finally:
            store.close()
    total = baseline + fit + send + build + write
    print(f"  summary (baseline)        {baseline:7.1f} s")
    print(f"  fit + predict + intervals {fit:7.1f} s  ({fit / baseline:.1f}x baseline)")
    print(f"  preferred send hours      {send:7.1f} s  ({send / baseline:.1f}x baseline)")
    print(f"  rows built + written      {build + write:7.1f} s  ({(build + write) / baseline:.1f}x baseline)")
    print(f"  total                     {total:7.1f} s  ({total / baseline:.1f}x baseline; goal <= 600 s)")
    print(f"  {predictions.details['uncertainty']}")


def bench_bundled() -> None:
    data = Path(__file__).resolve().parent.parent / "data" / "online_retail.csv.gz"
    from campaigns.cli import main as retain

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'retain.db'}"
        assert retain(["--db", db, "import", "online-retail", str(data)]) == 0
        store = Store.open(db)
        try:
            t = time.perf_counter()
            orders = store.order_columns()
            baseline = _seconds(t)
            t = time.perf_counter()
            result = refresh_predictions(store, Settings(), datetime(2011, 12, 10))
            took = _seconds(t)
        finally:
            store.close()
    print(
        f"bundled Online Retail: {result.details['customers']:,} customers, {len(orders):,} orders: "
        f"predictions stored in {took:.1f} s ({took / baseline:.0f}x reading the orders; goal <= 30 s)"
    )


def main() -> None:
    bench_bundled()
    bench_synthetic(int(os.environ.get("BENCH_LIFECYCLE_CUSTOMERS", "1000000")))


if __name__ == "__main__":
    main()
