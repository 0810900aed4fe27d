"""Recommender speed and quality.

1. Online Retail (bundled CSV, cleaned like the importer): per-shop selection plus the final fit (what
   ``retain train`` does, default budget), all-customer recommendations with the shipped model
   (buy_again + discover, rules applied), beside the hand-set blend's fit and the popularity baseline's
   time in the same run.
2. Synthetic Zipf purchases at ``--scale`` of 1M customers x 50k products x 20M purchases: selection on a
   sample of customers within its budget, then the large-shop preset's fit and recommend throughput and
   peak RSS, beside the popularity baseline.

    python -m bench recommender            # Online Retail + synthetic at scale 0.02
    python bench/bench_recommender.py --scale 1 --skip-retail     # the full 1M x 50k x 20M run
    python bench/bench_recommender.py --scale 0.1 --params '{}'   # synthetic with the default parameters
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from recommender import Catalog, RetainRecommender, Rules, build_interactions  # noqa: E402
from recommender.models.blend import BlendModel  # noqa: E402
from recommender.models.popular import PopularModel  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "online_retail.csv.gz"
NON_PRODUCT = {"POST", "D", "M", "C2", "DOT", "BANK CHARGES", "AMAZONFEE", "S", "PADS", "CRUK", "B"}


def rss_mb() -> float:
    import psutil

    info = psutil.Process().memory_info()
    return getattr(info, "peak_wset", info.rss) / 1e6


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_online_retail() -> tuple[dict[str, np.ndarray], list[str]]:
    import pandas as pd

    df = pd.read_csv(DATA, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "float64"})
    df = df[
        df.CustomerID.notna() & ~df.InvoiceNo.str.startswith("C") & (df.Quantity > 0) & (df.UnitPrice > 0)
    ]
    df = df.assign(StockCode=df.StockCode.str.upper())
    df = df[~df.StockCode.isin(NON_PRODUCT)]
    codes, skus = pd.factorize(df.StockCode)
    orders, _ = pd.factorize(df.InvoiceNo)
    cols = {
        "customer_id": df.CustomerID.to_numpy().astype(np.int64),
        "product_id": codes.astype(np.int64),
        "order_id": orders.astype(np.int64),
        "ordered_at": pd.to_datetime(df.InvoiceDate).to_numpy().astype("datetime64[s]"),
        "quantity": df.Quantity.to_numpy().astype(np.float64),
    }
    return cols, list(skus)


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


class Cols:
    """Purchase columns as attributes (what ``recommender.select`` reads)."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.__dict__.update(cols)


def bench_online_retail(budget: float) -> None:
    from recommender.select import select

    cols, skus = load_online_retail()
    as_of = cols["ordered_at"].max() + np.timedelta64(1, "s")
    t0 = time.perf_counter()
    selection = select(Cols(cols), as_of, budget=budget, half_life_days=60)
    t_select = time.perf_counter() - t0
    data, t_build = timed(
        build_interactions,
        cols["customer_id"],
        cols["product_id"],
        cols["order_id"],
        cols["ordered_at"],
        quantity=cols["quantity"],
        half_life_days=60,
    )
    _, t_fit_old = timed(RetainRecommender.fit, data, model="blend")
    rec, t_fit = timed(RetainRecommender.fit, data, model="blend", params=selection.params)
    n = len(skus)
    rec.with_catalog(
        Catalog(
            np.arange(n),
            price=[1.0] * n,
            category=[f"c{i % 25}" for i in range(n)],
            in_stock=[i % 10 != 0 for i in range(n)],
            name=skus,
        )
    )
    ids = data.users.values
    pop = PopularModel()
    _, t_pop_fit = timed(pop.fit, data)
    _, t_rec = timed(rec.recommend, ids, n=4, rules=Rules())
    _, t_rec_div = timed(rec.recommend, ids, n=4, rules=Rules(max_per_category=1))
    _, t_pop = timed(rec.recommend, ids, blocks=("popular",), n=4, rules=Rules())
    print(
        f"Online Retail: {len(cols['customer_id']):,} lines, {data.shape[0]:,} customers x {data.shape[1]:,} products"
    )
    print(f"  interactions build     {t_build:6.2f} s")
    for block, choice in selection.choice.items():
        print(f"  shipped {block}: {choice['name']}")
    print(
        f"  selection {t_select:5.2f} s (budget {budget:.0f} s) + interactions + fit of the shipped model "
        f"{t_build + t_fit:5.2f} s = {t_select + t_build + t_fit:5.2f} s   (goal <= 60 s)"
    )
    print(
        f"  fit: shipped {t_fit:5.2f} s, hand-set blend {t_fit_old:5.2f} s, popularity {t_pop_fit:.3f} s "
        f"(ratio shipped / popularity {t_fit / max(t_pop_fit, 1e-9):,.0f}x)"
    )
    print(
        f"  recommend all, 2 blocks {t_rec:5.2f} s   (goal <= 1 s; shipped model; in_stock + exclude_bought)"
    )
    print(f"  ... + max 1 per category {t_rec_div:4.2f} s")
    print(f"  popular block for all   {t_pop:5.2f} s   (baseline; ratio {t_rec / max(t_pop, 1e-9):.1f}x)")


