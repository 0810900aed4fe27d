"""Import benchmarks, each beside a plain ``pandas.read_csv`` of the same file measured in the same run.

1. The full Online Retail file into an empty SQLite database (issue #2 goal: <= 30 s, <= 1 GB peak RSS).
2. A generic basket file of ``--lines`` lines (default 1,000,000; customer, date, sku, qty, price; no order
   id), imported with ``--basket-by customer,date --aggregate-duplicates`` into an empty SQLite database
   (issue #15 goal: <= 2 min, <= 1.5 GB peak RSS). The file is generated once, seeded, under ``--work``:
   100,000 customers, 20,000 products (Zipf-like popularity), baskets of 1-10 lines on 730 days, 1% of
   lines repeated as exact duplicates (the real repeat purchases of one item on one day).

Each import and each read_csv runs in its own process, so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "online_retail.csv.gz"
LINES = 541_909

_IMPORT_RETAIL = """
import json, resource, sys, time
from campaigns.store import Store
from campaigns.ingest import import_online_retail
store = Store.open(sys.argv[1])
t = time.perf_counter()
summary = import_online_retail(store, sys.argv[2])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": summary.order_lines_added}))
"""

_IMPORT_BASKETS = """
import json, resource, sys, time
from campaigns.store import Store
from campaigns.ingest import GenericOptions, import_generic
store = Store.open(sys.argv[1])
opts = GenericOptions({"customer": "customer", "date": "date", "sku": "sku", "qty": "qty", "price": "price"},
                      basket_by="customer,date", aggregate_duplicates=True)
t = time.perf_counter()
summary = import_generic(store, sys.argv[2], opts)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": summary.order_lines_added, "orders": summary.orders_added, "rows": summary.rows_read,
                  "added_up": summary.set_aside.get("duplicate_lines_added_up", 0)}))
"""

_PANDAS = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1], dtype=str)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": len(df)}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list[tuple[str, dict[str, float]]], lines: int) -> None:
    print(f"{'':28}{'seconds':>10}{'lines/s':>12}{'peak RSS MB':>14}")
    for name, r in rows:
        print(f"{name:28}{r['seconds']:>10.2f}{lines / r['seconds']:>12,.0f}{r['rss_mb']:>14.0f}")


def online_retail() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        retain = _run(_IMPORT_RETAIL, f"sqlite:///{Path(tmp) / 'bench.db'}", str(DATA))
    pandas = _run(_PANDAS, str(DATA))
    print(f"file: {DATA.name}, {LINES:,} lines")
    _table([("retain import (SQLite)", retain), ("pandas.read_csv", pandas)], LINES)
    print(
        f"ratio import/read_csv: {retain['seconds'] / pandas['seconds']:.1f}x the time "
        f"(validates, cleans and writes {int(retain['lines']):,} purchase lines in one transaction)"
    )
    met = retain["seconds"] <= 30 and retain["rss_mb"] <= 1024
    print(f"goal: <= 30 s and <= 1024 MB -> {'met' if met else 'NOT met'}")


def basket_file(path: Path, lines: int, seed: int = 15) -> Path:
    """A seeded generic basket CSV (gzip) of exactly ``lines`` data lines; reused when already there."""
    if path.exists():
        return path
    import numpy as np

    rng = np.random.default_rng(seed)
    n_customers, n_products, days = 100_000, 20_000, 730
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.9
    popularity /= popularity.sum()
    prices = np.round(rng.lognormal(2.0, 0.8, n_products), 2)
    tmp = path.with_suffix(".part")
    written = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1, newline="") as fh:
        fh.write("customer,date,sku,qty,price\n")
        while written < lines:
            size = min(int(rng.integers(1, 11)), lines - written)
            customer = int(rng.integers(1, n_customers + 1))
            day = int(rng.integers(0, days))
            date = f"{2023 + day // 365}-{(day % 365) // 31 + 1:02d}-{(day % 365) % 28 + 1:02d}"
            skus = rng.choice(n_products, size=size, p=popularity)
            for sku in skus:
                line = f"C{customer},{date},SKU-{sku:05d},{int(rng.integers(1, 4))},{prices[sku]:.2f}\n"
                fh.write(line)
                written += 1
                if written < lines and rng.random() < 0.01:  # a real repeat: the same line again
                    fh.write(line)
                    written += 1
    tmp.rename(path)
    return path


def baskets(lines: int, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = basket_file(work / f"baskets-{lines}.csv.gz", lines)
    with tempfile.TemporaryDirectory() as tmp:
        retain = _run(_IMPORT_BASKETS, f"sqlite:///{Path(tmp) / 'bench.db'}", str(path))
    pandas = _run(_PANDAS, str(path))
    print(f"file: {path.name}, {int(retain['rows']):,} lines (customer,date,sku,qty,price; no order id)")
    _table([("retain import (SQLite)", retain), ("pandas.read_csv", pandas)], int(retain["rows"]))
    print(
        f"ratio import/read_csv: {retain['seconds'] / pandas['seconds']:.1f}x the time "
        f"({int(retain['orders']):,} baskets built by customer and day, {int(retain['lines']):,} lines written, "
        f"{int(retain['added_up']):,} identical lines added up)"
    )
    met = retain["seconds"] <= 120 and retain["rss_mb"] <= 1536
    print(f"goal: <= 120 s and <= 1536 MB -> {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the generic basket file")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "retain-bench")
    parser.add_argument("--skip-retail", action="store_true", help="only the basket file")
    parser.add_argument("--skip-baskets", action="store_true", help="only Online Retail")
    args = parser.parse_args(argv if argv is not None else [])
    if not args.skip_retail:
        online_retail()
    if not args.skip_baskets:
        print()
        baskets(args.lines, args.work)


if __name__ == "__main__":
    main(sys.argv[1:])
