"""Segments on a synthetic shop in SQLite: count and paged iteration per default segment.

Baseline measured in the same run: one plain read of every order's (customer, date, total) -
the least any segment evaluation must touch. Ratios above 1 are the cost of the SQL aggregates.
Peak Python memory while iterating (tracemalloc) shows the paging keeps memory flat.

    python -m bench segments            # 50,000 customers (BENCH_SEGMENT_CUSTOMERS to change)
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from campaigns.models import Order
from campaigns.segments import count_segment, iter_segment, load_segments
from campaigns.store import Store
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

NOW = datetime(2024, 1, 1)


def synthetic_batch(customers: int, seed: int = 7) -> ImportBatch:
    rng = random.Random(seed)
    batch = ImportBatch(source="generic")
    for p in range(200):
        batch.products[f"P{p}"] = ProductIn(
            f"P{p}", f"Product {p}", 5.0 + p % 40, "GBP", category=f"cat{p % 12}"
        )
    for c in range(customers):
        key = f"c{c}"
        batch.customers[key] = CustomerIn(key, email=f"{key}@shop.example.com", marketing_consent=True)
        n = min(1 + int(rng.expovariate(1 / 2.5)), 40)
        gap = rng.uniform(10, 120)
        day = rng.uniform(0, 720)
        for k in range(n):
            lines = [(f"P{rng.randrange(200)}", rng.randint(1, 4), 5.0 + rng.randrange(40)) for _ in range(2)]
            ext = f"{key}-{k}"
            batch.orders[ext] = OrderIn(ext, key, NOW - timedelta(days=day), "GBP", lines)
            day -= gap * rng.uniform(0.5, 1.5)
            if day < 0:
                break
    return batch


def main() -> None:
    customers = int(os.environ.get("BENCH_SEGMENT_CUSTOMERS", "50000"))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        t = time.perf_counter()
        batch = synthetic_batch(customers)
        counts = store.write_import(batch)
        print(
            f"{customers:,} customers, {counts.orders_added:,} orders written in {time.perf_counter() - t:.1f} s"
        )
        del batch
        orders = Order.__table__
        t = time.perf_counter()
        with store.engine.connect() as conn:
            rows = sum(
                1 for _ in conn.execute(select(orders.c.customer_id, orders.c.ordered_at, orders.c.total))
            )
        baseline = time.perf_counter() - t
        print(f"baseline: read {rows:,} orders once: {baseline:.3f} s")
        print(
            f"{'segment':<20}{'size':>8}{'count s':>9}{'x base':>8}{'iter s':>9}{'x base':>8}{'peak MiB':>10}"
        )
        for name, seg in load_segments(Path("segments.yaml")).items():
            t = time.perf_counter()
            size = count_segment(store, seg, now=NOW)
            t_count = time.perf_counter() - t
            t = time.perf_counter()
            seen = sum(len(b) for b in iter_segment(store, seg, now=NOW))
            t_iter = time.perf_counter() - t
            tracemalloc.start()  # a second, traced pass: tracing slows Python down, so it is not timed
            for _ in iter_segment(store, seg, now=NOW):
                pass
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            assert seen == size, (name, seen, size)
            print(
                f"{name:<20}{size:>8,}{t_count:>9.3f}{t_count / baseline:>8.1f}"
                f"{t_iter:>9.3f}{t_iter / baseline:>8.1f}{peak:>10.1f}"
            )
        store.close()
    print("(shared 2-core machine: other engineers' jobs run at the same time)")
