"""Which selection parts help: selection's search without a budget, with and without extra parts.

For one cutoff: three 30-day validation windows before it (as ``retain train`` carves them) and the test
window after it (as ``retain evaluate``'s protocols; every test customer). The standard parts (popularity,
own products, item-kNN, ALS; not EASE^R / TIFU-KNN, to keep it quick) and the experimental ones below are
fitted in every window; ``recommender.select``'s search then chooses per block with the standard parts
(``base``) and with ``--extra`` parts added (``new``), and the choice is scored on the test window. The
test window never influences the choice. Experimental parts (only ``trend`` ships):

- ``trend`` — :class:`recommender.models.trend.TrendModel`, fitted as selection fits it; ``popular_14`` —
  popularity over 14 days;
- ``popular_repeat`` — customers who bought the product more than once; ``repeat_rate`` — their share of
  its buyers (smoothed);
- ``own_recent`` — own products by the recency of their last purchase (half-life 30 days);
  ``own_rate`` — own products weighted by the product's repeat rate; ``tifu_own`` — TIFU-KNN's own
  vector (``alpha`` 1: the customer's time-decayed baskets, no neighbours), z-scored.

    python bench/select_parts.py --db sqlite:///var/or.db --cutoff 2011-10-09 --extra trend
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from recommender import select as S  # noqa: E402
from recommender.evaluate import temporal_split  # noqa: E402
from recommender.models.base import standardize  # noqa: E402
from recommender.models.tifuknn import TIFUKNNModel  # noqa: E402

STANDARD = [*S.POPULAR_PARTS, "own", "own_count", "itemknn", "als"]


def _item(values: np.ndarray) -> np.ndarray:
    return np.asarray(standardize(np.asarray(values, dtype=np.float64)[None, :])[0], dtype=np.float32)


def experimental_parts(window: Any) -> dict[str, np.ndarray]:
    d = window.train
    cols, n = d.counts.indices, d.shape[1]
    age, cnt = d.age_days, d.counts.data
    buyers = np.bincount(cols, minlength=n)
    rebuyers = np.bincount(cols[cnt > 1], minlength=n)
    rate = (rebuyers + 1.0) / (buyers + 5.0)
    tifu_own = TIFUKNNModel(alpha=1.0)  # the customer's own time-decayed basket vector, no neighbours
    tifu_own.fit(d)
    own = d.counts[window.users].tocsr().copy()
    own.data[:] = 1.0
    return {
        "popular_14": _item(np.log1p(np.bincount(cols[age <= 14], minlength=n))),
        "popular_repeat": _item(np.log1p(rebuyers)),
        "repeat_rate": _item(rate),
        "own_recent": d.aligned((0.5 ** (age / 30.0)).astype(np.float32))[window.users].toarray(),
        "own_rate": own.multiply(rate[None, :]).toarray().astype(np.float32),
        "tifu_own": np.asarray(standardize(tifu_own.score(d, window.users)), dtype=np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--extra", default="trend", help="comma-separated experimental parts")
    args = parser.parse_args()
    from campaigns.store import Store
    from campaigns.training import load_training_data

    cols = load_training_data(Store.open(args.db))
    end = np.datetime64(args.cutoff, "s")
    before = cols.ordered_at < end
    train_side = dataclasses.replace(
        cols, **{f.name: np.asarray(getattr(cols, f.name))[before] for f in dataclasses.fields(cols)}
    )
    extra = [p for p in args.extra.split(",") if p]

    def window(purchases: Any, cutoff: np.datetime64, cells: int) -> Any:
        split = temporal_split(purchases, cutoff, 30, half_life_days=60.0)
        return S._make_window(split.train, split.truth, cutoff, cells, 0)

    windows = [window(train_side, end - np.timedelta64(30 * w, "D"), 1 << 23) for w in (1, 2, 3)]
    test = window(cols, end, 1 << 40)
    t0 = time.perf_counter()
    for w in [*windows, test]:
        for part in [*STANDARD, "trend"]:  # trend ships: fitted as selection fits it
            S._fit_part(w, part, {})
        w.parts.update(experimental_parts(w))
    print(f"fitted in {time.perf_counter() - t0:.1f} s")
    for block in S.BLOCKS:
        for label, parts in (("base", STANDARD), ("new", STANDARD + extra)):
            best, rows = S._search(block, windows, parts, time.perf_counter() + 3600, [])
            test_ndcg = S._ndcg(test, block, S._scores(test, best.weights))
            line = f"{block} {label}: ships {best.name}, validation {best.mean:.4f}, test {test_ndcg:.4f}"
            learned = [r for r in rows if r["name"].startswith("blend")]
            if learned and learned[-1]["name"] != best.name:
                b = learned[-1]
                line += f" (learned {b['name']}: validation {b['mean']:.4f}, test "
                line += f"{S._ndcg(test, block, S._scores(test, b['weights'])):.4f})"
            print(line)
        for part in extra:
            if block == "discover" and part.startswith("own"):
                continue
            single = S._evaluate(S.Candidate(part, {part: 1.0}), windows, block)
            score = S._ndcg(test, block, S._scores(test, {part: 1.0}))
            print(f"  {part} alone: validation {single.mean:.4f}, test {score:.4f}")


if __name__ == "__main__":
    main()
