"""EASE^R on catalogues too large for one dense Gram matrix: fit time and memory by ``max_items``.

The synthetic Zipf shop (``bench_recommender.synthetic``) at ``--scale`` (default 0.4: 400k customers x
20k products x 8M lines) is fitted with ``max_items`` of 2,048 / 4,096 / 8,192 products (the most bought;
the rest score 0), beside popularity in the same run, and each variant's recall of the purchases of a
held-out last week is printed (top-10 hit rate) to show what restricting the catalogue costs.

    python bench/bench_ease.py [--scale 0.4] [--sizes 2048,4096,8192]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bench.bench_recommender import synthetic  # noqa: E402
from recommender import build_interactions  # noqa: E402
from recommender.models.base import mask_seen, top_n  # noqa: E402
from recommender.models.ease import EASEModel  # noqa: E402
from recommender.models.popular import PopularModel  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hit_rate(scores: np.ndarray, truth: np.ndarray) -> float:
    idx, _ = top_n(scores, 10)
    return float(np.mean([t in row for t, row in zip(truth, idx, strict=True)]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.4)
    parser.add_argument("--sizes", default="2048,4096,8192")
    args = parser.parse_args(argv if argv is not None else [])
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    cols = synthetic(args.scale)
    cut = cols["ordered_at"].max() - np.timedelta64(7, "D")
    train = cols["ordered_at"] < cut
    data = build_interactions(
        *(cols[k][train] for k in ("customer_id", "product_id", "order_id", "ordered_at")), as_of=cut
    )
    # one held-out product per customer who bought something new in the last week
    u = data.users.index(cols["customer_id"][~train])
    i = data.items.index(cols["product_id"][~train])
    ok = (u >= 0) & (i >= 0)
    u, i = u[ok], i[ok]
    new = np.asarray(data.counts[u, i]).ravel() == 0
    u, first = np.unique(u[new], return_index=True)
    truth = i[new][first][:2000]
    users = u[:2000]
    print(
        f"{data.shape[0]:,} customers x {data.shape[1]:,} products, {data.counts.nnz:,} pairs; {users.size} test customers"
    )
    pop = PopularModel(window_days=0)
    t = time.perf_counter()
    pop.fit(data)
    t_pop = time.perf_counter() - t
    scores = pop.score(data, users)
    mask_seen(scores, data.counts, users)
    print(f"  popularity: fit {t_pop:.3f} s, top-10 hit rate {hit_rate(scores, truth):.4f}")
    for size in (int(x) for x in args.sizes.split(",")):
        model = EASEModel(l2=500.0, max_items=size)
        before = peak_mb()
        t = time.perf_counter()
        model.fit(data)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        scores = model.score(data, users)
        t_score = time.perf_counter() - t
        mask_seen(scores, data.counts, users)
        print(
            f"  EASE max_items {size:6,}: fit {t_fit:6.1f} s ({t_fit / max(t_pop, 1e-9):,.0f}x popularity), "
            f"score {users.size} customers {t_score:.2f} s, peak RSS {peak_mb():,.0f} MB (was {before:,.0f}), "
            f"weights {model.weights.nbytes / 1e6:,.0f} MB, top-10 hit rate {hit_rate(scores, truth):.4f}"
        )
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