def synthetic(scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Zipf-like (exponent ~1.1) product popularity, customer activity skewed too."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_lines = int(1_000_000 * scale), int(50_000 * scale), int(20_000_000 * scale)
    n_items = max(n_items, 100)
    item_w = 1.0 / np.arange(1, n_items + 1) ** 1.1
    item_w /= item_w.sum()
    user_w = rng.pareto(2.0, n_users) + 1.0
    user_w /= user_w.sum()
    users = rng.choice(n_users, n_lines, p=user_w)
    items = rng.permutation(n_items)[rng.choice(n_items, n_lines, p=item_w)]
    when = np.datetime64("2024-01-01") + rng.integers(0, 365 * 86400, n_lines).astype("timedelta64[s]")
    return {
        "customer_id": users.astype(np.int64),
        "product_id": items.astype(np.int64),
        "order_id": (users * 64 + rng.integers(0, 8, n_lines)).astype(np.int64),
        "ordered_at": when,
        "quantity": np.ones(n_lines),
    }


#: the large-shop preset used at scale (docs/recommender.md): 64 factors, item-kNN for reasons only
LARGE_SHOP = {"als": {"factors": 64}, "knn_weight": 0.0}


def bench_synthetic(scale: float, params: dict | None, budget: float) -> None:
    from recommender.select import select

    params = LARGE_SHOP if params is None else params
    cols, t_gen = timed(synthetic, scale)
    as_of = cols["ordered_at"].max() + np.timedelta64(1, "s")
    t0 = time.perf_counter()
    selection = select(Cols(cols), as_of, budget=budget, half_life_days=60, base_params=copy.deepcopy(params))
    t_select = time.perf_counter() - t0
    rss_after_select = peak_rss_mb()
    data, t_build = timed(
        build_interactions,
        cols["customer_id"],
        cols["product_id"],
        cols["order_id"],
        cols["ordered_at"],
        half_life_days=60,
        baskets="tifuknn" in BlendModel(**copy.deepcopy(params)).needed(),
    )
    del cols
    u, i = data.shape
    print(f"Synthetic Zipf at scale {scale}: {u:,} customers x {i:,} products, {data.counts.nnz:,} pairs")
    print(f"  generate {t_gen:.1f} s, build interactions {t_build:.1f} s; params {json.dumps(params)}")
    print(
        f"  selection          {t_select:7.1f} s   (budget {budget:.0f} s; {'; '.join(selection.notes) or 'no notes'};"
        f" peak RSS so far {rss_after_select:,.0f} MB)"
    )
    for block, choice in selection.choice.items():
        print(f"    {block}: {choice['reason']}")
    pop = PopularModel()
    _, t_pop_fit = timed(pop.fit, data)
    blend = BlendModel(**copy.deepcopy(params))  # BlendModel takes its sub-dicts apart
    parts = {}
    for part in blend.needed():  # BlendModel.fit, one part at a time to time each
        _, parts[part] = timed(getattr(blend, part).fit, data)
    t_fit = sum(parts.values())
    rec = RetainRecommender(data, blend, discover="blend")
    ids = data.users.values
    rules = Rules(in_stock_only=False)
    _, t_rec = timed(rec.recommend, ids, n=4, rules=rules)
    _, t_pop = timed(rec.recommend, ids, blocks=("popular",), n=4, rules=rules)
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items() if v >= 0.05)
    print(f"  fit                {t_fit:7.1f} s   ({detail}; goal <= 180 s)")
    print(f"  popularity fit     {t_pop_fit:7.2f} s   (baseline)")
    print(
        f"  recommend all      {t_rec:7.1f} s   ({u / t_rec:,.0f} customers/s; buy_again + discover,"
        " rules applied; goal <= 180 s)"
    )
    print(f"  popular block, all {t_pop:7.1f} s   ({u / t_pop:,.0f} customers/s; baseline, same run)")
    print(f"  peak RSS           {peak_rss_mb():7.0f} MB  (goal <= 6,000 MB)")
    # candidate generation vs scoring every product, on a sample small enough to score densely
    sample = np.random.default_rng(0).choice(u, size=min(u, 2_000), replace=False)
    allowed = np.ones(i, dtype=bool)
    exact, _ = blend.discover_top(data, sample, 10, allowed=allowed, candidates=0)
    approx, _ = blend.discover_top(data, sample, 10, allowed=allowed)
    agree = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    print(f"  discover top-10 from candidates vs every product scored: {agree:.4f} agreement")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.02, help="fraction of 1M x 50k x 20M (default 0.02)")
    parser.add_argument("--skip-retail", action="store_true")
    parser.add_argument("--budget", type=float, default=45.0, help="selection budget in seconds (default 45)")
    parser.add_argument(
        "--params", default=None, help="blend parameters as JSON for the synthetic run (default: LARGE_SHOP)"
    )
    args = parser.parse_args(argv if argv is not None else [])
    print("machine: shared with other engineers' jobs; CPU count", os.cpu_count())
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if not args.skip_retail:
        bench_online_retail(args.budget)
    bench_synthetic(args.scale, json.loads(args.params) if args.params else None, args.budget)
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
